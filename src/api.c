/*
 * api: the manager's HTTP API, wire-compatible with agentscope-runtime's
 * server (spec section 1). Owns the route table (name, pool call, result
 * shape, parameters), the request contexts of calls in flight, the /health
 * body, CORS, and the one table that maps pool errors onto the wire.
 *
 * A request that reaches a pool or runtime call gets a context; the
 * context ends in api_reply, which answers exactly once and frees it.
 * Requests answered on the spot (404, 405, 401, /health, preflight) never
 * get one.
 */
#include <sys/queue.h>
#include <sys/stat.h>

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/http.h>

#include "api.h"
#include "auth.h"
#include "config.h"
#include "hc.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "sandbox.h"
#include "sbtype.h"
#include "store.h"
#include "xmalloc.h"

#define API_MAX_PARAMS 5
/* Runtime call deadline when the record has none (spec 5.1). */
#define API_RT_TIMEOUT 60

/* JSON types a parameter accepts. */
#define API_T_STR 0x01
#define API_T_NULL 0x02
#define API_T_OBJ 0x04
#define API_T_INT 0x08
#define API_T_BOOL 0x10
#define API_T_ARRAY 0x20
#define API_T_NUM 0x40
#define API_T_ANY 0x7f

/* Route flags. */
#define API_EXTRA 0x01 /* unknown keys are ignored (list_tools) */
#define API_SOFT 0x02  /* engine-side failures give data null/false */

/* What a route's successful pool reply becomes. */
enum api_result {
	API_R_NAME,   /* the container name */
	API_R_FLAG,   /* a boolean */
	API_R_REC,    /* the record */
	API_R_NAMES,  /* a list of strings */
	API_R_STATUS, /* a string or null */
	API_R_HEALTH, /* touch, then GET /fastapi/healthz */
	API_R_TOOLS,  /* touch, then GET /fastapi/mcp/list_tools */
	API_R_CALL,   /* touch, then the tool call */
	API_R_MCP     /* touch, then POST /fastapi/mcp/add_servers */
};

struct api_ctx;

struct api_param {
	const char *name;
	int types;
	int required;
};

typedef void (*api_op_fn)(struct pool *, const char *, pool_cb, void *);

struct api_route {
	const char *name;
	/* Either op (a pool call on the first parameter) or start. */
	api_op_fn op;
	void (*start)(struct api_ctx *);
	enum api_result result;
	int flags;
	struct api_param params[API_MAX_PARAMS];
};

struct api {
	struct event_base *base;
	const struct cfg *cfg;
	struct hc *hc;
	struct pool *pool;
	struct store *store;
	int stopping;
	char *health; /* the /health body */
	size_t health_len;
	TAILQ_HEAD(, api_ctx) ctxs;
};

/* One RPC request in flight. */
struct api_ctx {
	struct api *api;
	struct evhttp_request *req;
	const struct api_route *route;
	char *method;		       /* route name as called */
	yajl_val tree;		       /* the parsed body */
	yajl_val args[API_MAX_PARAMS]; /* by parameter; NULL if absent */
	char *meta;		       /* meta as JSON text */
	char **env;		       /* environment as "K=V" */
	struct hc_req *hreq;	       /* runtime call in flight */
	struct rt_wait *wait;	       /* establish: healthz wait in flight */
	struct sbx *rec;	       /* the runtime's record, for a retry */
	char *rt_method;	       /* the runtime call, for a retry */
	char *rt_body;
	size_t rt_len;
	int retried;  /* the call was retried after a wait */
	char *rt_url; /* the runtime's url, for error texts */
	const char *rt_path;
	long rt_timeout; /* seconds */
	int pending;	 /* cleanup: store and pool calls in flight */
	char *mount;	 /* create: the checked mount_dir */
	TAILQ_ENTRY(api_ctx) entry;
};

static void api_create_from_pool(struct api_ctx *);
static void api_create(struct api_ctx *);
static void api_session_keys(struct api_ctx *);
static void api_cleanup(struct api_ctx *);

/* clang-format off */
#define API_ID { "identity", API_T_STR, 1 }

/* The RPC routes; each is also served as <name>_async. */
static const struct api_route api_routes[] = {
	{ "create_from_pool", NULL, api_create_from_pool, API_R_NAME, API_SOFT,
	    { { "sandbox_type", API_T_STR | API_T_NULL, 0 },
	      { "meta", API_T_OBJ | API_T_NULL, 0 } } },
	{ "create", NULL, api_create, API_R_NAME, API_SOFT,
	    { { "sandbox_type", API_T_STR | API_T_NULL, 0 },
	      { "mount_dir", API_T_STR | API_T_NULL, 0 },
	      { "storage_path", API_T_STR | API_T_NULL, 0 },
	      { "environment", API_T_OBJ | API_T_NULL, 0 },
	      { "meta", API_T_OBJ | API_T_NULL, 0 } } },
	{ "release", pool_release, NULL, API_R_FLAG, API_SOFT, { API_ID } },
	{ "get_info", pool_get_info, NULL, API_R_REC, 0,
	    { API_ID, { "_redirect_depth", API_T_INT | API_T_NULL, 0 } } },
	{ "check_health", pool_touch, NULL, API_R_HEALTH, 0, { API_ID } },
	{ "list_tools", pool_touch, NULL, API_R_TOOLS, API_EXTRA,
	    { API_ID, { "tool_type", API_T_STR | API_T_NULL, 0 } } },
	{ "call_tool", pool_touch, NULL, API_R_CALL, 0,
	    { API_ID, { "tool_name", API_T_STR, 1 },
	      { "arguments", API_T_OBJ | API_T_NULL, 0 } } },
	{ "add_mcp_servers", pool_touch, NULL, API_R_MCP, 0,
	    { API_ID, { "server_configs", API_T_ANY, 1 },
	      { "overwrite", API_T_ANY, 0 } } },
	{ "get_session_mapping", pool_session_mapping, NULL, API_R_NAMES, 0,
	    { { "session_ctx_id", API_T_STR, 1 } } },
	{ "list_session_keys", NULL, api_session_keys, API_R_NAMES, 0, { { 0 } } },
	{ "start", pool_start_sandbox, NULL, API_R_FLAG, API_SOFT, { API_ID } },
	{ "stop", pool_stop_sandbox, NULL, API_R_FLAG, API_SOFT, { API_ID } },
	{ "get_status", pool_status, NULL, API_R_STATUS, API_SOFT, { API_ID } },
	{ "cleanup", NULL, api_cleanup, API_R_NAMES, 0, { { 0 } } },
};

