/*
 * mcp: the /mcp routes (see mcp.h). Each added server is a child process
 * in its own process group, spoken to with newline-delimited JSON-RPC 2.0
 * on its standard input and output (the MCP stdio transport): initialize,
 * notifications/initialized, tools/list (all pages), then tools/call for
 * each call routed to it. Its standard error is drained and the tail kept
 * for error messages. Owns the servers, their tools and the calls in
 * flight.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h" /* PACKAGE_VERSION */
#endif

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#include "agent.h"
#include "ahttp.h"
#include "child.h"
#include "fstools.h"
#include "json.h"
#include "log.h"
#include "mcp.h"
#include "xmalloc.h"

/* The protocol version offered (what mcp 1.9.0 offers). */
#define MCP_PROTOCOL_VERSION "2025-03-26"
/* Bytes of a server's standard error kept for error messages. */
#define MCP_ERR_TAIL 2048
/* Most tools one server may list, and pages of tools/list. */
#define MCP_MAX_TOOLS 1000
#define MCP_MAX_PAGES 100

struct mcp_server;
struct mcp_add;

/* A tool of a server, its schema parts kept as JSON text. */
struct mcp_tool {
	char *name;
	char *description; /* NULL: null */
	char *properties;  /* JSON object text */
	char *required;	   /* JSON array text */
};

enum mcp_rpc_kind { MCP_RPC_INIT, MCP_RPC_LIST, MCP_RPC_CALL };

/* A request sent to a server, waiting for its response. */
struct mcp_rpc {
	TAILQ_ENTRY(mcp_rpc) entry;
	long long id;
	enum mcp_rpc_kind kind;
	struct agent_pending *p; /* MCP_RPC_CALL; NULL once the client left */
	char *tool;
};

enum mcp_state { MCP_S_INIT, MCP_S_LIST, MCP_S_READY };

struct mcp_server {
	TAILQ_ENTRY(mcp_server) entry;
	char *name;
	pid_t pid;
	int in_fd, out_fd, err_fd;
	struct event *ev_in, *ev_out, *ev_err;
	struct evbuffer *wbuf, *rbuf;
	char errtail[MCP_ERR_TAIL + 1];
	size_t errlen;
	enum mcp_state state;
	long long next_id;
	TAILQ_HEAD(, mcp_rpc) rpcs;
	struct mcp_tool *tools;
	size_t ntools;
	int pages;
	struct mcp_add *add; /* the add_servers waiting for it, or NULL */
	struct event *init_timer;
};

/* An add_servers request waiting for its servers to initialise. */
struct mcp_add {
	struct agent_pending *p; /* NULL once the client left */
	size_t waiting;
	struct evbuffer *errors;
};

static struct {
	struct event_base *base;
	char *workdir;
	int filesystem;
	TAILQ_HEAD(, mcp_server) servers;
} mcp;

static void mcp_on_in(evutil_socket_t, short, void *);
static void mcp_on_out(evutil_socket_t, short, void *);
static void mcp_on_err(evutil_socket_t, short, void *);
static void mcp_on_exit(pid_t, int, void *);
static void mcp_on_init_timeout(evutil_socket_t, short, void *);

/* Sets the module up. */
void
mcp_init(struct event_base *base, const char *workdir, int filesystem)
{
	mcp.base = base;
	mcp.workdir = xstrdup(workdir);
	mcp.filesystem = filesystem;
	TAILQ_INIT(&mcp.servers);
}

