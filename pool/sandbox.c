/*
 * sandbox: the sandbox record, its JSON form (spec 4.1), and the random
 * ids and tokens that name and guard sandboxes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>

#include "json.h"
#include "log.h"
#include "sandbox.h"
#include "xmalloc.h"

static const char *const sbx_state_names[] = {
    [SBX_WARM] = "warm",
    [SBX_RUNNING] = "running",
    [SBX_RECYCLED] = "recycled",
    [SBX_REPLACED] = "replaced",
    [SBX_RELEASED] = "released",
    [SBX_ERROR] = "error",
};

/* Makes an empty record (meta "{}", state warm). */
struct sbx *
sbx_new(void)
{
	struct sbx *s = xcalloc(1, sizeof *s);

	s->meta = xstrdup("{}");
	s->state = SBX_WARM;
	return s;
}

/* Frees a record. */
void
sbx_free(struct sbx *s)
{
	if (s == NULL)
		return;
	free(s->session_id);
	free(s->container_id);
	free(s->container_name);
	free(s->url);
	free(s->mount_dir);
	free(s->storage_path);
	free(s->runtime_token);
	free(s->version);
	free(s->meta);
	free(s->sandbox_type);
	free(s->session_ctx_id);
	free(s->recycle_reason);
	free(s->redirect_to);
	free(s->sock_path);
	free(s->run_dir);
	free(s->instance);
	free(s);
}

/* Deep-copies a record. */
struct sbx *
sbx_dup(const struct sbx *s)
{
	struct sbx *d = xmalloc(sizeof *d);

	*d = *s;
	d->session_id = xstrdup0(s->session_id);
	d->container_id = xstrdup0(s->container_id);
	d->container_name = xstrdup0(s->container_name);
	d->url = xstrdup0(s->url);
	d->mount_dir = xstrdup0(s->mount_dir);
	d->storage_path = xstrdup0(s->storage_path);
	d->runtime_token = xstrdup0(s->runtime_token);
	d->version = xstrdup0(s->version);
	d->meta = xstrdup(s->meta != NULL ? s->meta : "{}");
	d->sandbox_type = xstrdup0(s->sandbox_type);
	d->session_ctx_id = xstrdup0(s->session_ctx_id);
	d->recycle_reason = xstrdup0(s->recycle_reason);
	d->redirect_to = xstrdup0(s->redirect_to);
	d->sock_path = xstrdup0(s->sock_path);
	d->run_dir = xstrdup0(s->run_dir);
	d->instance = xstrdup0(s->instance);
	return d;
}

/* The wire name of a state. */
const char *
sbx_state_name(enum sbx_state st)
{
	if ((unsigned)st >= sizeof sbx_state_names / sizeof *sbx_state_names)
		return "error";
	return sbx_state_names[st];
}

/* Parses a state's wire name. */
int
sbx_state_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof sbx_state_names / sizeof *sbx_state_names; i++)
		if (strcmp(s, sbx_state_names[i]) == 0)
			return (int)i;
	return -1;
}

/* Emits "key": string-or-null. */
static void
sbx_gen_kv(yajl_gen g, const char *k, const char *v)
{
	json_gen_str(g, k);
	json_gen_str(g, v);
}

/* Emits "key": time-or-null. */
static void
sbx_gen_time(yajl_gen g, const char *k, double t)
{
	json_gen_str(g, k);
	if (t > 0)
		json_gen_double(g, t);
	else
		json_gen_null(g);
}