/*
 * The one map from pool errors to the wire. A soft error on an API_SOFT
 * route is answered 200 with data null (false for boolean routes), as the
 * Python server does when a create fails; anything else is
 * {"detail": "Error in <method>: <cause>"} with the status below.
 */
static const struct api_error {
	enum pool_err err;
	int status;
	int soft;
	const char *text;	/* when the pool gives no cause */
} api_errors[] = {
	{ POOL_ENOTFOUND, 500, 1, "no such container" },
	{ POOL_EINVAL,    500, 0, "invalid argument" },
	{ POOL_EFULL,     500, 1, "no capacity left for a sandbox" },
	{ POOL_EENGINE,   500, 1, "the container engine failed" },
	{ POOL_ERUNTIME,  500, 1, "the sandbox runtime did not become healthy" },
	{ POOL_EUNAVAIL,  503, 0, "the state store is unavailable" },
	{ POOL_ESHUTDOWN, 503, 0, "the server is shutting down" },
	{ POOL_OK,        500, 0, "internal error" },
};

/* The JSON type names used in error texts. */
static const struct {
	int type;
	const char *name;
} api_type_names[] = {
	{ API_T_STR,   "a string" },
	{ API_T_OBJ,   "an object" },
	{ API_T_INT,   "an integer" },
	{ API_T_BOOL,  "a boolean" },
	{ API_T_ARRAY, "an array" },
	{ API_T_NUM,   "a number" },
	{ API_T_NULL,  "null" },
};
/* clang-format on */

/* The error table's entry for err. */
static const struct api_error *
api_error_lookup(enum pool_err err)
{
	size_t i, n = sizeof api_errors / sizeof api_errors[0];

	for (i = 0; i < n - 1; i++)
		if (api_errors[i].err == err)
			return &api_errors[i];
	return &api_errors[n - 1];
}

/* The API_T_* type of a parsed value. */
static int
api_type(yajl_val v)
{
	if (v == NULL || YAJL_IS_NULL(v))
		return API_T_NULL;
	if (YAJL_IS_STRING(v))
		return API_T_STR;
	if (YAJL_IS_OBJECT(v))
		return API_T_OBJ;
	if (YAJL_IS_ARRAY(v))
		return API_T_ARRAY;
	if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
		return API_T_BOOL;
	if (YAJL_IS_INTEGER(v))
		return API_T_INT;
	return API_T_NUM;
}

/* Describes a set of types: "a string or null". Caller frees. */
static char *
api_types_text(int types)
{
	char *s = xstrdup(""), *t;
	size_t i;

	for (i = 0; i < sizeof api_type_names / sizeof api_type_names[0]; i++) {
		if ((types & api_type_names[i].type) == 0)
			continue;
		xasprintf(&t, "%s%s%s", s, *s != '\0' ? " or " : "",
		    api_type_names[i].name);
		free(s);
		s = t;
	}
	return s;
}

/* ------------------------------------------------------------------ */
/* Replies. */

/*
 * Sends a reply on a request; the only caller of http_reply_json. Only
 * the path is logged: a query may carry a token (/desktop's password).
 */
static void
api_send(struct evhttp_request *req, int status, const char *body, size_t len)
{
	const struct evhttp_uri *uri;
	const char *path = NULL;

	if (log_getlevel() >= LOG_LEVEL_DEBUG) {
		if ((uri = evhttp_request_get_evhttp_uri(req)) != NULL)
			path = evhttp_uri_get_path(uri);
		log_debug("api: %.200s: %d", path != NULL ? path : "?", status);
	}
	http_reply_json(req, status, body, len);
}

/* Sends {"detail": text}. */
static void
api_send_detail(struct evhttp_request *req, int status, const char *text)
{
	size_t len;
	char *body = json_detail(text, &len);

	api_send(req, status, body, len);
	free(body);
}

/* Frees a context (its reply is sent or will never be). */
static void
api_ctx_free(struct api_ctx *c)
{
	char **e;

	if (c == NULL)
		return;
	if (c->hreq != NULL)
		hc_cancel(c->hreq);
	if (c->wait != NULL)
		rt_wait_cancel(c->wait);
	sbx_free(c->rec);
	free(c->rt_method);
	free(c->rt_body);
	TAILQ_REMOVE(&c->api->ctxs, c, entry);
	if (c->tree != NULL)
		yajl_tree_free(c->tree);
	if (c->env != NULL) {
		for (e = c->env; *e != NULL; e++)
			free(*e);
		free(c->env);
	}
	free(c->meta);
	free(c->mount);
	free(c->rt_url);
	free(c->method);
	free(c);
}

/* Answers a context's request once and ends the context. */
static void
api_reply(struct api_ctx *c, int status, const char *body, size_t len)
{
	struct evhttp_request *req = c->req;

	c->req = NULL;
	api_ctx_free(c);
	api_send(req, status, body, len);
}

/* Answers {"detail": "Error in <method>: <message>"}. */
static void __attribute__((__format__(printf, 3, 4)))
api_fail(struct api_ctx *c, int status, const char *fmt, ...)
{
	char *msg, *detail, *body;
	va_list ap;
	size_t len;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	msg = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	xasprintf(&detail, "Error in %s: %s", c->method, msg);
	body = json_detail(detail, &len);
	api_reply(c, status, body, len);
	free(body);
	free(detail);
	free(msg);
}

/* Starts a {"data": ...} reply; emit the value next. */
static yajl_gen
api_data_new(void)
{
	yajl_gen g = json_gen_new();

	yajl_gen_map_open(g);
	json_gen_str(g, "data");
	return g;
}

/* Closes a {"data": ...} reply and sends it with 200. */
static void
api_data_send(struct api_ctx *c, yajl_gen g)
{
	size_t len;
	char *body;

	yajl_gen_map_close(g);
	body = json_gen_done(g, &len);
	api_reply(c, 200, body, len);
	free(body);
}

