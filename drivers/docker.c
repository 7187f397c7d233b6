/*
 * docker: the Docker Engine API (v1.41) over dockerd's unix socket, through
 * the shared HTTP client (hc). Owns the engine's pending calls (one
 * struct docker_op each, with its hc request). Builds request bodies with
 * yajl_gen, parses replies into drv_* structs in the reply handler, and
 * maps engine errors to enum drv_err in docker_err() alone.
 */
#include <sys/queue.h>
#include <sys/un.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "driver_impl.h"
#include "hc.h"
#include "json.h"
#include "xmalloc.h"

#define DOCKER_API "/v1.41"
/* Longest engine message passed up when the reply is not JSON. */
#define DOCKER_MSG_MAX 512
/* Longest container id or name, and image reference, we put in a URL. */
#define DOCKER_ID_MAX 256
#define DOCKER_IMAGE_MAX 512

/* What a pending call is. */
enum docker_kind {
	DOCKER_PING,
	DOCKER_CREATE,
	DOCKER_START,
	DOCKER_INSPECT,
	DOCKER_STOP,
	DOCKER_REMOVE,
	DOCKER_LIST,
	DOCKER_IMAGE,
	DOCKER_INFO
};

struct docker_op {
	TAILQ_ENTRY(docker_op) entry;
	struct docker *d;
	enum docker_kind kind;
	struct hc_req *req;
	drv_cb cb;
	void *arg;
};

/* One /events stream. */
struct docker_events {
	TAILQ_ENTRY(docker_events) entry;
	struct docker *d;
	struct drv_events pub;
	struct hc_req *req;
	char *line; /* partial line */
	size_t len, cap;
	drv_event_cb ev;
	drv_events_end_cb end;
	void *arg;
	int cancelled; /* from inside ev: stop delivering */
	int in_chunk;  /* its chunk callback is running */
};

struct docker {
	struct drv *drv;
	char *sock;		     /* dockerd's unix socket path */
	TAILQ_HEAD(, docker_op) ops; /* calls in flight */
	TAILQ_HEAD(, docker_events) streams;
};

static void docker_events_cancel(struct drv_events *);

/* Whether s contains needle, ignoring case. */
static int
docker_has(const char *s, const char *needle)
{
	size_t n = strlen(needle);

	for (; s != NULL && *s != '\0'; s++)
		if (strncasecmp(s, needle, n) == 0)
			return 1;
	return 0;
}

/*
 * Maps an engine reply to a driver error: the only place that knows how
 * dockerd says what went wrong.
 */
static enum drv_err
docker_err(enum docker_kind kind, const struct hc_resp *r, const char *msg)
{
	if (r->timed_out)
		return DRV_ETIMEOUT;
	if (r->status == 0 || r->error != NULL)
		return DRV_EENGINE;
	switch (r->status) {
	case 400:
		return DRV_EINVAL;
	case 404:
		if (kind == DOCKER_IMAGE || docker_has(msg, "no such image"))
			return DRV_ENOIMAGE;
		return DRV_ENOTFOUND;
	case 409:
		return DRV_ECONFLICT;
	case 500:
		if (docker_has(msg, "port is already allocated") ||
		    docker_has(msg, "address already in use"))
			return DRV_EPORT;
		return DRV_EENGINE;
	}
	if (r->status >= 400 && r->status < 500)
		return DRV_EINVAL;
	return DRV_EENGINE;
}

/* Whether a status means success for this kind of call. */
static int
docker_status_ok(enum docker_kind kind, long status)
{
	if (status >= 200 && status < 300)
		return 1;
	/* 304: already started, or already stopped. */
	return status == 304 && (kind == DOCKER_START || kind == DOCKER_STOP);
}

/*
 * The engine's own words for a failed reply: {"message": ...} if the body
 * is JSON, else the body's first bytes, else the transport error.
 */
static char *
docker_msg(const struct docker *d, const struct hc_resp *r)
{
	const char *m;
	char *cause, *s;
	yajl_val v;
	size_t n, i;

	if (r->error != NULL) {
		xasprintf(&s, "dockerd at %s: %s", d->sock, r->error);
		return s;
	}
	if (r->len > 0) {
		if ((v = json_parse(r->body, r->len, &cause)) != NULL) {
			m = json_get_str(v, "message");
			s = m != NULL ? xstrdup(m) : NULL;
			yajl_tree_free(v);
			if (s != NULL)
				return s;
		}
		free(cause);
	}
	n = r->len < DOCKER_MSG_MAX ? r->len : DOCKER_MSG_MAX;
	while (n > 0 && isspace((unsigned char)r->body[n - 1]))
		n--;
	if (n == 0) {
		xasprintf(&s, "engine replied HTTP %ld", r->status);
		return s;
	}
	/* Byte by byte: a NUL in the body must not shorten the copy. */
	s = xmalloc(n + 1);
	for (i = 0; i < n; i++)
		s[i] = isprint((unsigned char)r->body[i]) ? r->body[i] : '?';
	s[n] = '\0';
	return s;
}