/* Emits the record as JSON. */
void
sbx_gen(yajl_gen g, const struct sbx *s, int internal)
{
	yajl_gen_map_open(g);
	sbx_gen_kv(g, "session_id", s->session_id);
	sbx_gen_kv(g, "container_id", s->container_id);
	sbx_gen_kv(g, "container_name", s->container_name);
	sbx_gen_kv(g, "url", s->url != NULL ? s->url : "");
	json_gen_str(g, "ports");
	yajl_gen_array_open(g);
	if (s->port > 0)
		json_gen_int(g, s->port);
	yajl_gen_array_close(g);
	sbx_gen_kv(g, "mount_dir", s->mount_dir);
	sbx_gen_kv(g, "storage_path", s->storage_path);
	sbx_gen_kv(g, "runtime_token", s->runtime_token);
	sbx_gen_kv(g, "version", s->version);
	json_gen_str(g, "meta");
	if (json_gen_raw(g, s->meta, strlen(s->meta)) != 0) {
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	}
	json_gen_str(g, "timeout");
	json_gen_int(g, s->timeout);
	sbx_gen_kv(g, "sandbox_type", s->sandbox_type);
	sbx_gen_kv(g, "state", sbx_state_name(s->state));
	sbx_gen_kv(g, "session_ctx_id", s->session_ctx_id);
	sbx_gen_time(g, "last_active_at", s->last_active_at);
	sbx_gen_time(g, "recycled_at", s->recycled_at);
	sbx_gen_time(g, "released_at", s->released_at);
	sbx_gen_time(g, "updated_at", s->updated_at);
	sbx_gen_kv(g, "recycle_reason", s->recycle_reason);
	sbx_gen_kv(g, "redirect_to", s->redirect_to);
	if (internal) {
		json_gen_str(g, "_sandpool");
		yajl_gen_map_open(g);
		sbx_gen_kv(g, "sock_path", s->sock_path);
		sbx_gen_kv(g, "run_dir", s->run_dir);
		sbx_gen_kv(g, "instance", s->instance);
		json_gen_str(g, "stopped");
		json_gen_bool(g, s->stopped);
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
}

/* The text of an object's members: ',' + "k":v,... + ','. */
static char *
sbx_members(yajl_gen g)
{
	size_t len;
	char *t = json_gen_done(g, &len);

	/* {"k":v,...} -> ,"k":v,..., */
	t[0] = ',';
	t[len - 1] = ',';
	return t;
}

void
sbx_claim_patch(struct sbx_claim_patch *p, const char *meta,
    const char *session, double now)
{
	yajl_gen g = json_gen_new();

	if (meta == NULL || json_gen_raw(g, meta, strlen(meta)) != 0) {
		yajl_gen_free(g);
		g = json_gen_new();
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	}
	p->meta = json_gen_done(g, NULL);
	g = json_gen_new();
	yajl_gen_map_open(g);
	sbx_gen_kv(g, "state",
	    sbx_state_name(session != NULL ? SBX_RUNNING : SBX_WARM));
	sbx_gen_kv(g, "session_ctx_id", session);
	sbx_gen_time(g, "last_active_at", session != NULL ? now : 0);
	yajl_gen_map_close(g);
	p->state = sbx_members(g);
	g = json_gen_new();
	yajl_gen_map_open(g);
	sbx_gen_time(g, "updated_at", now);
	yajl_gen_map_close(g);
	p->updated = sbx_members(g);
}

void
sbx_claim_patch_free(struct sbx_claim_patch *p)
{
	free(p->meta);
	free(p->state);
	free(p->updated);
}

/* Serialises the record. */
char *
sbx_to_json(const struct sbx *s, int internal, size_t *len)
{
	yajl_gen g = json_gen_new();

	sbx_gen(g, s, internal);
	return json_gen_done(g, len);
}

/*
 * Reading a record is on the path of every store lookup, so it is one
 * pass of yajl's event parser into the struct, with no tree: each member
 * of the record (and of its "_sandpool") is looked up in a table; the
 * first occurrence of a key decides, as a lookup in a tree would; meta,
 * when an object, is re-generated as it is read.
 */
enum sbx_kind {
	SBX_K_STR,   /* a string, or left NULL */
	SBX_K_TIME,  /* a number of seconds, else 0 */
	SBX_K_INT,   /* an integer (timeout) */
	SBX_K_STATE, /* a state name; missing or not a string: running */
	SBX_K_PORTS, /* an array: its first integer or string */
	SBX_K_META,  /* an object, re-generated */
	SBX_K_INNER, /* "_sandpool": an object of the fields below */
	SBX_K_BOOL,
	SBX_K_SKIP
};

struct sbx_field {
	const char *key;
	enum sbx_kind kind;
	size_t off;
};

#define SBX_F(k, kind, m)                                                      \
	{                                                                      \
		k, kind, offsetof(struct sbx, m)                               \
	}
static const struct sbx_field sbx_fields[] = {
    SBX_F("session_id", SBX_K_STR, session_id),
    SBX_F("container_id", SBX_K_STR, container_id),
    SBX_F("container_name", SBX_K_STR, container_name),
    SBX_F("url", SBX_K_STR, url),
    SBX_F("ports", SBX_K_PORTS, port),
    SBX_F("mount_dir", SBX_K_STR, mount_dir),
    SBX_F("storage_path", SBX_K_STR, storage_path),
    SBX_F("runtime_token", SBX_K_STR, runtime_token),
    SBX_F("version", SBX_K_STR, version),
    SBX_F("meta", SBX_K_META, meta),
    SBX_F("timeout", SBX_K_INT, timeout),
    SBX_F("sandbox_type", SBX_K_STR, sandbox_type),
    SBX_F("state", SBX_K_STATE, state),
    SBX_F("session_ctx_id", SBX_K_STR, session_ctx_id),
    SBX_F("last_active_at", SBX_K_TIME, last_active_at),
    SBX_F("recycled_at", SBX_K_TIME, recycled_at),
    SBX_F("released_at", SBX_K_TIME, released_at),
    SBX_F("updated_at", SBX_K_TIME, updated_at),
    SBX_F("recycle_reason", SBX_K_STR, recycle_reason),
    SBX_F("redirect_to", SBX_K_STR, redirect_to),
    SBX_F("_sandpool", SBX_K_INNER, sock_path),
};
static const struct sbx_field sbx_inner_fields[] = {
    SBX_F("sock_path", SBX_K_STR, sock_path),
    SBX_F("run_dir", SBX_K_STR, run_dir),
    SBX_F("instance", SBX_K_STR, instance),
    SBX_F("stopped", SBX_K_BOOL, stopped),
};
#undef SBX_F
#define SBX_NFIELDS (sizeof sbx_fields / sizeof *sbx_fields)
#define SBX_NINNER (sizeof sbx_inner_fields / sizeof *sbx_inner_fields)

struct sbx_reader {
	struct sbx *s;
	int depth;	/* containers open; inside the record: 1 */
	int state_seen; /* state was a string */
	const struct sbx_field *field; /* the member whose value comes next */
	unsigned seen, inner_seen;     /* keys met (first occurrence decides) */
	int inner_depth;	       /* depth of "_sandpool", or 0 */
	int ports_depth, ports_done;   /* depth of "ports", or 0 */
	yajl_gen meta;		       /* re-generating meta */
	int meta_depth;		       /* depth of meta, or 0 */
};

/* Looks a key up in a table; NULL if it has none or met it already. */
static const struct sbx_field *
sbx_find(const struct sbx_field *t, size_t n, unsigned *seen,
    const unsigned char *k, size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(t[i].key) == len && memcmp(t[i].key, k, len) == 0) {
			if (*seen & (1u << i))
				return NULL;
			*seen |= 1u << i;
			return &t[i];
		}
	return NULL;
}