/* Finds a server by name. */
static struct mcp_server *
mcp_find(const char *name)
{
	struct mcp_server *s;

	TAILQ_FOREACH (s, &mcp.servers, entry)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

/* Is the native filesystem group served (and not replaced)? */
static int
mcp_native(void)
{
	struct mcp_server *s = mcp_find("filesystem");

	return mcp.filesystem && (s == NULL || s->state != MCP_S_READY);
}

/* One server's failure at add time: recorded, then maybe answered. */
static void mcp_add_done(
    struct mcp_add *, struct mcp_server *, const char *error);

/* Answers a pending tools/call with 500 {"detail": msg}. */
static void
mcp_rpc_fail(struct mcp_rpc *rpc, const char *msg)
{
	if (rpc->kind == MCP_RPC_CALL && rpc->p != NULL) {
		agent_pending_detail(rpc->p, 500, msg);
		rpc->p = NULL;
	}
}

/* Frees a server's tools. */
static void
mcp_tools_free(struct mcp_server *s)
{
	size_t i;

	for (i = 0; i < s->ntools; i++) {
		free(s->tools[i].name);
		free(s->tools[i].description);
		free(s->tools[i].properties);
		free(s->tools[i].required);
	}
	free(s->tools);
	s->tools = NULL;
	s->ntools = 0;
}

/* Closes a pipe of a server and its event. */
static void
mcp_close(int *fd, struct event **ev)
{
	if (*ev != NULL) {
		event_free(*ev);
		*ev = NULL;
	}
	if (*fd != -1) {
		close(*fd);
		*fd = -1;
	}
}

/*
 * Stops a server: kills its process group, fails its calls with why,
 * takes it off the list and frees it. An add_servers waiting for it is
 * told (why).
 */
static void
mcp_server_stop(struct mcp_server *s, const char *why)
{
	struct mcp_rpc *rpc;
	struct mcp_add *add = s->add;
	char *msg;

	if (s->pid > 0) {
		if (kill(-s->pid, SIGKILL) == -1)
			kill(s->pid, SIGKILL);
		child_forget(s->pid);
		s->pid = 0;
	}
	xasprintf(&msg, "MCP server '%s': %s", s->name, why);
	while ((rpc = TAILQ_FIRST(&s->rpcs)) != NULL) {
		TAILQ_REMOVE(&s->rpcs, rpc, entry);
		mcp_rpc_fail(rpc, msg);
		free(rpc->tool);
		free(rpc);
	}
	mcp_close(&s->in_fd, &s->ev_in);
	mcp_close(&s->out_fd, &s->ev_out);
	mcp_close(&s->err_fd, &s->ev_err);
	if (s->init_timer != NULL)
		event_free(s->init_timer);
	evbuffer_free(s->wbuf);
	evbuffer_free(s->rbuf);
	mcp_tools_free(s);
	TAILQ_REMOVE(&mcp.servers, s, entry);
	s->add = NULL;
	if (add != NULL)
		mcp_add_done(add, s, msg);
	free(msg);
	free(s->name);
	free(s);
}

/* Queues a JSON-RPC message (one line) to a server. */
static void
mcp_send(struct mcp_server *s, yajl_gen g)
{
	const unsigned char *buf;
	size_t len;

	yajl_gen_get_buf(g, &buf, &len);
	evbuffer_add(s->wbuf, buf, len);
	evbuffer_add(s->wbuf, "\n", 1);
	yajl_gen_free(g);
	if (s->ev_in != NULL)
		event_add(s->ev_in, NULL);
}

/* Starts a request: {"jsonrpc","id","method","params": ...}. */
static yajl_gen
mcp_request(struct mcp_server *s, enum mcp_rpc_kind kind, const char *method,
    struct mcp_rpc **rpcp)
{
	struct mcp_rpc *rpc;
	yajl_gen g = json_gen_new();

	rpc = xcalloc(1, sizeof *rpc);
	rpc->id = ++s->next_id;
	rpc->kind = kind;
	TAILQ_INSERT_TAIL(&s->rpcs, rpc, entry);
	yajl_gen_map_open(g);
	json_gen_str(g, "jsonrpc");
	json_gen_str(g, "2.0");
	json_gen_str(g, "id");
	json_gen_int(g, rpc->id);
	json_gen_str(g, "method");
	json_gen_str(g, method);
	json_gen_str(g, "params");
	if (rpcp != NULL)
		*rpcp = rpc;
	return g;
}

/* Sends tools/list (with the cursor of the previous page, if any). */
static void
mcp_send_list(struct mcp_server *s, const char *cursor)
{
	yajl_gen g = mcp_request(s, MCP_RPC_LIST, "tools/list", NULL);

	yajl_gen_map_open(g);
	if (cursor != NULL) {
		json_gen_str(g, "cursor");
		json_gen_str(g, cursor);
	}
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	mcp_send(s, g);
}

/* The initialize response arrived: confirm, then list the tools. */
static void
mcp_on_initialized(struct mcp_server *s)
{
	yajl_gen g = json_gen_new();

	yajl_gen_map_open(g);
	json_gen_str(g, "jsonrpc");
	json_gen_str(g, "2.0");
	json_gen_str(g, "method");
	json_gen_str(g, "notifications/initialized");
	yajl_gen_map_close(g);
	mcp_send(s, g);
	s->state = MCP_S_LIST;
	mcp_send_list(s, NULL);
}

/* Text of a JSON value (caller frees). */
static char *
mcp_json_text(yajl_val v, const char *def)
{
	yajl_gen g;

	if (v == NULL)
		return xstrdup(def);
	g = json_gen_new();
	json_gen_tree(g, v);
	return json_gen_done(g, NULL);
}

/* A page of tools/list arrived. 0, or -1 with *why. */
static int
mcp_on_tools(struct mcp_server *s, yajl_val result, const char **why)
{
	yajl_val tools = json_get(result, "tools"), t, schema, props, req;
	const char *cursor, *name;
	struct mcp_tool *tool;
	size_t i;

	if (tools == NULL || !YAJL_IS_ARRAY(tools)) {
		*why = "tools/list: no tools array";
		return -1;
	}
	for (i = 0; i < tools->u.array.len; i++) {
		t = tools->u.array.values[i];
		if ((name = json_get_str(t, "name")) == NULL)
			continue;
		if (s->ntools == MCP_MAX_TOOLS) {
			*why = "tools/list: too many tools";
			return -1;
		}
		s->tools =
		    xreallocarray(s->tools, s->ntools + 1, sizeof *s->tools);
		tool = &s->tools[s->ntools++];
		tool->name = xstrdup(name);
		tool->description = json_get_str(t, "description") != NULL
		    ? xstrdup(json_get_str(t, "description"))
		    : NULL;
		schema = json_get(t, "inputSchema");
		props = json_get(schema, "properties");
		req = json_get(schema, "required");
		tool->properties = mcp_json_text(
		    props != NULL && YAJL_IS_OBJECT(props) ? props : NULL,
		    "{}");
		tool->required = mcp_json_text(
		    req != NULL && YAJL_IS_ARRAY(req) ? req : NULL, "[]");
	}
	cursor = json_get_str(result, "nextCursor");
	if (cursor != NULL && *cursor != '\0') {
		if (++s->pages > MCP_MAX_PAGES) {
			*why = "tools/list: too many pages";
			return -1;
		}
		mcp_send_list(s, cursor);
		return 0;
	}
	s->state = MCP_S_READY;
	if (s->init_timer != NULL) {
		event_free(s->init_timer);
		s->init_timer = NULL;
	}
	log_info("mcp: server %s: ready with %zu tools", s->name, s->ntools);
	if (s->add != NULL) {
		struct mcp_add *add = s->add;

		s->add = NULL;
		mcp_add_done(add, s, NULL);
	}
	return 0;
}

/*
 * Emits a tools/call result as mcp 1.9.0's CallToolResult.model_dump():
 * {"meta", "content" (items with "annotations" null when absent),
 * "isError"}.
 */
static char *
mcp_dump_result(yajl_val r, size_t *len)
{
	yajl_val content = json_get(r, "content"), item, meta, err;
	yajl_gen g = json_gen_new();
	size_t i, k;

	yajl_gen_map_open(g);
	json_gen_str(g, "meta");
	meta = json_get(r, "_meta");
	json_gen_tree(g, meta);
	json_gen_str(g, "content");
	yajl_gen_array_open(g);
	for (i = 0; content != NULL && YAJL_IS_ARRAY(content) &&
	     i < content->u.array.len;
	     i++) {
		item = content->u.array.values[i];
		if (!YAJL_IS_OBJECT(item)) {
			json_gen_tree(g, item);
			continue;
		}
		yajl_gen_map_open(g);
		for (k = 0; k < item->u.object.len; k++) {
			json_gen_str(g, item->u.object.keys[k]);
			json_gen_tree(g, item->u.object.values[k]);
		}
		if (json_get(item, "annotations") == NULL) {
			json_gen_str(g, "annotations");
			json_gen_null(g);
		}
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	json_gen_str(g, "isError");
	err = json_get(r, "isError");
	json_gen_bool(g, err != NULL && YAJL_IS_TRUE(err));
	yajl_gen_map_close(g);
	return json_gen_done(g, len);
}

/* Answers a server's request to us: ping, else "method not found". */
static void
mcp_answer_request(struct mcp_server *s, yajl_val msg)
{
	const char *method = json_get_str(msg, "method");
	yajl_gen g = json_gen_new();

	yajl_gen_map_open(g);
	json_gen_str(g, "jsonrpc");
	json_gen_str(g, "2.0");
	json_gen_str(g, "id");
	json_gen_tree(g, json_get(msg, "id"));
	if (strcmp(method, "ping") == 0) {
		json_gen_str(g, "result");
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	} else {
		json_gen_str(g, "error");
		yajl_gen_map_open(g);
		json_gen_str(g, "code");
		json_gen_int(g, -32601);
		json_gen_str(g, "message");
		json_gen_str(g, "Method not found");
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	mcp_send(s, g);
}

/* One message from a server. Returns -1 if the server was stopped. */
static int
mcp_on_message(struct mcp_server *s, yajl_val msg)
{
	yajl_val idv = json_get(msg, "id"), result, error;
	struct mcp_rpc *rpc;
	const char *why = NULL, *emsg;
	char *text, *json;
	size_t len;
	long long id;

	if (json_get_str(msg, "method") != NULL) {
		if (idv != NULL)
			mcp_answer_request(s, msg);
		return 0; /* notifications are ignored */
	}
	if (idv == NULL || !YAJL_IS_INTEGER(idv))
		return 0;
	id = YAJL_GET_INTEGER(idv);
	TAILQ_FOREACH (rpc, &s->rpcs, entry)
		if (rpc->id == id)
			break;
	if (rpc == NULL)
		return 0;
	TAILQ_REMOVE(&s->rpcs, rpc, entry);
	result = json_get(msg, "result");
	error = json_get(msg, "error");
	if (error != NULL || result == NULL) {
		emsg = json_get_str(error, "message");
		text = xstrdup(emsg != NULL ? emsg : "an error");
	} else
		text = NULL;
	switch (rpc->kind) {
	case MCP_RPC_INIT:
		if (text != NULL)
			why = "initialize failed";
		else
			mcp_on_initialized(s);
		break;
	case MCP_RPC_LIST:
		if (text != NULL)
			why = "tools/list failed";
		else
			mcp_on_tools(s, result, &why);
		break;
	case MCP_RPC_CALL:
		if (rpc->p == NULL)
			break;
		if (text != NULL) {
			char *d;

			xasprintf(
			    &d, "Error calling tool '%s': %s", rpc->tool, text);
			agent_pending_detail(rpc->p, 500, d);
			free(d);
		} else {
			json = mcp_dump_result(result, &len);
			agent_pending_reply_json(rpc->p, 200, json, len);
		}
		break;
	}
	free(rpc->tool);
	free(rpc);
	if (why != NULL) {
		char *full;

		xasprintf(&full, "%s%s%s", why, text != NULL ? ": " : "",
		    text != NULL ? text : "");
		free(text);
		mcp_server_stop(s, full);
		free(full);
		return -1;
	}
	free(text);
	return 0;
}

/*
 * Reads a server's standard output once and handles each complete line.
 * Returns 1 if data was read, 0 if none (for now, or at end of file), -1
 * if the server was stopped (and freed) meanwhile.
 */
static int
mcp_read_out(struct mcp_server *s)
{
	char *line, *cause;
	size_t n;
	yajl_val v;
	int r, got;

	r = evbuffer_read(s->rbuf, s->out_fd, 65536);
	got = r > 0;
	if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR)) {
		/* End of file: its exit is handled on SIGCHLD. */
		mcp_close(&s->out_fd, &s->ev_out);
	}
	while ((line = evbuffer_readln(s->rbuf, &n, EVBUFFER_EOL_LF)) != NULL) {
		if (n == 0 || (n == 1 && line[0] == '\r')) {
			free(line);
			continue;
		}
		if ((v = json_parse(line, n, &cause)) == NULL) {
			log_debug(
			    "mcp: server %s: not JSON-RPC: %s", s->name, cause);
			free(cause);
			free(line);
			continue;
		}
		free(line);
		r = mcp_on_message(s, v);
		yajl_tree_free(v);
		if (r == -1)
			return -1; /* stopped and freed */
	}
	if (evbuffer_get_length(s->rbuf) > MCP_MAX_MESSAGE) {
		mcp_server_stop(s, "message too large");
		return -1;
	}
	return got;
}

/* A server's standard output has data. */
static void
mcp_on_out(evutil_socket_t fd, short what, void *arg)
{
	mcp_read_out(arg);
}

/* Reads a server's standard error once: 1 if data was read, else 0. */
static int
mcp_read_err(struct mcp_server *s)
{
	char buf[4096];
	ssize_t n;

	n = read(s->err_fd, buf, sizeof buf);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		mcp_close(&s->err_fd, &s->ev_err);
		return 0;
	}
	if (n <= 0)
		return 0;
	log_debug("mcp: server %s: stderr: %.*s", s->name, (int)n, buf);
	if ((size_t)n >= MCP_ERR_TAIL) {
		memcpy(s->errtail, buf + n - MCP_ERR_TAIL, MCP_ERR_TAIL);
		s->errlen = MCP_ERR_TAIL;
	} else {
		if (s->errlen + (size_t)n > MCP_ERR_TAIL) {
			size_t drop = s->errlen + (size_t)n - MCP_ERR_TAIL;

			memmove(
			    s->errtail, s->errtail + drop, s->errlen - drop);
			s->errlen -= drop;
		}
		memcpy(s->errtail + s->errlen, buf, (size_t)n);
		s->errlen += (size_t)n;
	}
	s->errtail[s->errlen] = '\0';
	return 1;
}