/* Answers a pool error through the error table. */
static void
api_pool_fail(struct api_ctx *c, enum pool_err err, const char *cause)
{
	const struct api_error *e = api_error_lookup(err);
	char shown[SBX_IDENTITY_MAX + 8];
	yajl_gen g;

	if (cause == NULL)
		cause = e->text;
	if (e->soft && (c->route->flags & API_SOFT)) {
		/* The pool has logged a failed create already. */
		log_debug("api: %s: %s", c->method, cause);
		g = api_data_new();
		if (c->route->result == API_R_FLAG)
			json_gen_bool(g, 0);
		else
			json_gen_null(g);
		api_data_send(c, g);
		return;
	}
	if (err == POOL_ENOTFOUND && c->args[0] != NULL &&
	    YAJL_IS_STRING(c->args[0])) {
		log_show(YAJL_GET_STRING(c->args[0]), SBX_IDENTITY_MAX, shown,
		    sizeof shown);
		api_fail(
		    c, e->status, "No container found with id: %s.", shown);
	} else
		api_fail(c, e->status, "%s", cause);
}

/* ------------------------------------------------------------------ */
/* Request bodies. */

/* Parameter i as a string, or NULL when absent, null or not a string. */
static const char *
api_str(const struct api_ctx *c, int i)
{
	yajl_val v = c->args[i];

	return v != NULL && YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}

/* Number of parameters of a route. */
static size_t
api_nparams(const struct api_route *rt)
{
	size_t n = 0;

	while (n < API_MAX_PARAMS && rt->params[n].name != NULL)
		n++;
	return n;
}

/* Binds a keyword argument; -1 with *cause if it cannot be. */
static int
api_bind_named(const struct api_route *rt, yajl_val *args, const char *key,
    yajl_val v, char **cause)
{
	size_t i, n = api_nparams(rt);

	for (i = 0; i < n; i++)
		if (strcmp(rt->params[i].name, key) == 0)
			break;
	if (i == n) {
		if (rt->flags & API_EXTRA)
			return 0;
		xasprintf(cause,
		    "%s() got an unexpected keyword argument '%.80s'", rt->name,
		    key);
		return -1;
	}
	if (args[i] != NULL) {
		xasprintf(cause, "%s() got multiple values for argument '%s'",
		    rt->name, key);
		return -1;
	}
	args[i] = v;
	return 0;
}

/* Binds positional arguments ("args": a value or a list of them). */
static int
api_bind_positional(
    const struct api_route *rt, yajl_val *args, yajl_val pos, char **cause)
{
	size_t i, n, np = api_nparams(rt);

	n = YAJL_IS_ARRAY(pos) ? pos->u.array.len : 1;
	if (n > np) {
		xasprintf(cause,
		    "%s() takes %zu positional argument%s but %zu %s given",
		    rt->name, np, np == 1 ? "" : "s", n,
		    n == 1 ? "was" : "were");
		return -1;
	}
	for (i = 0; i < n; i++)
		args[i] = YAJL_IS_ARRAY(pos) ? pos->u.array.values[i] : pos;
	return 0;
}

/*
 * Maps a parsed body onto a route's parameters (args, API_MAX_PARAMS
 * slots, all NULL on entry): members by name, "args" (a value or a list)
 * by position, "kwargs" (an object) merged by name. Then checks required
 * parameters and types. A pure function of its input: no I/O, no state.
 */
static int
api_bind(const struct api_route *rt, yajl_val t, yajl_val *args, char **cause)
{
	const char *key;
	yajl_val v, kw;
	size_t i, j, np;
	char *err, *want;

	if (!YAJL_IS_OBJECT(t)) {
		want = api_types_text(api_type(t));
		xasprintf(cause,
		    "the request body must be a JSON object, not %s", want);
		free(want);
		return -1;
	}
	/* Positional first, so that a name given twice is always caught. */
	if ((v = json_get(t, "args")) != NULL &&
	    api_bind_positional(rt, args, v, cause) != 0)
		return -1;
	for (i = 0; i < t->u.object.len; i++) {
		key = t->u.object.keys[i];
		v = t->u.object.values[i];
		if (strcmp(key, "args") == 0)
			continue;
		if (strcmp(key, "kwargs") != 0) {
			if (api_bind_named(rt, args, key, v, cause) != 0)
				return -1;
			continue;
		}
		kw = v;
		if (!YAJL_IS_OBJECT(kw)) {
			*cause = xstrdup("'kwargs' must be a JSON object");
			return -1;
		}
		for (j = 0; j < kw->u.object.len; j++)
			if (api_bind_named(rt, args, kw->u.object.keys[j],
				kw->u.object.values[j], cause) != 0)
				return -1;
	}
	np = api_nparams(rt);
	for (i = 0; i < np; i++) {
		v = args[i];
		if (v == NULL && rt->params[i].required) {
			xasprintf(cause,
			    "%s() missing 1 required positional argument: '%s'",
			    rt->name, rt->params[i].name);
			return -1;
		}
		if (v != NULL && (api_type(v) & rt->params[i].types) == 0) {
			want = api_types_text(rt->params[i].types);
			err = api_types_text(api_type(v));
			xasprintf(cause, "'%s' must be %s, not %s",
			    rt->params[i].name, want, err);
			free(want);
			free(err);
			return -1;
		}
	}
	return 0;
}

/* Parses the request body and binds it to the route's parameters. */
static int
api_parse(struct api_ctx *c, char **cause)
{
	const char *body;
	size_t len;
	char *err;

	body = http_body(c->req, &len);
	if ((c->tree = json_parse(body, len, &err)) == NULL) {
		xasprintf(cause, "request body: %s", err);
		free(err);
		return -1;
	}
	return api_bind(c->route, c->tree, c->args, cause);
}

/* An object parameter as JSON text, or NULL when absent or null. */
static char *
api_json_text(yajl_val v)
{
	yajl_gen g;

	if (v == NULL || YAJL_IS_NULL(v))
		return NULL;
	g = json_gen_new();
	json_gen_tree(g, v);
	return json_gen_done(g, NULL);
}

/* ------------------------------------------------------------------ */
/* Runtime calls: check_health, list_tools, call_tool. */