/* The field a scalar at the current depth fills, or NULL. */
static const struct sbx_field *
sbx_target(struct sbx_reader *r)
{
	const struct sbx_field *f = r->field;

	r->field = NULL;
	if (r->depth == 1 || (r->inner_depth != 0 && r->depth == 2))
		return f;
	return NULL;
}

static void *
sbx_member(struct sbx_reader *r, const struct sbx_field *f)
{
	return (char *)r->s + f->off;
}

/* A scalar or a container start: the first element of "ports"? */
static int
sbx_ports_elem(struct sbx_reader *r)
{
	if (r->ports_depth == 0 || r->depth != r->ports_depth || r->ports_done)
		return 0;
	r->ports_done = 1;
	return 1;
}

static int
sbx_on_null(void *ctx)
{
	struct sbx_reader *r = ctx;

	if (r->meta_depth)
		return yajl_gen_null(r->meta) == yajl_gen_status_ok;
	sbx_ports_elem(r);
	sbx_target(r);
	return 1;
}

static int
sbx_on_bool(void *ctx, int b)
{
	struct sbx_reader *r = ctx;
	const struct sbx_field *f;

	if (r->meta_depth)
		return yajl_gen_bool(r->meta, b) == yajl_gen_status_ok;
	sbx_ports_elem(r);
	if ((f = sbx_target(r)) != NULL && f->kind == SBX_K_BOOL)
		*(int *)sbx_member(r, f) = b;
	return 1;
}