/* A server's standard error has data: keep its tail, log it. */
static void
mcp_on_err(evutil_socket_t fd, short what, void *arg)
{
	mcp_read_err(arg);
}

/* A server's standard input can take more. */
static void
mcp_on_in(evutil_socket_t fd, short what, void *arg)
{
	struct mcp_server *s = arg;

	if (evbuffer_write(s->wbuf, fd) == -1 && errno != EAGAIN &&
	    errno != EINTR)
		evbuffer_drain(s->wbuf, evbuffer_get_length(s->wbuf));
	if (evbuffer_get_length(s->wbuf) == 0)
		event_del(s->ev_in);
}

/* A server was reaped. */
static void
mcp_on_exit(pid_t pid, int status, void *arg)
{
	struct mcp_server *s = arg;
	char *why;
	int n, r = 0;

	s->pid = 0;
	/* What it said last, and its last words on stderr. */
	while (s->out_fd != -1 && (r = mcp_read_out(s)) == 1)
		;
	if (r == -1)
		return; /* stopped while handling its last output */
	while (s->err_fd != -1 && mcp_read_err(s) == 1)
		;
	n = (int)s->errlen;
	while (n > 0 && (s->errtail[n - 1] == '\n' || s->errtail[n - 1] == ' '))
		n--;
	if (WIFEXITED(status))
		xasprintf(&why, "exited with status %d%s%.*s",
		    WEXITSTATUS(status), n > 0 ? ": " : "", n, s->errtail);
	else
		xasprintf(&why, "killed by signal %d%s%.*s",
		    WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		    n > 0 ? ": " : "", n, s->errtail);
	log_info("mcp: server %s: %s", s->name, why);
	mcp_server_stop(s, why);
	free(why);
}