/* Percent-encodes s; '/' stays if keep_slash. */
static char *
docker_escape(const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), o = 0;
	char *out = xmalloc(n * 3 + 1);
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~' ||
		    (keep_slash && (c == '/' || c == ':' || c == '@')))
			out[o++] = (char)c;
		else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

/* Checks a container id or name before it goes into a URL path. */
static const char *
docker_check_id(const char *id)
{
	if (id == NULL || *id == '\0')
		return "empty container id";
	if (strlen(id) > DOCKER_ID_MAX)
		return "container id too long";
	if (strchr(id, '/') != NULL || strcmp(id, ".") == 0 ||
	    strcmp(id, "..") == 0)
		return "invalid container id";
	return NULL;
}

/*
 * Checks an image reference ([host[:port]/]path[:tag][@digest]) before it
 * goes into a URL path, where its '/' must stay: no dot segments, no
 * empty segments, nothing outside the reference alphabet.
 */
static const char *
docker_check_image(const char *image)
{
	const char *p, *seg;
	size_t n;

	if (image == NULL || *image == '\0')
		return "empty image name";
	if (strlen(image) > DOCKER_IMAGE_MAX)
		return "image name too long";
	for (p = image; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("._-:/@", *p) == NULL)
			return "invalid image name";
	for (seg = image;; seg = p + 1) {
		p = strchr(seg, '/');
		n = p != NULL ? (size_t)(p - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return "invalid image name";
		if (p == NULL)
			break;
	}
	return NULL;
}

/* Copies a Docker labels object into a key, value, ..., NULL list. */
static char **
docker_labels(yajl_val obj)
{
	char **l;
	size_t i, n = 0;

	if (obj == NULL || !YAJL_IS_OBJECT(obj)) {
		l = xcalloc(1, sizeof *l);
		return l;
	}
	l = xcalloc(obj->u.object.len * 2 + 1, sizeof *l);
	for (i = 0; i < obj->u.object.len; i++) {
		if (!YAJL_IS_STRING(obj->u.object.values[i]))
			continue;
		l[n++] = xstrdup(obj->u.object.keys[i]);
		l[n++] = xstrdup(YAJL_GET_STRING(obj->u.object.values[i]));
	}
	return l;
}

/* Copies a JSON array of strings into a NULL-terminated vector. */
static char **
docker_strv(yajl_val a)
{
	char **v;
	size_t i, n = 0;

	if (a == NULL || !YAJL_IS_ARRAY(a))
		return xcalloc(1, sizeof *v);
	v = xcalloc(a->u.array.len + 1, sizeof *v);
	for (i = 0; i < a->u.array.len; i++)
		if (YAJL_IS_STRING(a->u.array.values[i]))
			v[n++] = xstrdup(YAJL_GET_STRING(a->u.array.values[i]));
	return v;
}

/* Frees n containers and the array. */
static void
docker_ctrs_free(struct drv_ctr *c, size_t n)
{
	size_t i;
	char **l;

	for (i = 0; i < n; i++) {
		free(c[i].id);
		free(c[i].name);
		free(c[i].state);
		for (l = c[i].labels; l != NULL && *l != NULL; l++)
			free(*l);
		free(c[i].labels);
		free(c[i].image);
		for (l = c[i].env; l != NULL && *l != NULL; l++)
			free(*l);
		free(c[i].env);
		for (l = c[i].binds; l != NULL && *l != NULL; l++)
			free(*l);
		free(c[i].binds);
	}
	free(c);
}

/* A name without its leading '/'. */
static char *
docker_name(const char *name)
{
	if (name == NULL)
		return xstrdup("");
	return xstrdup(name[0] == '/' ? name + 1 : name);
}

/* A port number from a string or integer value, 0 if none. */
static int
docker_port(yajl_val v)
{
	long long n = 0;
	char *end;

	const char *s;

	if (v != NULL && YAJL_IS_INTEGER(v))
		n = YAJL_GET_INTEGER(v);
	else if ((s = YAJL_GET_STRING(v)) != NULL) {
		n = strtoll(s, &end, 10);
		if (end == s || *end != '\0')
			n = 0;
	}
	return n > 0 && n <= 65535 ? (int)n : 0;
}

/* The first HostPort in NetworkSettings.Ports ({"80/tcp": [{...}]}). */
static int
docker_inspect_port(yajl_val ports)
{
	yajl_val b;
	size_t i, j;
	int port;

	if (ports == NULL || !YAJL_IS_OBJECT(ports))
		return 0;
	for (i = 0; i < ports->u.object.len; i++) {
		b = ports->u.object.values[i];
		if (!YAJL_IS_ARRAY(b))
			continue;
		for (j = 0; j < b->u.array.len; j++) {
			port = docker_port(
			    json_get(b->u.array.values[j], "HostPort"));
			if (port != 0)
				return port;
		}
	}
	return 0;
}

/* The first PublicPort in a list entry's Ports ([{PublicPort: n}]). */
static int
docker_list_port(yajl_val ports)
{
	size_t i;
	int port;

	if (ports == NULL || !YAJL_IS_ARRAY(ports))
		return 0;
	for (i = 0; i < ports->u.array.len; i++) {
		port = docker_port(
		    json_get(ports->u.array.values[i], "PublicPort"));
		if (port != 0)
			return port;
	}
	return 0;
}

/* Parses GET /containers/{id}/json into one container. */
static const char *
docker_parse_inspect(yajl_val v, struct drv_ctr **out, size_t *n)
{
	struct drv_ctr *c;
	const char *id;

	if ((id = json_get_str(v, "Id")) == NULL)
		return "inspect reply without Id";
	c = xcalloc(1, sizeof *c);
	c->id = xstrdup(id);
	c->name = docker_name(json_get_str(v, "Name"));
	c->state = xstrdup0(json_get_str(json_get(v, "State"), "Status"));
	if (c->state == NULL)
		c->state = xstrdup("unknown");
	c->labels = docker_labels(json_get(json_get(v, "Config"), "Labels"));
	c->host_port = docker_inspect_port(
	    json_get(json_get(v, "NetworkSettings"), "Ports"));
	c->image = xstrdup0(json_get_str(json_get(v, "Config"), "Image"));
	c->env = docker_strv(json_get(json_get(v, "Config"), "Env"));
	c->binds = docker_strv(json_get(json_get(v, "HostConfig"), "Binds"));
	*out = c;
	*n = 1;
	return NULL;
}

/* Parses GET /containers/json into an array of containers. */
static const char *
docker_parse_list(yajl_val v, struct drv_ctr **out, size_t *n)
{
	struct drv_ctr *c;
	yajl_val e, names;
	const char *id, *state;
	size_t i, k = 0;

	if (!YAJL_IS_ARRAY(v))
		return "list reply is not an array";
	c = xcalloc(v->u.array.len + 1, sizeof *c);
	for (i = 0; i < v->u.array.len; i++) {
		e = v->u.array.values[i];
		if ((id = json_get_str(e, "Id")) == NULL)
			continue;
		names = json_get(e, "Names");
		c[k].id = xstrdup(id);
		c[k].name = docker_name(names != NULL && YAJL_IS_ARRAY(names) &&
			    names->u.array.len > 0 &&
			    YAJL_IS_STRING(names->u.array.values[0])
			? YAJL_GET_STRING(names->u.array.values[0])
			: NULL);
		state = json_get_str(e, "State");
		c[k].state = xstrdup(state != NULL ? state : "unknown");
		c[k].labels = docker_labels(json_get(e, "Labels"));
		c[k].host_port = docker_list_port(json_get(e, "Ports"));
		k++;
	}
	*out = c;
	*n = k;
	return NULL;
}

/* Parses GET /info's Runtimes object into a NULL-terminated name list. */
static const char *
docker_parse_info(yajl_val v, char ***out, size_t *n)
{
	yajl_val rt = json_get(v, "Runtimes");
	char **names;
	size_t i;

	if (rt == NULL || !YAJL_IS_OBJECT(rt))
		return "info reply without Runtimes";
	names = xcalloc(rt->u.object.len + 1, sizeof *names);
	for (i = 0; i < rt->u.object.len; i++)
		names[i] = xstrdup(rt->u.object.keys[i]);
	*out = names;
	*n = i;
	return NULL;
}

/*
 * Parses a successful reply into *reply; the strings, containers and
 * names it points to are left in *idp, *ctrsp and *namesp for the caller
 * to free.
 */
static const char *
docker_parse(enum docker_kind kind, const struct hc_resp *r,
    struct drv_reply *reply, char **idp, struct drv_ctr **ctrsp, char ***namesp)
{
	const char *bad = NULL, *id;
	char *cause;
	yajl_val v;

	switch (kind) {
	case DOCKER_CREATE:
	case DOCKER_INSPECT:
	case DOCKER_LIST:
	case DOCKER_INFO:
		break;
	default:
		return NULL;
	}
	if ((v = json_parse(r->body, r->len, &cause)) == NULL) {
		free(cause);
		return "reply is not valid JSON";
	}
	switch (kind) {
	case DOCKER_CREATE:
		if ((id = json_get_str(v, "Id")) == NULL)
			bad = "create reply without Id";
		else
			reply->id = *idp = xstrdup(id);
		break;
	case DOCKER_INSPECT:
		bad = docker_parse_inspect(v, ctrsp, &reply->nctrs);
		break;
	case DOCKER_INFO:
		bad = docker_parse_info(v, namesp, &reply->nnames);
		reply->names = *namesp;
		break;
	default:
		bad = docker_parse_list(v, ctrsp, &reply->nctrs);
		break;
	}
	reply->ctrs = *ctrsp;
	yajl_tree_free(v);
	return bad;
}

/* An hc request finished: map, parse, call back, free. */
static void
docker_on_reply(const struct hc_resp *r, void *arg)
{
	struct docker_op *op = arg;
	struct drv_reply reply;
	struct drv_ctr *ctrs = NULL;
	char *msg = NULL, *id = NULL, **names = NULL, **n;
	const char *bad;
	size_t nctrs = 0;

	TAILQ_REMOVE(&op->d->ops, op, entry);
	memset(&reply, 0, sizeof reply);
	if (r->error == NULL && docker_status_ok(op->kind, r->status)) {
		bad = docker_parse(op->kind, r, &reply, &id, &ctrs, &names);
		nctrs = reply.nctrs;
		if (bad != NULL) {
			memset(&reply, 0, sizeof reply);
			reply.err = DRV_EENGINE;
			reply.msg = bad;
		}
	} else {
		msg = docker_msg(op->d, r);
		reply.err = docker_err(op->kind, r, msg);
		if (reply.err == DRV_OK)
			reply.err = DRV_EENGINE;
		reply.msg = msg;
	}
	/* The callback may close the driver: op is no longer on its list. */
	op->cb(&reply, op->arg);
	docker_ctrs_free(ctrs, nctrs);
	for (n = names; n != NULL && *n != NULL; n++)
		free(*n);
	free(names);
	free(id);
	free(msg);
	free(op);
}

/* Sends one request to dockerd; extra_ms lengthens the deadline. */
static void
docker_send(struct drv *drv, enum docker_kind kind, const char *method,
    const char *path, const char *body, size_t body_len, long extra_ms,
    drv_cb cb, void *arg)
{
	struct docker *d = drv->eng;
	struct docker_op *op;
	struct hc_opts o;
	char *url;
	static const char *const json_hdrs[] = {
	    "Content-Type: application/json", NULL};

	op = xcalloc(1, sizeof *op);
	op->d = d;
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	xasprintf(&url, "http://docker%s", path);
	memset(&o, 0, sizeof o);
	o.method = method;
	o.url = url;
	o.unix_path = d->sock;
	o.headers = body != NULL ? json_hdrs : NULL;
	o.body = body;
	o.body_len = body_len;
	if (drv->timeout_ms > 0) {
		o.timeout_ms = drv->timeout_ms + extra_ms;
		o.connect_timeout_ms = drv->timeout_ms;
	}
	TAILQ_INSERT_TAIL(&d->ops, op, entry);
	op->req = hc_request(drv->hc, &o, docker_on_reply, op);
	free(url);
}

/* Sends a request about one container: API path /containers/{id}{tail}. */
static void
docker_send_ctr(struct drv *drv, enum docker_kind kind, const char *method,
    const char *id, const char *tail, long extra_ms, drv_cb cb, void *arg)
{
	const char *bad;
	char *esc, *path;

	if ((bad = docker_check_id(id)) != NULL) {
		drv_fail_later(drv, cb, arg, DRV_EINVAL, bad);
		return;
	}
	esc = docker_escape(id, 0);
	xasprintf(&path, DOCKER_API "/containers/%s%s", esc, tail);
	docker_send(drv, kind, method, path, NULL, 0, extra_ms, cb, arg);
	free(path);
	free(esc);
}

/* Opens the engine at a unix socket path. */
static int
docker_open(struct drv *drv, const char *path, char **cause)
{
	struct docker *d;
	struct sockaddr_un sun;

	if (path[0] != '/') {
		xasprintf(cause,
		    "docker endpoint needs an absolute socket "
		    "path: unix://%s",
		    path);
		return -1;
	}
	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause, "docker socket path too long: %s", path);
		return -1;
	}
	d = xcalloc(1, sizeof *d);
	d->drv = drv;
	d->sock = xstrdup(path);
	TAILQ_INIT(&d->ops);
	TAILQ_INIT(&d->streams);
	drv->eng = d;
	return 0;
}