static int
sbx_on_number(void *ctx, const char *num, size_t len)
{
	struct sbx_reader *r = ctx;
	const struct sbx_field *f;
	char buf[64], *text, *end;
	long long n = 0;
	double d;
	int integer;

	if (r->meta_depth)
		return yajl_gen_number(r->meta, num, len) == yajl_gen_status_ok;
	/* A C string of the number; a long one (1e-60 with 70 zeros) too. */
	text = len < sizeof buf ? buf : xmalloc(len + 1);
	memcpy(text, num, len);
	text[len] = '\0';
	errno = 0;
	integer = strpbrk(text, ".eE") == NULL &&
	    ((n = strtoll(text, &end, 10)), errno != ERANGE);
	d = integer ? (double)n : strtod(text, NULL);
	if (text != buf)
		free(text);
	if (sbx_ports_elem(r)) {
		if (integer)
			r->s->port = (int)n;
		return 1;
	}
	if ((f = sbx_target(r)) == NULL)
		return 1;
	if (f->kind == SBX_K_INT && integer)
		*(int *)sbx_member(r, f) = (int)n;
	else if (f->kind == SBX_K_TIME) {
		/*
		 * A time outside 1970-01-01T00:00:01 .. 2286 is no time
		 * (null): it could not be written back with microseconds
		 * unchanged, nor mean anything.
		 */
		*(double *)sbx_member(r, f) =
		    isfinite(d) && d >= 1 && d < 1e10 ? d : 0;
	}
	return 1;
}

static int
sbx_on_string(void *ctx, const unsigned char *v, size_t len)
{
	struct sbx_reader *r = ctx;
	const struct sbx_field *f;
	char *t;
	int st;

	if (r->meta_depth) {
		json_gen_strn(r->meta, (const char *)v, len);
		return 1;
	}
	if (sbx_ports_elem(r)) {
		t = xstrndup((const char *)v, len);
		r->s->port = atoi(t);
		free(t);
		return 1;
	}
	if ((f = sbx_target(r)) == NULL)
		return 1;
	if (f->kind == SBX_K_STR) {
		free(*(char **)sbx_member(r, f));
		*(char **)sbx_member(r, f) = xstrndup((const char *)v, len);
	} else if (f->kind == SBX_K_STATE) {
		t = xstrndup((const char *)v, len);
		st = sbx_state_parse(t);
		free(t);
		r->s->state = st < 0 ? SBX_ERROR : (enum sbx_state)st;
		r->state_seen = 1;
	}
	return 1;
}

static int
sbx_on_start_map(void *ctx)
{
	struct sbx_reader *r = ctx;
	const struct sbx_field *f;

	if (r->meta_depth) {
		r->meta_depth++;
		return yajl_gen_map_open(r->meta) == yajl_gen_status_ok;
	}
	sbx_ports_elem(r);
	r->depth++;
	if (r->depth == 1)
		return 1;
	f = r->field;
	r->field = NULL;
	if (r->depth == 2 && f != NULL && f->kind == SBX_K_META) {
		r->meta = json_gen_new();
		r->meta_depth = 1;
		r->depth--; /* meta's own depth is meta_depth's */
		return yajl_gen_map_open(r->meta) == yajl_gen_status_ok;
	}
	if (r->depth == 2 && f != NULL && f->kind == SBX_K_INNER)
		r->inner_depth = 2;
	return 1;
}

static int
sbx_on_key(void *ctx, const unsigned char *k, size_t len)
{
	struct sbx_reader *r = ctx;

	if (r->meta_depth) {
		json_gen_strn(r->meta, (const char *)k, len);
		return 1;
	}
	if (r->depth == 1)
		r->field = sbx_find(sbx_fields, SBX_NFIELDS, &r->seen, k, len);
	else if (r->inner_depth != 0 && r->depth == 2)
		r->field = sbx_find(
		    sbx_inner_fields, SBX_NINNER, &r->inner_seen, k, len);
	return 1;
}