/* A server did not finish initialising in time. */
static void
mcp_on_init_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct mcp_server *s = arg;
	char *why;

	xasprintf(&why, "did not initialise within %d s", MCP_INIT_TIMEOUT);
	mcp_server_stop(s, why);
	free(why);
}

/* Watches a pipe end of a server. */
static struct event *
mcp_watch(struct mcp_server *s, int fd, short what, event_callback_fn cb)
{
	struct event *ev;

	evutil_make_socket_nonblocking(fd);
	if ((ev = event_new(mcp.base, fd, what | EV_PERSIST, cb, s)) == NULL)
		fatalx("mcp: cannot watch a pipe");
	if (what & EV_READ)
		event_add(ev, NULL);
	return ev;
}

/*
 * Starts a stdio server from its configuration and sends initialize.
 * Returns it, or NULL with *why (caller frees).
 */
static struct mcp_server *
mcp_server_start(const char *name, yajl_val cfg, char **why)
{
	const char *command = json_get_str(cfg, "command"), *type;
	yajl_val args = json_get(cfg, "args"), env = json_get(cfg, "env");
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	struct timeval tv = {MCP_INIT_TIMEOUT, 0};
	char **argv = NULL, **sets = NULL, **envp = NULL, *path, *cause;
	struct child_spec spec;
	struct mcp_server *s = NULL;
	size_t i, n;
	yajl_gen g;
	pid_t pid;

	*why = NULL;
	type = json_get_str(cfg, "type");
	if ((type != NULL && strcmp(type, "stdio") != 0) ||
	    (command == NULL && json_get(cfg, "url") != NULL)) {
		xasprintf(why,
		    "transport '%s' is not supported by "
		    "sandpool-agent (stdio servers only)",
		    type != NULL ? type : "sse");
		return NULL;
	}
	if (command == NULL || *command == '\0') {
		xasprintf(why, "'command' is required (a string)");
		return NULL;
	}
	if (args != NULL && !YAJL_IS_NULL(args) && !YAJL_IS_ARRAY(args)) {
		xasprintf(why, "'args' must be an array of strings");
		return NULL;
	}
	if (env != NULL && !YAJL_IS_NULL(env) && !YAJL_IS_OBJECT(env)) {
		xasprintf(why, "'env' must be an object of strings");
		return NULL;
	}
	if ((path = child_which(command)) == NULL) {
		xasprintf(why,
		    "command '%s' is not available in this sandbox "
		    "(not found on PATH)",
		    command);
		return NULL;
	}
	n = args != NULL && YAJL_IS_ARRAY(args) ? args->u.array.len : 0;
	argv = xcalloc(n + 2, sizeof *argv);
	argv[0] = xstrdup(command);
	for (i = 0; i < n; i++) {
		yajl_val a = args->u.array.values[i];

		if (YAJL_IS_STRING(a))
			argv[i + 1] = xstrdup(YAJL_GET_STRING(a));
		else if (YAJL_IS_NUMBER(a))
			argv[i + 1] = xstrdup(YAJL_GET_NUMBER(a));
		else {
			xasprintf(why, "'args' must be an array of strings");
			goto fail;
		}
	}
	if (env != NULL && YAJL_IS_OBJECT(env)) {
		sets = xcalloc(env->u.object.len + 1, sizeof *sets);
		for (i = 0; i < env->u.object.len; i++) {
			yajl_val v = env->u.object.values[i];
			const char *k = env->u.object.keys[i];

			if (*k == '\0' || strchr(k, '=') != NULL ||
			    (!YAJL_IS_STRING(v) && !YAJL_IS_NUMBER(v))) {
				xasprintf(why,
				    "'env' must be an object of "
				    "strings");
				goto fail;
			}
			xasprintf(&sets[i], "%s=%s", k,
			    YAJL_IS_STRING(v) ? YAJL_GET_STRING(v)
					      : YAJL_GET_NUMBER(v));
		}
		envp = child_env_merge(sets);
	}
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    pipe2(err, O_CLOEXEC) == -1) {
		xasprintf(why, "pipe: %s", strerror(errno));
		goto fail;
	}
	s = xcalloc(1, sizeof *s);
	s->name = xstrdup(name);
	s->in_fd = s->out_fd = s->err_fd = -1;
	TAILQ_INIT(&s->rpcs);
	s->wbuf = evbuffer_new();
	s->rbuf = evbuffer_new();
	memset(&spec, 0, sizeof spec);
	spec.path = path;
	spec.argv = argv;
	spec.envp = envp;
	spec.cwd = mcp.workdir;
	spec.fds[0] = in[0];
	spec.fds[1] = out[1];
	spec.fds[2] = err[1];
	spec.cb = mcp_on_exit;
	spec.arg = s;
	if ((pid = child_spawn(&spec, &cause)) == -1) {
		xasprintf(why, "cannot start '%s': %s", command, cause);
		free(cause);
		evbuffer_free(s->wbuf);
		evbuffer_free(s->rbuf);
		free(s->name);
		free(s);
		s = NULL;
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	s->pid = pid;
	s->in_fd = in[1];
	s->out_fd = out[0];
	s->err_fd = err[0];
	s->ev_in = mcp_watch(s, s->in_fd, EV_WRITE, mcp_on_in);
	s->ev_out = mcp_watch(s, s->out_fd, EV_READ, mcp_on_out);
	s->ev_err = mcp_watch(s, s->err_fd, EV_READ, mcp_on_err);
	s->init_timer = evtimer_new(mcp.base, mcp_on_init_timeout, s);
	evtimer_add(s->init_timer, &tv);
	TAILQ_INSERT_TAIL(&mcp.servers, s, entry);
	log_info("mcp: server %s: pid=%ld: started %s", name, (long)pid, path);

	g = mcp_request(s, MCP_RPC_INIT, "initialize", NULL);
	yajl_gen_map_open(g);
	json_gen_str(g, "protocolVersion");
	json_gen_str(g, MCP_PROTOCOL_VERSION);
	json_gen_str(g, "capabilities");
	yajl_gen_map_open(g);
	yajl_gen_map_close(g);
	json_gen_str(g, "clientInfo");
	yajl_gen_map_open(g);
	json_gen_str(g, "name");
	json_gen_str(g, "sandpool-agent");
	json_gen_str(g, "version");
	json_gen_str(g, PACKAGE_VERSION);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	mcp_send(s, g);
	free(path);
	xstrv_free(argv);
	xstrv_free(sets);
	xstrv_free(envp);
	return s;

fail:
	for (i = 0; i < 2; i++) {
		if (in[i] != -1)
			close(in[i]);
		if (out[i] != -1)
			close(out[i]);
		if (err[i] != -1)
			close(err[i]);
	}
	free(path);
	xstrv_free(argv);
	xstrv_free(sets);
	xstrv_free(envp);
	return NULL;
}