/* Cancels pending calls without callbacks and frees the engine. */
static void
docker_close(struct drv *drv)
{
	struct docker *d = drv->eng;
	struct docker_op *op;

	while ((op = TAILQ_FIRST(&d->ops)) != NULL) {
		TAILQ_REMOVE(&d->ops, op, entry);
		hc_cancel(op->req);
		free(op);
	}
	while (!TAILQ_EMPTY(&d->streams))
		docker_events_cancel(&TAILQ_FIRST(&d->streams)->pub);
	free(d->sock);
	free(d);
}

/* GET /_ping. */
static void
docker_ping(struct drv *drv, drv_cb cb, void *arg)
{
	docker_send(drv, DOCKER_PING, "GET", "/_ping", NULL, 0, 0, cb, arg);
}

/* Emits "key": [strings] if v is set. */
static void
docker_gen_strv(yajl_gen g, const char *key, const char *const *v)
{
	if (v == NULL)
		return;
	json_gen_str(g, key);
	yajl_gen_array_open(g);
	for (; *v != NULL; v++)
		json_gen_str(g, *v);
	yajl_gen_array_close(g);
}

/* Emits "key": {k: v, ...} from a key, value list if set. */
static void
docker_gen_pairs(yajl_gen g, const char *key, const char *const *v)
{
	if (v == NULL)
		return;
	json_gen_str(g, key);
	yajl_gen_map_open(g);
	for (; v[0] != NULL && v[1] != NULL; v += 2) {
		json_gen_str(g, v[0]);
		json_gen_str(g, v[1]);
	}
	yajl_gen_map_close(g);
}