static int
sbx_on_end_map(void *ctx)
{
	struct sbx_reader *r = ctx;
	char *text;

	if (r->meta_depth) {
		if (yajl_gen_map_close(r->meta) != yajl_gen_status_ok)
			return 0;
		if (--r->meta_depth == 0) {
			text = json_gen_done(r->meta, NULL);
			r->meta = NULL;
			free(r->s->meta);
			r->s->meta = text;
		}
		return 1;
	}
	if (r->inner_depth == r->depth)
		r->inner_depth = 0;
	r->depth--;
	return 1;
}

static int
sbx_on_start_array(void *ctx)
{
	struct sbx_reader *r = ctx;
	const struct sbx_field *f;

	if (r->meta_depth) {
		r->meta_depth++;
		return yajl_gen_array_open(r->meta) == yajl_gen_status_ok;
	}
	sbx_ports_elem(r);
	f = sbx_target(r);
	r->depth++;
	if (f != NULL && f->kind == SBX_K_PORTS && r->depth == 2)
		r->ports_depth = 2;
	return 1;
}

static int
sbx_on_end_array(void *ctx)
{
	struct sbx_reader *r = ctx;

	if (r->meta_depth) {
		r->meta_depth--;
		return yajl_gen_array_close(r->meta) == yajl_gen_status_ok;
	}
	if (r->ports_depth == r->depth)
		r->ports_depth = 0;
	r->depth--;
	return 1;
}

static const yajl_callbacks sbx_callbacks = {
    .yajl_null = sbx_on_null,
    .yajl_boolean = sbx_on_bool,
    .yajl_number = sbx_on_number,
    .yajl_string = sbx_on_string,
    .yajl_start_map = sbx_on_start_map,
    .yajl_map_key = sbx_on_key,
    .yajl_end_map = sbx_on_end_map,
    .yajl_start_array = sbx_on_start_array,
    .yajl_end_array = sbx_on_end_array,
};

/* Parses a record. */
struct sbx *
sbx_from_json(const char *buf, size_t len, char **cause)
{
	struct sbx_reader r;
	unsigned char *msg;
	yajl_handle h;
	yajl_status st;
	size_t n;

	if (json_check(buf, len, cause) != 0)
		return NULL;
	memset(&r, 0, sizeof r);
	r.s = sbx_new();
	if ((h = yajl_alloc(&sbx_callbacks, NULL, &r)) == NULL)
		abort();
	yajl_config(h, yajl_allow_comments, 1);
	st = yajl_parse(h, (const unsigned char *)buf, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st != yajl_status_ok) {
		msg = yajl_get_error(h, 0, NULL, 0);
		n = strcspn((char *)msg, "\n");
		xasprintf(cause, "invalid JSON: %.*s", (int)n,
		    n > 0 ? (char *)msg : "parse error");
		yajl_free_error(h, msg);
	}
	yajl_free(h);
	if (r.meta != NULL)
		yajl_gen_free(r.meta);
	/* Members are only read inside an object at the top. */
	if (st != yajl_status_ok || r.s->container_name == NULL) {
		if (st == yajl_status_ok)
			*cause = xstrdup(
			    "record is not an object with container_name");
		sbx_free(r.s);
		return NULL;
	}
	if (!r.state_seen)
		r.s->state = SBX_RUNNING;
	/* Spec 4.1 normalisation: session_ctx_id and meta mirror each other. */
	if (r.s->session_ctx_id == NULL || r.s->session_ctx_id[0] == '\0') {
		char *m = xstrdup(r.s->meta);

		sbx_set_meta(r.s, m);
		free(m);
	}
	if (r.s->updated_at == 0)
		r.s->updated_at = sbx_now();
	return r.s;
}

/*
 * Sets meta from JSON object text (anything else becomes {}) and takes
 * session_ctx_id from meta.session_ctx_id when it is a non-empty string.
 */