/* Answers an add_servers once no server is left to wait for. */
static void
mcp_add_finish(struct mcp_add *add)
{
	size_t n;

	if (add->waiting > 0)
		return;
	if (add->p != NULL) {
		n = evbuffer_get_length(add->errors);
		if (n == 0)
			agent_pending_reply(
			    add->p, 200, "text/plain; charset=utf-8", "OK", 2);
		else {
			char *msg = xmalloc(n + 1);

			evbuffer_remove(add->errors, msg, n);
			msg[n] = '\0';
			agent_pending_detail(add->p, 500, msg);
			free(msg);
		}
	}
	evbuffer_free(add->errors);
	free(add);
}

/* A server of an add_servers is ready (error NULL) or failed. */
static void
mcp_add_done(struct mcp_add *add, struct mcp_server *s, const char *error)
{
	if (error != NULL)
		evbuffer_add_printf(add->errors, "%s%s",
		    evbuffer_get_length(add->errors) > 0 ? "; " : "", error);
	add->waiting--;
	mcp_add_finish(add);
}

/* The client of an add_servers left: the servers start anyway. */
static void
mcp_add_cancel(void *op)
{
	struct mcp_add *add = op;

	add->p = NULL;
}

/*
 * POST /mcp/add_servers {"server_configs": {"mcpServers": {name: cfg}},
 * "overwrite": bool}: starts each stdio server (existing names are kept
 * unless overwrite) and answers "OK" once all have listed their tools, or
 * 500 with what failed (failed servers are not kept).
 */