/* Emits {"isError": true, "content": [{"type": "text", "text": text}]}. */
static void
api_gen_iserror(yajl_gen g, const char *text)
{
	yajl_gen_map_open(g);
	json_gen_str(g, "isError");
	json_gen_bool(g, 1);
	json_gen_str(g, "content");
	yajl_gen_array_open(g);
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "text");
	json_gen_str(g, "text");
	json_gen_str(g, text);
	yajl_gen_map_close(g);
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
}

/* Emits one built-in tool of the "generic" group (spec 5.2). */
static void
api_gen_builtin(yajl_gen g, const char *name, const char *desc,
    const char *prop, const char *prop_desc)
{
	json_gen_tool_begin(g, name, desc);
	yajl_gen_map_open(g);
	json_gen_str(g, prop);
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "string");
	json_gen_str(g, "description");
	json_gen_str(g, prop_desc);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	json_gen_str(g, "required");
	yajl_gen_array_open(g);
	json_gen_str(g, prop);
	yajl_gen_array_close(g);
	json_gen_tool_end(g);
}

/* Emits the "generic" tool group. */
static void
api_gen_generic(yajl_gen g)
{
	yajl_gen_map_open(g);
	api_gen_builtin(g, "run_ipython_cell", "Run an IPython cell.", "code",
	    "IPython code to execute");
	api_gen_builtin(g, "run_shell_command", "Run a shell command.",
	    "command", "Shell command to execute");
	yajl_gen_map_close(g);
}

/*
 * The text of a failed runtime call, in the manner of python-requests'
 * messages that the Python server passes on (spec 5.1). Caller frees.
 */
static char *
api_rt_error(const struct api_ctx *c, const struct hc_resp *r)
{
	const char *detail = NULL;
	yajl_val v = NULL;
	char *s, *err;

	if (r->timed_out)
		xasprintf(&s, "Read timed out for url: %s%s (read timeout=%ld)",
		    c->rt_url, c->rt_path, c->rt_timeout);
	else if (r->status == 0 || r->error != NULL)
		xasprintf(&s, "%s for url: %s%s",
		    r->error != NULL ? r->error : "no response", c->rt_url,
		    c->rt_path);
	else {
		if ((v = json_parse(r->body, r->len, &err)) == NULL)
			free(err);
		detail = json_get_str(v, "detail");
		xasprintf(&s, "%ld %s Error: %s for url: %s%s%s%s", r->status,
		    r->status >= 500 ? "Server" : "Client",
		    http_reason((int)r->status), c->rt_url, c->rt_path,
		    detail != NULL ? ": " : "", detail != NULL ? detail : "");
		if (v != NULL)
			yajl_tree_free(v);
	}
	return s;
}

/*
 * The text for a 2xx runtime reply that is not a JSON object: what a
 * broken or hostile container may send. Its first bytes are shown,
 * control characters as '?'. Caller frees.
 */
static char *
api_rt_garbage(const struct api_ctx *c, const struct hc_resp *r)
{
	char shown[SBX_IDENTITY_MAX + 8], *head, *s;

	head = xstrndup(r->body, r->len < 64 ? r->len : 64);
	log_show(head, SBX_IDENTITY_MAX, shown, sizeof shown);
	xasprintf(&s,
	    "the sandbox runtime's reply is not a JSON object "
	    "(%zu bytes: '%s%s') for url: %s%s",
	    r->len, shown, r->len > 64 ? "..." : "", c->rt_url, c->rt_path);
	free(head);
	return s;
}

/* Emits a reply body that is a JSON object; -1 (nothing emitted) if not. */
static int
api_rt_object(yajl_gen g, const struct hc_resp *r)
{
	char *err;
	yajl_val v;

	if ((v = json_parse(r->body, r->len, &err)) == NULL) {
		free(err);
		return -1;
	}
	if (!YAJL_IS_OBJECT(v)) {
		yajl_tree_free(v);
		return -1;
	}
	json_gen_tree(g, v);
	yajl_tree_free(v);
	return 0;
}

/* 1 if the runtime call succeeded with a 2xx status. */
static int
api_rt_ok(const struct hc_resp *r)
{
	return r->status >= 200 && r->status < 300 && r->error == NULL &&
	    !r->timed_out;
}

/* Emits list_tools' data: the groups plus "generic", or one group. */
static void
api_gen_tools(yajl_gen g, const struct api_ctx *c, const struct hc_resp *r)
{
	const char *tool_type = api_str(c, 1);
	yajl_val v = NULL, grp;

	if (tool_type != NULL && *tool_type == '\0')
		tool_type = NULL; /* Python: "if tool_type:" */
	int tools;
	char *err;
	size_t i;

	if (api_rt_ok(r) && (v = json_parse(r->body, r->len, &err)) == NULL)
		free(err);
	tools =
	    v != NULL && YAJL_IS_OBJECT(v) && json_get(v, "isError") == NULL;
	if (tool_type != NULL) {
		yajl_gen_map_open(g);
		json_gen_str(g, tool_type);
		if (tools && strcmp(tool_type, "generic") == 0)
			api_gen_generic(g);
		else if ((grp = json_get(v, tool_type)) != NULL)
			json_gen_tree(g, grp);
		else {
			yajl_gen_map_open(g);
			yajl_gen_map_close(g);
		}
		yajl_gen_map_close(g);
	} else if (tools) {
		yajl_gen_map_open(g);
		for (i = 0; i < v->u.object.len; i++) {
			if (strcmp(v->u.object.keys[i], "generic") == 0)
				continue;
			json_gen_str(g, v->u.object.keys[i]);
			json_gen_tree(g, v->u.object.values[i]);
		}
		json_gen_str(g, "generic");
		api_gen_generic(g);
		yajl_gen_map_close(g);
	} else if (v != NULL && YAJL_IS_OBJECT(v))
		json_gen_tree(g, v); /* the runtime's own isError */
	else {
		err = api_rt_ok(r) ? api_rt_garbage(c, r) : api_rt_error(c, r);
		api_gen_iserror(g, err);
		free(err);
	}
	if (v != NULL)
		yajl_tree_free(v);
}

static void api_on_runtime(const struct hc_resp *, void *);

/* Makes (or remakes) the runtime call of a context. */
static void
api_rt_call(struct api_ctx *c)
{
	c->hreq = rt_call(c->api->hc, c->rec, c->rt_method, c->rt_path,
	    c->rt_body, c->rt_len, c->rt_timeout * 1000, api_on_runtime, c);
}

