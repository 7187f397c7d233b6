/*
 * sandbox: the sandbox record, its JSON form (spec 4.1), and the random
 * ids and tokens that name and guard sandboxes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

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

/* Copies a string member (or NULL) into *dst. */
static void
sbx_take_str(yajl_val o, const char *k, char **dst)
{
	xstrset(dst, json_get_str(o, k));
}

/* Reads a number member as seconds (0 when null or missing). */
static double
sbx_take_time(yajl_val o, const char *k)
{
	yajl_val v = json_get(o, k);
	double d;

	if (v == NULL || !YAJL_IS_NUMBER(v))
		return 0;
	/*
	 * A time outside 1970-01-01T00:00:01 .. 2286 is no time (null): it
	 * could not be written back with microseconds unchanged, nor mean
	 * anything.
	 */
	d = YAJL_GET_DOUBLE(v);
	return isfinite(d) && d >= 1 && d < 1e10 ? d : 0;
}

/* Parses a record. */
struct sbx *
sbx_from_json(const char *buf, size_t len, char **cause)
{
	yajl_val o, v, in;
	struct sbx *s;
	long long n;
	int st;

	if ((o = json_parse(buf, len, cause)) == NULL)
		return NULL;
	if (!YAJL_IS_OBJECT(o) || json_get_str(o, "container_name") == NULL) {
		yajl_tree_free(o);
		*cause = xstrdup("record is not an object with container_name");
		return NULL;
	}
	s = sbx_new();
	sbx_take_str(o, "session_id", &s->session_id);
	sbx_take_str(o, "container_id", &s->container_id);
	sbx_take_str(o, "container_name", &s->container_name);
	sbx_take_str(o, "url", &s->url);
	v = json_get(o, "ports");
	if (v != NULL && YAJL_IS_ARRAY(v) && v->u.array.len > 0) {
		yajl_val p = v->u.array.values[0];

		if (YAJL_IS_INTEGER(p))
			s->port = (int)YAJL_GET_INTEGER(p);
		else if (YAJL_IS_STRING(p))
			s->port = atoi(p->u.string);
	}
	sbx_take_str(o, "mount_dir", &s->mount_dir);
	sbx_take_str(o, "storage_path", &s->storage_path);
	sbx_take_str(o, "runtime_token", &s->runtime_token);
	sbx_take_str(o, "version", &s->version);
	if (json_get_int(o, "timeout", &n) == 0)
		s->timeout = (int)n;
	sbx_take_str(o, "sandbox_type", &s->sandbox_type);
	st = json_get_str(o, "state") != NULL
	    ? sbx_state_parse(json_get_str(o, "state"))
	    : SBX_RUNNING;
	s->state = st < 0 ? SBX_ERROR : (enum sbx_state)st;
	sbx_take_str(o, "session_ctx_id", &s->session_ctx_id);
	s->last_active_at = sbx_take_time(o, "last_active_at");
	s->recycled_at = sbx_take_time(o, "recycled_at");
	s->released_at = sbx_take_time(o, "released_at");
	s->updated_at = sbx_take_time(o, "updated_at");
	sbx_take_str(o, "recycle_reason", &s->recycle_reason);
	sbx_take_str(o, "redirect_to", &s->redirect_to);
	if ((in = json_get(o, "_sandpool")) != NULL) {
		sbx_take_str(in, "sock_path", &s->sock_path);
		sbx_take_str(in, "run_dir", &s->run_dir);
		sbx_take_str(in, "instance", &s->instance);
		if (json_get_bool(in, "stopped", &st) == 0)
			s->stopped = st;
	}
	v = json_get(o, "meta");
	if (v != NULL && YAJL_IS_OBJECT(v)) {
		yajl_gen g = json_gen_new();

		json_gen_tree(g, v);
		free(s->meta);
		s->meta = json_gen_done(g, NULL);
	}
	yajl_tree_free(o);
	/* Spec 4.1 normalisation: session_ctx_id and meta mirror each other. */
	if (s->session_ctx_id == NULL || s->session_ctx_id[0] == '\0') {
		char *m = xstrdup(s->meta);

		sbx_set_meta(s, m);
		free(m);
	}
	if (s->updated_at == 0)
		s->updated_at = sbx_now();
	return s;
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