void
sbx_set_meta(struct sbx *s, const char *meta_json)
{
	const char *sess;
	char *cause;
	yajl_val v;

	free(s->meta);
	s->meta = NULL;
	v = meta_json != NULL ? json_parse(meta_json, strlen(meta_json), &cause)
			      : NULL;
	if (v == NULL || !YAJL_IS_OBJECT(v)) {
		if (meta_json != NULL && v == NULL)
			free(cause);
		yajl_tree_free(v);
		s->meta = xstrdup("{}");
		return;
	}
	s->meta = xstrdup(meta_json);
	sess = json_get_str(v, "session_ctx_id");
	if (sess != NULL && sess[0] != '\0')
		xstrset(&s->session_ctx_id, sess);
	yajl_tree_free(v);
}

/* Drops the session binding from the record and from meta. */
void
sbx_clear_session(struct sbx *s)
{
	yajl_val v;
	yajl_gen g;
	char *cause;
	size_t i;

	free(s->session_ctx_id);
	s->session_ctx_id = NULL;
	if ((v = json_parse(s->meta, strlen(s->meta), &cause)) == NULL) {
		free(cause);
		xstrset(&s->meta, "{}");
		return;
	}
	g = json_gen_new();
	yajl_gen_map_open(g);
	for (i = 0; YAJL_IS_OBJECT(v) && i < v->u.object.len; i++) {
		if (strcmp(v->u.object.keys[i], "session_ctx_id") == 0)
			continue;
		json_gen_str(g, v->u.object.keys[i]);
		json_gen_tree(g, v->u.object.values[i]);
	}
	yajl_gen_map_close(g);
	yajl_tree_free(v);
	free(s->meta);
	s->meta = json_gen_done(g, NULL);
}

/* Fills buf with random bytes from the kernel (aborts if it cannot). */
static void
sbx_random_bytes(unsigned char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = getrandom(buf + off, len - off, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fatal("getrandom");
		}
		off += (size_t)n;
	}
}

/* A random session id of [0-9a-z] without modulo bias. */
void
sbx_random_id(char out[SBX_ID_LEN + 1])
{
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned char b[64];
	size_t i = 0, o = 0;

	while (o < SBX_ID_LEN) {
		if (i == 0 || i == sizeof b) {
			sbx_random_bytes(b, sizeof b);
			i = 0;
		}
		if (b[i] < 252) /* 252 = 7 * 36 */
			out[o++] = alphabet[b[i] % 36];
		i++;
	}
	out[SBX_ID_LEN] = '\0';
}

/* A random token of lowercase hex. */
void
sbx_random_token(char out[SBX_TOKEN_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[SBX_TOKEN_LEN / 2];
	size_t i;

	sbx_random_bytes(b, sizeof b);
	for (i = 0; i < sizeof b; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[SBX_TOKEN_LEN] = '\0';
}

/* Leaves the claimed marker in the run dir. */
void
sbx_mark_claimed(const struct sbx *s)
{
	char *path;
	int fd;

	if (s->run_dir == NULL)
		return;
	xasprintf(&path, "%s/claimed", s->run_dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) != -1)
		close(fd);
	free(path);
}

/* Whether the claimed marker is in the run dir. */
int
sbx_was_claimed(const char *run_dir)
{
	char *path;
	int r;

	if (run_dir == NULL)
		return 1;
	xasprintf(&path, "%s/claimed", run_dir);
	r = access(path, F_OK) == 0;
	free(path);
	return r;
}

/* Unix time in seconds with microseconds. */
double
sbx_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/*
 * Checks an identity given by a client: a container name or engine id,
 * [A-Za-z0-9][A-Za-z0-9_.-]{0,127}, the engine's own rule for names. Such
 * a string cannot walk a path or break a URL, a label or a log line.
 */
int
sbx_identity_ok(const char *id)
{
	size_t i;

	if (id == NULL)
		return 0;
	for (i = 0; id[i] != '\0'; i++) {
		if (i >= SBX_IDENTITY_MAX)
			return 0;
		if ((id[i] >= 'a' && id[i] <= 'z') ||
		    (id[i] >= 'A' && id[i] <= 'Z') ||
		    (id[i] >= '0' && id[i] <= '9'))
			continue;
		if (i == 0 || (id[i] != '_' && id[i] != '.' && id[i] != '-'))
			return 0;
	}
	return i > 0;
}