/* The establish wait ended: retry the call once, or fail the route. */
static void
api_on_established(int ok, const char *error, void *arg)
{
	struct api_ctx *c = arg;

	c->wait = NULL;
	if (!ok) {
		log_debug("api: %s: runtime: %s", c->method,
		    error != NULL ? error : "not healthy");
		api_fail(c, 500,
		    "Runtime service did not start within the specified "
		    "timeout.");
		return;
	}
	api_rt_call(c);
}

/* The runtime answered (or failed): build the route's data. */
static void
api_on_runtime(const struct hc_resp *r, void *arg)
{
	struct api_ctx *c = arg;
	yajl_gen g;
	char *err;

	c->hreq = NULL;
	if (r->no_connection && !c->retried) {
		/*
		 * Establish (spec 1.5): the runtime has no listener yet (a
		 * sandbox just started): wait for its healthz, then retry the
		 * call once. Nothing was sent, so a retry is safe.
		 */
		c->retried = 1;
		c->wait = rt_wait_healthy(c->api->base, c->api->hc, c->rec,
		    (long)(c->api->cfg->warmup_timeout > 0
			    ? c->api->cfg->warmup_timeout
			    : 60) *
			1000,
		    api_on_established, c);
		return;
	}
	g = api_data_new();
	switch (c->route->result) {
	case API_R_HEALTH:
		json_gen_bool(g, r->status == 200 && r->error == NULL);
		break;
	case API_R_TOOLS:
		api_gen_tools(g, c, r);
		break;
	case API_R_MCP:
		/* The runtime's text ("OK") as a string, JSON or not. */
		if (!api_rt_ok(r)) {
			err = api_rt_error(c, r);
			log_debug("api: %s: runtime: %s", c->method, err);
			api_gen_iserror(g, err);
			free(err);
		} else
			json_gen_strn(g, r->body, r->len);
		break;
	default:
		if (!api_rt_ok(r)) {
			err = api_rt_error(c, r);
			log_debug("api: %s: runtime: %s", c->method, err);
			api_gen_iserror(g, err);
			free(err);
		} else if (api_rt_object(g, r) != 0) {
			err = api_rt_garbage(c, r);
			log_warnx("api: %s: %s", c->method, err);
			api_gen_iserror(g, err);
			free(err);
		}
		break;
	}
	api_data_send(c, g);
}

/* Emits the tool arguments: the object given, or {} for none. */
static void
api_gen_arguments(yajl_gen g, yajl_val a)
{
	if (a == NULL || YAJL_IS_NULL(a)) {
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	} else
		json_gen_tree(g, a);
}

/*
 * The body of a built-in tool call: {param: value} from the arguments,
 * which Python splats into a one-parameter method. Returns NULL with
 * *cause for what Python refuses (an unexpected or a missing argument).
 */
static char *
api_builtin_body(
    const char *tool, const char *param, yajl_val a, size_t *len, char **cause)
{
	yajl_val v = NULL;
	yajl_gen g;
	size_t i;

	for (i = 0; a != NULL && YAJL_IS_OBJECT(a) && i < a->u.object.len;
	     i++) {
		if (strcmp(a->u.object.keys[i], param) != 0) {
			xasprintf(cause,
			    "%s() got an unexpected keyword argument '%s'",
			    tool, a->u.object.keys[i]);
			return NULL;
		}
		v = a->u.object.values[i];
	}
	if (v == NULL) {
		/* Python then sends its Field() default, which fails. */
		xasprintf(cause,
		    "Object of type FieldInfo is not JSON "
		    "serializable");
		return NULL;
	}
	g = json_gen_new();
	yajl_gen_map_open(g);
	json_gen_str(g, param);
	json_gen_tree(g, v);
	yajl_gen_map_close(g);
	return json_gen_done(g, len);
}

/* The touched record is known: make the runtime call of the route. */
static void
api_rt_start(struct api_ctx *c, const struct sbx *rec)
{
	const char *method = "GET", *tool;
	char *body = NULL, *cause;
	size_t len = 0;
	yajl_gen g;

	c->rt_url =
	    xstrdup(rec->url != NULL && *rec->url != '\0' ? rec->url
							  : "http://sandbox");
	c->rt_timeout = rec->timeout > 0 ? rec->timeout : API_RT_TIMEOUT;
	switch (c->route->result) {
	case API_R_HEALTH:
		c->rt_path = "/fastapi/healthz";
		break;
	case API_R_TOOLS:
		c->rt_path = "/fastapi/mcp/list_tools";
		break;
	case API_R_MCP:
		method = "POST";
		c->rt_path = "/fastapi/mcp/add_servers";
		g = json_gen_new();
		yajl_gen_map_open(g);
		json_gen_str(g, "server_configs");
		json_gen_tree(g, c->args[1]);
		json_gen_str(g, "overwrite");
		if (c->args[2] != NULL)
			json_gen_tree(g, c->args[2]);
		else
			json_gen_bool(g, 0);
		yajl_gen_map_close(g);
		body = json_gen_done(g, &len);
		break;
	default:
		method = "POST";
		tool = api_str(c, 1);
		if (strcmp(tool, "run_shell_command") == 0 ||
		    strcmp(tool, "run_ipython_cell") == 0) {
			c->rt_path = strcmp(tool, "run_shell_command") == 0
			    ? "/fastapi/tools/run_shell_command"
			    : "/fastapi/tools/run_ipython_cell";
			body = api_builtin_body(tool,
			    strcmp(tool, "run_shell_command") == 0 ? "command"
								   : "code",
			    c->args[2], &len, &cause);
			if (body == NULL) {
				api_fail(c, 500, "%s", cause);
				free(cause);
				return;
			}
		} else {
			g = json_gen_new();
			c->rt_path = "/fastapi/mcp/call_tool";
			yajl_gen_map_open(g);
			json_gen_str(g, "tool_name");
			json_gen_str(g, tool);
			json_gen_str(g, "arguments");
			api_gen_arguments(g, c->args[2]);
			yajl_gen_map_close(g);
			body = json_gen_done(g, &len);
		}
		break;
	}
	c->rec = sbx_dup(rec);
	c->rt_method = xstrdup(method);
	c->rt_body = body;
	c->rt_len = len;
	api_rt_call(c);
}