/* Emits "key": "value" if value is set. */
static void
docker_gen_str(yajl_gen g, const char *key, const char *value)
{
	if (value == NULL)
		return;
	json_gen_str(g, key);
	json_gen_str(g, value);
}

/* Emits "key": n if n is not 0. */
static void
docker_gen_int(yajl_gen g, const char *key, long long n)
{
	if (n == 0)
		return;
	json_gen_str(g, key);
	json_gen_int(g, n);
}

/* Emits "key": true if b. */
static void
docker_gen_true(yajl_gen g, const char *key, int b)
{
	if (!b)
		return;
	json_gen_str(g, key);
	json_gen_bool(g, 1);
}

/* Counts a NULL-terminated list. */
static size_t
docker_count(const char *const *v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

/* Checks what dockerd would accept silently but wrongly. */
static const char *
docker_check_spec(const struct drv_spec *s)
{
	const char *const *b;

	if (s->image == NULL || *s->image == '\0')
		return "no image";
	if (docker_count(s->labels) % 2 != 0)
		return "labels: a key without a value";
	if (docker_count(s->tmpfs) % 2 != 0)
		return "tmpfs: a path without options";
	if (s->private_port < 0 || s->private_port > 65535 ||
	    s->host_port < 0 || s->host_port > 65535)
		return "port out of range";
	if (s->host_port != 0 && s->private_port == 0)
		return "host port without a container port";
	/* A relative source silently becomes a named volume. */
	for (b = s->binds; b != NULL && *b != NULL; b++)
		if ((*b)[0] != '/')
			return "bind source must be an absolute path";
	if (s->memory < 0 || s->nano_cpus < 0 || s->pids_limit < 0 ||
	    s->shm_size < 0)
		return "negative limit";
	return NULL;
}

/* Builds the body of POST /containers/create. */
static char *
docker_create_body(const struct drv_spec *s, size_t *len)
{
	yajl_gen g = json_gen_new();
	char port[32], hport[16];

	snprintf(port, sizeof port, "%d/tcp", s->private_port);
	snprintf(hport, sizeof hport, "%d", s->host_port);

	yajl_gen_map_open(g);
	docker_gen_str(g, "Image", s->image);
	docker_gen_strv(g, "Entrypoint", s->entrypoint);
	docker_gen_strv(g, "Cmd", s->cmd);
	docker_gen_strv(g, "Env", s->env);
	docker_gen_pairs(g, "Labels", s->labels);
	docker_gen_str(g, "WorkingDir", s->workdir);
	docker_gen_str(g, "User", s->user);
	if (s->private_port > 0) {
		json_gen_str(g, "ExposedPorts");
		yajl_gen_map_open(g);
		json_gen_str(g, port);
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
		yajl_gen_map_close(g);
	}

	json_gen_str(g, "HostConfig");
	yajl_gen_map_open(g);
	if (s->private_port > 0) {
		json_gen_str(g, "PortBindings");
		yajl_gen_map_open(g);
		json_gen_str(g, port);
		yajl_gen_array_open(g);
		yajl_gen_map_open(g);
		docker_gen_str(g, "HostIp", s->host_ip);
		if (s->host_port > 0)
			docker_gen_str(g, "HostPort", hport);
		yajl_gen_map_close(g);
		yajl_gen_array_close(g);
		yajl_gen_map_close(g);
	}
	docker_gen_strv(g, "Binds", s->binds);
	docker_gen_str(g, "NetworkMode", s->network);
	docker_gen_int(g, "Memory", s->memory);
	docker_gen_int(g, "MemorySwap", s->memory);
	docker_gen_int(g, "NanoCpus", s->nano_cpus);
	docker_gen_int(g, "PidsLimit", s->pids_limit);
	docker_gen_int(g, "ShmSize", s->shm_size);
	docker_gen_true(g, "Privileged", s->privileged);
	docker_gen_true(g, "Init", s->init);
	docker_gen_true(g, "ReadonlyRootfs", s->readonly_rootfs);
	docker_gen_pairs(g, "Tmpfs", s->tmpfs);
	docker_gen_strv(g, "CapDrop", s->cap_drop);
	docker_gen_strv(g, "CapAdd", s->cap_add);
	docker_gen_strv(g, "SecurityOpt", s->security_opt);
	docker_gen_str(g, "Runtime", s->runtime);
	json_gen_str(g, "RestartPolicy");
	yajl_gen_map_open(g);
	docker_gen_str(g, "Name", "no");
	yajl_gen_map_close(g);
	json_gen_str(g, "LogConfig");
	yajl_gen_map_open(g);
	docker_gen_str(g, "Type", "json-file");
	json_gen_str(g, "Config");
	yajl_gen_map_open(g);
	docker_gen_str(g, "max-size", "1m");
	docker_gen_str(g, "max-file", "1");
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);

	yajl_gen_map_close(g);
	return json_gen_done(g, len);
}