void
mcp_route_add_servers(struct ahttp_req *req, yajl_val body)
{
	yajl_val configs = json_get(body, "server_configs"), servers, cfg;
	yajl_val ov = json_get(body, "overwrite");
	struct mcp_server *old, *s;
	struct mcp_add *add;
	const char *name;
	char *why, *msg;
	size_t i;

	if (configs == NULL || !YAJL_IS_OBJECT(configs)) {
		agent_reply_detail(req, 422,
		    "field 'server_configs' is required and must be an object");
		return;
	}
	if (ov != NULL && !YAJL_IS_TRUE(ov) && !YAJL_IS_FALSE(ov) &&
	    !YAJL_IS_NULL(ov)) {
		agent_reply_detail(req, 422,
		    "field 'overwrite' must be a "
		    "boolean");
		return;
	}
	servers = json_get(configs, "mcpServers");
	if (servers == NULL || !YAJL_IS_OBJECT(servers) ||
	    servers->u.object.len == 0) {
		agent_reply_detail(req, 500,
		    "server_configs has no servers (expected "
		    "{\"mcpServers\": {name: config}})");
		return;
	}
	add = xcalloc(1, sizeof *add);
	add->errors = evbuffer_new();
	add->p = agent_pending_new(req);
	agent_pending_set(add->p, mcp_add_cancel, add);
	add->waiting = 1; /* held until every server is started */
	for (i = 0; i < servers->u.object.len; i++) {
		name = servers->u.object.keys[i];
		cfg = servers->u.object.values[i];
		if ((old = mcp_find(name)) != NULL) {
			if (ov == NULL || !YAJL_IS_TRUE(ov))
				continue;
			mcp_server_stop(old, "replaced (overwrite)");
		}
		add->waiting++;
		if (!YAJL_IS_OBJECT(cfg)) {
			xasprintf(&msg,
			    "MCP server '%s': its configuration "
			    "must be an object",
			    name);
			mcp_add_done(add, NULL, msg);
			free(msg);
			continue;
		}
		if ((s = mcp_server_start(name, cfg, &why)) == NULL) {
			xasprintf(&msg, "MCP server '%s': %s", name, why);
			log_warnx("mcp: %s", msg);
			mcp_add_done(add, NULL, msg);
			free(msg);
			free(why);
			continue;
		}
		s->add = add;
	}
	add->waiting--;
	mcp_add_finish(add);
}