/* ------------------------------------------------------------------ */
/* Pool calls. */

/* A pool call finished: answer from its reply. */
static void
api_on_pool(const struct pool_reply *r, void *arg)
{
	struct api_ctx *c = arg;
	yajl_gen g;
	size_t i;

	if (r->err != POOL_OK) {
		api_pool_fail(c, r->err, r->cause);
		return;
	}
	switch (c->route->result) {
	case API_R_HEALTH:
	case API_R_TOOLS:
	case API_R_CALL:
	case API_R_MCP:
		if (r->rec == NULL) {
			api_fail(c, 500, "no record for the sandbox");
			return;
		}
		api_rt_start(c, r->rec);
		return;
	default:
		break;
	}
	g = api_data_new();
	switch (c->route->result) {
	case API_R_NAME:
		json_gen_str(g, r->name);
		break;
	case API_R_FLAG:
		json_gen_bool(g, r->flag);
		break;
	case API_R_REC:
		if (r->rec != NULL)
			sbx_gen(g, r->rec, 0);
		else
			json_gen_null(g);
		break;
	case API_R_NAMES:
		yajl_gen_array_open(g);
		for (i = 0; i < r->nnames; i++)
			json_gen_str(g, r->names[i]);
		yajl_gen_array_close(g);
		break;
	default:
		json_gen_str(g, r->status);
		break;
	}
	api_data_send(c, g);
}

/* 1 if type names a sandbox type; else answers the error and returns 0. */
static int
api_type_ok(struct api_ctx *c, const char *type)
{
	if (sbtypes_find(c->api->cfg->types, type) != NULL)
		return 1;
	api_fail(c, 500, "'%s' is not a valid SandboxType", type);
	return 0;
}

/* POST /create_from_pool {"sandbox_type", "meta"}. */
static void
api_create_from_pool(struct api_ctx *c)
{
	const char *type = api_str(c, 0);

	if (type != NULL && !api_type_ok(c, type))
		return;
	c->meta = api_json_text(c->args[1]);
	pool_create_from_pool(c->api->pool, type, c->meta, api_on_pool, c);
}

/*
 * Checks the form of a requested mount_dir: absolute, normalised (no
 * empty, "." or ".." component, no trailing '/'), at most PATH_MAX bytes,
 * no control characters, and no ':' or ',' (they would end the engine's
 * bind specification). A pure function: no file system access.
 */