/* POST /containers/create?name=. */
static void
docker_create(struct drv *drv, const struct drv_spec *s, drv_cb cb, void *arg)
{
	const char *bad;
	char *body, *esc, *path;
	size_t len;

	if ((bad = docker_check_spec(s)) != NULL ||
	    (s->name != NULL && (bad = docker_check_id(s->name)) != NULL)) {
		drv_fail_later(drv, cb, arg, DRV_EINVAL, bad);
		return;
	}
	if (s->name != NULL) {
		esc = docker_escape(s->name, 0);
		xasprintf(&path, DOCKER_API "/containers/create?name=%s", esc);
		free(esc);
	} else
		path = xstrdup(DOCKER_API "/containers/create");
	body = docker_create_body(s, &len);
	docker_send(drv, DOCKER_CREATE, "POST", path, body, len, 0, cb, arg);
	free(body);
	free(path);
}

/* POST /containers/{id}/start (204, or 304 if running). */
static void
docker_start(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	docker_send_ctr(drv, DOCKER_START, "POST", id, "/start", 0, cb, arg);
}

/* GET /containers/{id}/json. */
static void
docker_inspect(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	docker_send_ctr(drv, DOCKER_INSPECT, "GET", id, "/json", 0, cb, arg);
}

/* POST /containers/{id}/stop?t= (204, or 304 if not running). */
static void
docker_stop(
    struct drv *drv, const char *id, int timeout_s, drv_cb cb, void *arg)
{
	char tail[32];