/* GET /mcp/list_tools: {server: {tool: {"name", "json_schema"}}}. */
void
mcp_route_list_tools(struct ahttp_req *req, yajl_val body)
{
	struct mcp_server *s;
	struct mcp_tool *t;
	yajl_gen g = json_gen_new();
	size_t i, len;
	char *json;

	yajl_gen_map_open(g);
	if (mcp_native()) {
		json_gen_str(g, "filesystem");
		fstools_gen_list(g);
	}
	TAILQ_FOREACH (s, &mcp.servers, entry) {
		if (s->state != MCP_S_READY)
			continue;
		json_gen_str(g, s->name);
		yajl_gen_map_open(g);
		for (i = 0; i < s->ntools; i++) {
			t = &s->tools[i];
			json_gen_tool_begin(g, t->name, t->description);
			json_gen_raw(g, t->properties, strlen(t->properties));
			json_gen_str(g, "required");
			json_gen_raw(g, t->required, strlen(t->required));
			json_gen_tool_end(g);
		}
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	json = json_gen_done(g, &len);
	agent_reply_json(req, 200, json, len);
}

/* The client of a call left: its answer will be dropped. */
static void
mcp_call_cancel(void *op)
{
	struct mcp_rpc *rpc = op;

	rpc->p = NULL;
}

/* POST /mcp/call_tool {"tool_name": str, "arguments": object}. */
void
mcp_route_call_tool(struct ahttp_req *req, yajl_val body)
{
	const char *name = json_get_str(body, "tool_name");
	yajl_val args = json_get(body, "arguments");
	struct mcp_server *s;
	struct mcp_rpc *rpc;
	size_t i, len;
	yajl_gen g;
	char *json, *msg;

	if (name == NULL) {
		agent_reply_detail(req, 422,
		    "field 'tool_name' is required and must be a string");
		return;
	}
	if (args != NULL && YAJL_IS_NULL(args))
		args = NULL;
	if (args != NULL && !YAJL_IS_OBJECT(args)) {
		agent_reply_detail(
		    req, 422, "field 'arguments' must be an object");
		return;
	}
	if (mcp_native() && fstools_has(name)) {
		json = fstools_call(name, args, &len);
		agent_reply_json(req, 200, json, len);
		return;
	}
	TAILQ_FOREACH (s, &mcp.servers, entry) {
		if (s->state != MCP_S_READY)
			continue;
		for (i = 0; i < s->ntools; i++)
			if (strcmp(s->tools[i].name, name) == 0)
				break;
		if (i < s->ntools)
			break;
	}
	if (s == NULL) {
		xasprintf(&msg, "Tool '%s' not found.", name);
		agent_reply_detail(req, 500, msg);
		free(msg);
		return;
	}
	g = mcp_request(s, MCP_RPC_CALL, "tools/call", &rpc);
	yajl_gen_map_open(g);
	json_gen_str(g, "name");
	json_gen_str(g, name);
	json_gen_str(g, "arguments");
	if (args != NULL)
		json_gen_tree(g, args);
	else {
		yajl_gen_map_open(g);
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	rpc->tool = xstrdup(name);
	rpc->p = agent_pending_new(req);
	agent_pending_set(rpc->p, mcp_call_cancel, rpc);
	mcp_send(s, g);
}

/* Stops every server; nothing is answered. */
void
mcp_shutdown(void)
{
	struct mcp_server *s;

	struct mcp_add *add;

	while ((s = TAILQ_FIRST(&mcp.servers)) != NULL) {
		if ((add = s->add) != NULL) {
			s->add = NULL;
			add->p = NULL;
			if (--add->waiting == 0) {
				evbuffer_free(add->errors);
				free(add);
			}
		}
		mcp_server_stop(s, "the agent is stopping");
	}
	free(mcp.workdir);
	mcp.workdir = NULL;
}