static const char *
api_path_form(const char *path)
{
	const char *seg, *slash;
	size_t i, n;

	if (path[0] != '/')
		return "not an absolute path";
	for (i = 0; path[i] != '\0'; i++) {
		if (i >= PATH_MAX)
			return "longer than PATH_MAX";
		if (iscntrl((unsigned char)path[i]) || path[i] == ':' ||
		    path[i] == ',')
			return "holds a control character, ':' or ','";
	}
	if (i == 1)
		return "is /";
	for (seg = path + 1;; seg = slash + 1) {
		slash = strchr(seg, '/');
		n = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
		if (n == 0)
			return "not normalised (empty component or trailing /)";
		if ((n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return "has a '.' or '..' component";
		if (slash == NULL)
			return NULL;
	}
}

/* 1 if path is dir or below it. */
static int
api_path_under(const char *path, const char *dir)
{
	size_t n;

	if (path == NULL || dir == NULL)
		return 0;
	n = strlen(dir);
	return strncmp(path, dir, n) == 0 &&
	    (path[n] == '\0' || path[n] == '/' || (n == 1 && dir[0] == '/'));
}

/*
 * Checks a requested mount_dir against ALLOW_MOUNT_DIR's roots: its form,
 * then that it exists, is a directory, and really (symbolic links
 * resolved) lies strictly below one of the roots and outside sandpool's
 * own directories. Returns the resolved path (caller frees), or NULL with
 * *cause.
 */
static char *
api_mount_dir_check(const struct cfg *cfg, const char *dir, const char **cause)
{
	struct stat st;
	char *real;
	char *const *r;

	if ((*cause = api_path_form(dir)) != NULL)
		return NULL;
	if ((real = realpath(dir, NULL)) == NULL || stat(real, &st) != 0 ||
	    !S_ISDIR(st.st_mode)) {
		free(real);
		*cause = "not an existing directory";
		return NULL;
	}
	for (r = cfg->mount_dir_roots; r != NULL && *r != NULL; r++)
		if (api_path_under(real, *r) && strcmp(real, *r) != 0)
			break;
	if (r == NULL || *r == NULL) {
		free(real);
		*cause = "not below a directory of SANDPOOL_MOUNT_DIR_ROOTS";
		return NULL;
	}
	if ((cfg->default_mount_dir != NULL &&
		(api_path_under(real, cfg->default_mount_dir) ||
		    api_path_under(cfg->default_mount_dir, real))) ||
	    api_path_under(real, cfg->run_dir) ||
	    api_path_under(cfg->run_dir, real)) {
		free(real);
		*cause = "overlaps DEFAULT_MOUNT_DIR or SANDPOOL_RUN_DIR";
		return NULL;
	}
	return real;
}

/*
 * Copies "environment" into c->env as "K=V". Returns 0; 1 when a value is
 * null (Python then creates nothing: data null); -1 with *cause when the
 * object is not one of names to strings.
 */
static int
api_environment(struct api_ctx *c, yajl_val env, char **cause)
{
	const char *k;
	yajl_val v;
	size_t i, n;

	if (env == NULL || YAJL_IS_NULL(env))
		return 0;
	n = env->u.object.len;
	c->env = xcalloc(n + 1, sizeof *c->env);
	for (i = 0; i < n; i++) {
		k = env->u.object.keys[i];
		v = env->u.object.values[i];
		if (*k == '\0' || strchr(k, '=') != NULL) {
			xasprintf(cause,
			    "'%s' is not a valid environment "
			    "variable name",
			    k);
			return -1;
		}
		if (YAJL_IS_NULL(v)) {
			log_warnx("api: %s: environment value of %s is null: "
				  "no sandbox created",
			    c->method, k);
			return 1;
		}
		if (!YAJL_IS_STRING(v)) {
			xasprintf(cause,
			    "environment value of '%s' must be a "
			    "string",
			    k);
			return -1;
		}
		xasprintf(&c->env[i], "%s=%s", k, YAJL_GET_STRING(v));
	}
	return 0;
}

/* POST /create {"sandbox_type", "mount_dir", "storage_path", ...}. */
static void
api_create(struct api_ctx *c)
{
	const char *type = api_str(c, 0), *mount, *why;
	char *cause;
	yajl_gen g;

	if (type == NULL)
		type = pool_default_type(c->api->pool);
	else if (!api_type_ok(c, type))
		return;
	switch (api_environment(c, c->args[3], &cause)) {
	case -1:
		api_fail(c, 500, "%s", cause);
		free(cause);
		return;
	case 1:
		g = api_data_new();
		json_gen_null(g);
		api_data_send(c, g);
		return;
	}
	if ((mount = api_str(c, 1)) != NULL && !c->api->cfg->allow_mount_dir) {
		/* As upstream: ignored, with a warning. */
		log_warnx("api: %s: mount_dir ignored: ALLOW_MOUNT_DIR is off",
		    c->method);
		mount = NULL;
	}
	if (mount != NULL &&
	    (c->mount = api_mount_dir_check(c->api->cfg, mount, &why)) ==
		NULL) {
		api_fail(c, 500, "mount_dir: %s", why);
		return;
	}
	if (api_str(c, 2) != NULL)
		log_debug("api: %s: storage_path accepted and ignored "
			  "(not implemented yet)",
		    c->method);
	c->meta = api_json_text(c->args[4]);
	pool_create(c->api->pool, type, c->meta, (const char *const *)c->env,
	    c->mount, api_on_pool, c);
}

/* One step of a cleanup ended; the last one answers data null. */
static void
api_cleanup_step_done(struct api_ctx *c)
{
	yajl_gen g;

	if (--c->pending > 0)
		return;
	g = api_data_new();
	json_gen_null(g);
	api_data_send(c, g);
}

/* A sandbox of the cleanup is released (or was already gone). */
static void
api_cleanup_on_release(const struct pool_reply *r, void *arg)
{
	struct api_ctx *c = arg;

	if (r->err != POOL_OK)
		log_warnx("api: cleanup: release: %s",
		    r->cause != NULL ? r->cause : "failed");
	api_cleanup_step_done(c);
}

/* A record of the cleanup: release it if it is this instance's and live. */
static void
api_cleanup_on_get(const struct store_reply *r, void *arg)
{
	struct api_ctx *c = arg;
	const struct sbx *rec = r->rec;

	if (r->err == STORE_OK && rec != NULL && rec->instance != NULL &&
	    strcmp(rec->instance, c->api->cfg->instance_id) == 0 &&
	    (rec->state == SBX_WARM || rec->state == SBX_RUNNING) &&
	    c->api->pool != NULL && !c->api->stopping) {
		c->pending++;
		pool_release(c->api->pool, rec->container_name,
		    api_cleanup_on_release, c);
	}
	api_cleanup_step_done(c);
}

/* Every record name is known: look each one up. */
static void
api_cleanup_on_list(const struct store_reply *r, void *arg)
{
	struct api_ctx *c = arg;
	struct store_req q;
	size_t i;

	if (r->err != STORE_OK) {
		api_pool_fail(c, POOL_EUNAVAIL, r->cause);
		return;
	}
	c->pending = 1 + (int)r->nnames;
	for (i = 0; i < r->nnames; i++) {
		memset(&q, 0, sizeof q);
		q.op = STORE_GET;
		q.name = r->names[i];
		store_run(c->api->store, &q, api_cleanup_on_get, c);
	}
	api_cleanup_step_done(c);
}

/*
 * POST /cleanup {}: upstream releases every sandbox of the state store,
 * for any client (and SandboxManager's __exit__ calls it). Here it is off
 * unless SANDPOOL_ALLOW_CLEANUP_ROUTE=true, and then releases only the
 * live sandboxes of this instance (warm ones too; the pools refill).
 */
static void
api_cleanup(struct api_ctx *c)
{
	struct store_req q;

	if (!c->api->cfg->allow_cleanup) {
		api_fail(c, 403,
		    "this route is disabled: it would release every sandbox "
		    "of the server (SANDPOOL_ALLOW_CLEANUP_ROUTE=true enables "
		    "it for this instance's sandboxes)");
		return;
	}
	if (c->api->store == NULL) {
		api_pool_fail(c, POOL_EUNAVAIL, "the server is starting");
		return;
	}
	log_info("api: %s: releasing this instance's sandboxes", c->method);
	memset(&q, 0, sizeof q);
	q.op = STORE_LIST;
	store_run(c->api->store, &q, api_cleanup_on_list, c);
}

/* POST /list_session_keys {}. */
static void
api_session_keys(struct api_ctx *c)
{
	pool_session_keys(c->api->pool, api_on_pool, c);
}

/* ------------------------------------------------------------------ */
/* Routing. */

/* The RPC route called name (or name_async), or NULL. */
static const struct api_route *
api_route_find(const char *name)
{
	const struct api_route *rt;
	size_t i, n;

	for (i = 0; i < sizeof api_routes / sizeof api_routes[0]; i++) {
		rt = &api_routes[i];
		n = strlen(rt->name);
		if (strncmp(name, rt->name, n) == 0 &&
		    (name[n] == '\0' || strcmp(name + n, "_async") == 0))
			return rt;
	}
	return NULL;
}

/* Answers a CORS preflight (any origin, method and header). */
static void
api_preflight(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	const char *h;

	evhttp_add_header(out, "Access-Control-Allow-Methods",
	    "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
	if ((h = evhttp_find_header(in, "Access-Control-Request-Headers")) !=
	    NULL)
		evhttp_add_header(out, "Access-Control-Allow-Headers", h);
	evhttp_add_header(out, "Access-Control-Max-Age", "600");
	api_send(req, 200, "\"OK\"", 4);
}

/* Answers 405 with the methods the path allows. */
static void
api_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Allow", allow);
	api_send_detail(req, 405, "Method Not Allowed");
}

/*
 * An identity that no sandbox can have (too long, or characters outside
 * [A-Za-z0-9_.-]) is answered as an unknown one, without a lookup:
 * release says true, start and stop false, get_status null, the rest
 * "No container found with id".
 */
static void
api_bad_identity(struct api_ctx *c)
{
	yajl_gen g;

	if (c->route->op == pool_release) {
		g = api_data_new();
		json_gen_bool(g, 1);
		api_data_send(c, g);
		return;
	}
	api_pool_fail(c, POOL_ENOTFOUND, NULL);
}

/*
 * Checks the request's bearer token (spec 1.2) in constant time; answers
 * 401 and returns -1 when it does not pass.
 */
int
api_check_auth(struct api *api, struct evhttp_request *req)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	enum auth_result ar;

	ar = auth_check(api->cfg->bearer_token,
	    evhttp_find_header(
		evhttp_request_get_input_headers(req), "Authorization"));
	if (ar == AUTH_OK)
		return 0;
	evhttp_add_header(out, "WWW-Authenticate", "Bearer");
	api_send_detail(req, 401, auth_detail(ar));
	return -1;
}

/*
 * A /proxy/ request that evhttp read: streamed requests never come here
 * (the HTTP layer gives them to the proxy), so this is a method the route
 * lacks, or a request the HTTP layer could not stream.
 */
static void
api_proxy_fallback(struct api *api, struct evhttp_request *req,
    enum evhttp_cmd_type cmd, const char *path)
{
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_POST &&
	    cmd != EVHTTP_REQ_PUT && cmd != EVHTTP_REQ_DELETE &&
	    cmd != EVHTTP_REQ_PATCH) {
		api_not_allowed(req, "DELETE, GET, PATCH, POST, PUT");
		return;
	}
	if (api_check_auth(api, req) != 0)
		return;
	/* The path only: a query may carry a token. */
	log_warnx("api: %.200s: could not be streamed to the proxy", path);
	api_send_detail(req, 400, "Bad Request");
}