	if (timeout_s >= 0)
		snprintf(tail, sizeof tail, "/stop?t=%d", timeout_s);
	else
		snprintf(tail, sizeof tail, "/stop");
	/* The engine waits up to timeout_s before it kills: wait as long. */
	docker_send_ctr(drv, DOCKER_STOP, "POST", id, tail,
	    timeout_s > 0 ? timeout_s * 1000L : 0, cb, arg);
}

/* DELETE /containers/{id}?force=1&v=1 (404 is DRV_ENOTFOUND). */
static void
docker_remove(struct drv *drv, const char *id, drv_cb cb, void *arg)
{
	docker_send_ctr(
	    drv, DOCKER_REMOVE, "DELETE", id, "?force=1&v=1", 0, cb, arg);
}

/* GET /containers/json?all=1&filters={"label":[...]}. */
static void
docker_list(struct drv *drv, const char *const *labels, drv_cb cb, void *arg)
{
	yajl_gen g;
	char *filters, *esc, *path;

	if (labels == NULL || labels[0] == NULL) {
		docker_send(drv, DOCKER_LIST, "GET",
		    DOCKER_API "/containers/json?all=1", NULL, 0, 0, cb, arg);
		return;
	}
	g = json_gen_new();
	yajl_gen_map_open(g);
	docker_gen_strv(g, "label", labels);
	yajl_gen_map_close(g);
	filters = json_gen_done(g, NULL);
	esc = docker_escape(filters, 0);
	xasprintf(&path, DOCKER_API "/containers/json?all=1&filters=%s", esc);
	docker_send(drv, DOCKER_LIST, "GET", path, NULL, 0, 0, cb, arg);
	free(path);
	free(esc);
	free(filters);
}

/* GET /images/{name}/json (404 is DRV_ENOIMAGE). */
static void
docker_image_exists(struct drv *drv, const char *image, drv_cb cb, void *arg)
{
	const char *bad;
	char *esc, *path;

	if ((bad = docker_check_image(image)) != NULL) {
		drv_fail_later(drv, cb, arg, DRV_EINVAL, bad);
		return;
	}
	esc = docker_escape(image, 1);
	xasprintf(&path, DOCKER_API "/images/%s/json", esc);
	docker_send(drv, DOCKER_IMAGE, "GET", path, NULL, 0, 0, cb, arg);
	free(path);
	free(esc);
}

/* GET /info: the Runtimes the engine knows. */
static void
docker_runtimes(struct drv *drv, drv_cb cb, void *arg)
{
	docker_send(
	    drv, DOCKER_INFO, "GET", DOCKER_API "/info", NULL, 0, 0, cb, arg);
}

/* ---- /events ---------------------------------------------------------- */

/* Longest event line kept; longer ones are dropped. */
#define DOCKER_EVENT_MAX (64 * 1024)

/* Frees a stream that is off the list. */
static void
docker_events_free(struct docker_events *e)
{
	free(e->line);
	free(e);
}

/* Stops a stream: no more callbacks. */
static void
docker_events_cancel(struct drv_events *pub)
{
	struct docker_events *e = pub->eng;

	if (e->cancelled)
		return;
	e->cancelled = 1;
	TAILQ_REMOVE(&e->d->streams, e, entry);
	hc_cancel(e->req); /* inside its chunk: freed after it returns */
	e->req = NULL;
	if (!e->in_chunk)
		docker_events_free(e);
}

/* Parses one event line and hands it over. */
static void
docker_events_line(struct docker_events *e, const char *s, size_t n)
{
	struct drv_event ev;
	yajl_val v, actor, attrs;
	char **kv, *cause = NULL;
	long long t = 0;
	size_t i;

	if ((v = json_parse(s, n, &cause)) == NULL) {
		free(cause);
		return;
	}
	actor = json_get(v, "Actor");
	memset(&ev, 0, sizeof ev);
	ev.action = json_get_str(v, "Action");
	ev.id = json_get_str(actor, "ID");
	json_get_int(v, "timeNano", &t);
	ev.time_nano = t;
	attrs = json_get(actor, "Attributes");
	kv = docker_labels(attrs);
	ev.attrs = kv;
	if (ev.action != NULL && ev.id != NULL &&
	    (json_get_str(v, "Type") == NULL ||
		strcmp(json_get_str(v, "Type"), "container") == 0))
		e->ev(&ev, e->arg);
	for (i = 0; kv[i] != NULL; i++)
		free(kv[i]);
	free(kv);
	yajl_tree_free(v);
}