/* Serves one request. */
void
api_request(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const struct api_route *rt;
	const char *path = NULL, *origin;
	struct api_ctx *c;
	char *cause;

	if (uri != NULL)
		path = evhttp_uri_get_path(uri);
	if (path == NULL)
		path = "";
	if ((origin = evhttp_find_header(in, "Origin")) != NULL) {
		evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
		evhttp_add_header(
		    out, "Access-Control-Allow-Credentials", "true");
		evhttp_add_header(out, "Vary", "Origin");
		if (cmd == EVHTTP_REQ_OPTIONS &&
		    evhttp_find_header(in, "Access-Control-Request-Method") !=
			NULL) {
			api_preflight(req);
			return;
		}
	}
	if (strcmp(path, "/health") == 0) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			api_not_allowed(req, "GET, HEAD");
		else
			api_send(req, 200, api->health, api->health_len);
		return;
	}
	if (strncmp(path, "/proxy/", 7) == 0) {
		api_proxy_fallback(api, req, cmd, path);
		return;
	}
	if (path[0] != '/' || (rt = api_route_find(path + 1)) == NULL) {
		api_send_detail(req, 404, "Not Found");
		return;
	}
	if (cmd != EVHTTP_REQ_POST) {
		api_not_allowed(req, "POST");
		return;
	}
	/* Auth before the body is looked at. */
	if (api_check_auth(api, req) != 0)
		return;

	c = xcalloc(1, sizeof *c);
	c->api = api;
	c->req = req;
	c->route = rt;
	c->method = xstrdup(path + 1);
	TAILQ_INSERT_TAIL(&api->ctxs, c, entry);
	if (api->stopping) {
		api_pool_fail(c, POOL_ESHUTDOWN, NULL);
		return;
	}
	if (api->pool == NULL) {
		api_pool_fail(c, POOL_EUNAVAIL, "the server is starting");
		return;
	}
	if (api_parse(c, &cause) != 0) {
		api_fail(c, 500, "%s", cause);
		free(cause);
		return;
	}
	if (rt->op != NULL && strcmp(rt->params[0].name, "identity") == 0 &&
	    !sbx_identity_ok(api_str(c, 0))) {
		api_bad_identity(c);
		return;
	}
	if (rt->op != NULL)
		rt->op(api->pool, api_str(c, 0), api_on_pool, c);
	else
		rt->start(c);
}

/* ------------------------------------------------------------------ */
/* Lifetime. */

/*
 * Builds the /health body. Its version is Python's str() of the list of
 * default SandboxType members: "[<SandboxType.BASE: 'base'>]".
 */
static char *
api_health_body(const struct cfg *cfg, size_t *len)
{
	char *list = xstrdup("["), *t, *upper, **p;
	yajl_gen g;
	size_t i;

	for (p = cfg->default_types; p != NULL && *p != NULL; p++) {
		upper = xstrdup(*p);
		for (i = 0; upper[i] != '\0'; i++)
			upper[i] = (char)toupper((unsigned char)upper[i]);
		xasprintf(&t, "%s%s<SandboxType.%s: '%s'>", list,
		    p == cfg->default_types ? "" : ", ", upper, *p);
		free(upper);
		free(list);
		list = t;
	}
	xasprintf(&t, "%s]", list);
	free(list);
	g = json_gen_new();
	yajl_gen_map_open(g);
	json_gen_str(g, "status");
	json_gen_str(g, "healthy");
	json_gen_str(g, "version");
	json_gen_str(g, t);
	yajl_gen_map_close(g);
	free(t);
	return json_gen_done(g, len);
}

/* Makes the API. */
struct api *
api_new(struct event_base *base, const struct cfg *cfg, struct hc *hc)
{
	struct api *api = xcalloc(1, sizeof *api);

	api->base = base;
	api->cfg = cfg;
	api->hc = hc;
	api->health = api_health_body(cfg, &api->health_len);
	TAILQ_INIT(&api->ctxs);
	return api;
}

/* Frees the API and the requests still waiting, without replies. */
void
api_free(struct api *api)
{
	struct api_ctx *c;

	if (api == NULL)
		return;
	while ((c = TAILQ_FIRST(&api->ctxs)) != NULL)
		api_ctx_free(c);
	free(api->health);
	free(api);
}

/* Starts serving the RPC routes. */
void
api_set_pool(struct api *api, struct pool *pool)
{
	api->pool = pool;
}

/* The state store, for the routes that read it (cleanup). */
void
api_set_store(struct api *api, struct store *store)
{
	api->store = store;
}

/* Refuses new RPC calls from now on. */
void
api_stop(struct api *api)
{
	api->stopping = 1;
}