/* A piece of the stream: split it into lines (one JSON each). */
static void
docker_events_on_chunk(const char *data, size_t n, void *arg)
{
	struct docker_events *e = arg;
	const char *nl;
	size_t k;

	e->in_chunk = 1;
	while (n > 0 && !e->cancelled) {
		nl = memchr(data, '\n', n);
		k = nl != NULL ? (size_t)(nl - data) : n;
		if (e->len + k <= DOCKER_EVENT_MAX) {
			if (e->len + k + 1 > e->cap) {
				e->cap = e->len + k + 1 < 1024 ? 1024
							       : e->len + k + 1;
				e->line = xreallocarray(e->line, 1, e->cap);
			}
			memcpy(e->line + e->len, data, k);
			e->len += k;
		} else
			e->len = DOCKER_EVENT_MAX + 1; /* too long: drop */
		if (nl == NULL)
			break;
		if (e->len <= DOCKER_EVENT_MAX && e->len > 0)
			docker_events_line(e, e->line, e->len);
		e->len = 0;
		data += k + 1;
		n -= k + 1;
	}
	e->in_chunk = 0;
	if (e->cancelled)
		docker_events_free(e);
}

/* The stream ended. */
static void
docker_events_on_done(const struct hc_resp *r, void *arg)
{
	struct docker_events *e = arg;
	enum drv_err err = DRV_OK;
	char *msg = NULL;

	TAILQ_REMOVE(&e->d->streams, e, entry);
	e->req = NULL;
	if (r->error != NULL || r->status != 200) {
		msg = docker_msg(e->d, r);
		err = docker_err(DOCKER_LIST, r, msg);
		if (err == DRV_OK)
			err = DRV_EENGINE;
	}
	e->cancelled = 1;
	e->end(err, msg != NULL ? msg : "the event stream ended", e->arg);
	free(msg);
	docker_events_free(e);
}

/* GET /events?filters=...&since=... as a stream. */
static struct drv_events *
docker_events(struct drv *drv, const char *const *labels,
    const char *const *actions, long long since_ns, drv_event_cb ev,
    drv_events_end_cb end, void *arg)
{
	struct docker *d = drv->eng;
	struct docker_events *e = xcalloc(1, sizeof *e);
	static const char *const type[] = {"container", NULL};
	char *filters, *esc, *url, since[48];
	struct hc_opts o;
	yajl_gen g;

	e->d = d;
	e->pub.drv = drv;
	e->pub.eng = e;
	e->ev = ev;
	e->end = end;
	e->arg = arg;
	g = json_gen_new();
	yajl_gen_map_open(g);
	docker_gen_strv(g, "type", type);
	if (labels != NULL && labels[0] != NULL)
		docker_gen_strv(g, "label", labels);
	if (actions != NULL && actions[0] != NULL)
		docker_gen_strv(g, "event", actions);
	yajl_gen_map_close(g);
	filters = json_gen_done(g, NULL);
	esc = docker_escape(filters, 0);
	since[0] = '\0';
	if (since_ns > 0)
		snprintf(since, sizeof since, "&since=%lld.%09lld",
		    since_ns / 1000000000LL, since_ns % 1000000000LL);
	xasprintf(&url, "http://docker" DOCKER_API "/events?filters=%s%s", esc,
	    since);
	memset(&o, 0, sizeof o);
	o.method = "GET";
	o.url = url;
	o.unix_path = d->sock;
	o.connect_timeout_ms = drv->timeout_ms;
	TAILQ_INSERT_TAIL(&d->streams, e, entry);
	e->req = hc_stream(
	    drv->hc, &o, docker_events_on_chunk, docker_events_on_done, e);
	free(url);
	free(esc);
	free(filters);
	return &e->pub;
}

/* clang-format off */
const struct drv_ops docker_ops = {
	.name =		"docker",
	.open =		docker_open,
	.close =	docker_close,
	.ping =		docker_ping,
	.create =	docker_create,
	.start =	docker_start,
	.inspect =	docker_inspect,
	.stop =		docker_stop,
	.remove =	docker_remove,
	.list =		docker_list,
	.image_exists =	docker_image_exists,
	.runtimes =	docker_runtimes,
	.events =	docker_events,
	.events_cancel = docker_events_cancel,
};
/* clang-format on */
