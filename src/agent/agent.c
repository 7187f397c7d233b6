/*
 * agent: sandpool-agent's main program, the in-container runtime (spec
 * section 6). Serves the runtime API with ahttp on TCP
 * 0.0.0.0:$SANDPOOL_AGENT_PORT and on the unix socket
 * $SANDPOOL_AGENT_SOCKET, checks the bearer token on every request, routes
 * (the route table is here, the routes in their modules), and keeps the
 * requests that wait for an asynchronous answer. Runs as PID 1: signals end
 * it cleanly and child.c reaps every child. Owns the event base, the HTTP
 * server, the listeners and the pending requests.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h" /* PACKAGE_VERSION */
#endif

#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#include "agent.h"
#include "ahttp.h"
#include "child.h"
#include "json.h"
#include "log.h"
#include "mcp.h"
#include "python.h"
#include "result.h"
#include "shell.h"
#include "watcher.h"
#include "wspace.h"
#include "xmalloc.h"

/* A request waiting for an asynchronous operation. */
struct agent_pending {
	TAILQ_ENTRY(agent_pending) entry;
	struct ahttp_req *req;
	agent_cancel_fn cancel;
	void *op;
};

TAILQ_HEAD(agent_pendings, agent_pending);

static struct {
	struct event_base *base;
	struct ahttp *http;
	struct event *sigterm, *sigint;
	char *token; /* NULL: refuse everything */
	size_t token_len;
	int port;	   /* 0: no TCP listener */
	char *socket_path; /* NULL: no unix socket */
	int socket_bound;
	char *workdir;
	size_t max_output;
	char *python;
	int ipython;
	int mcp_filesystem;
	int force_walk;
	struct agent_pendings pendings;
	int stopping;
} agent;

/* How a route takes its body. */
enum agent_body {
	AGENT_BODY_NONE,     /* none (one sent is read and dropped) */
	AGENT_BODY_JSON,     /* a JSON object, parsed before the route runs */
	AGENT_BODY_JSON_OPT, /* the same, and an empty body means {} */
	AGENT_BODY_STREAM    /* the route streams it itself */
};

typedef void (*agent_route_cb)(struct ahttp_req *, yajl_val);

static void agent_healthz(struct ahttp_req *, yajl_val);
static void agent_run_shell(struct ahttp_req *, yajl_val);

/* clang-format off */
static const struct agent_route {
	const char		*path;
	enum ahttp_method	 method;
	const char		*method_name;
	enum agent_body		 body;
	agent_route_cb		 cb;
} agent_routes[] = {
	{ "/healthz",			AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  agent_healthz },
	{ "/tools/run_shell_command",	AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  agent_run_shell },
	{ "/tools/run_ipython_cell",	AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  python_route_cell },
	{ "/mcp/list_tools",		AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  mcp_route_list_tools },
	{ "/mcp/call_tool",		AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  mcp_route_call_tool },
	{ "/mcp/add_servers",		AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  mcp_route_add_servers },
	{ "/watcher/commit_changes",	AHTTP_POST,   "POST",   AGENT_BODY_JSON_OPT,
	  watcher_route_commit },
	{ "/watcher/generate_diff",	AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  watcher_route_diff },
	{ "/watcher/git_logs",		AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  watcher_route_logs },
	{ "/workspace/file",		AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  ws_route_file_get },
	{ "/workspace/file",		AHTTP_PUT,    "PUT",    AGENT_BODY_STREAM,
	  ws_route_file_put },
	{ "/workspace/files:batch",	AHTTP_POST,   "POST",   AGENT_BODY_STREAM,
	  ws_route_batch },
	{ "/workspace/list",		AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  ws_route_list },
	{ "/workspace/exists",		AHTTP_GET,    "GET",    AGENT_BODY_NONE,
	  ws_route_exists },
	{ "/workspace/entry",		AHTTP_DELETE, "DELETE", AGENT_BODY_NONE,
	  ws_route_delete },
	{ "/workspace/move",		AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  ws_route_move },
	{ "/workspace/mkdir",		AHTTP_POST,   "POST",   AGENT_BODY_JSON,
	  ws_route_mkdir },
};
/* clang-format on */

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* Prints usage to f. */
static void
agent_usage(FILE *f)
{
	fprintf(f,
	    "usage: sandpool-agent [--help | --version]\n"
	    "\n"
	    "The sandpool runtime inside a sandbox container. Configured by\n"
	    "the environment:\n"
	    "  SECRET_TOKEN                  bearer token (required; unset or "
	    "empty refuses all)\n"
	    "  SANDPOOL_AGENT_PORT           TCP port on 0.0.0.0 (default %d; "
	    "0 disables)\n"
	    "  SANDPOOL_AGENT_SOCKET         unix socket (default %s; empty "
	    "disables)\n"
	    "  SANDPOOL_AGENT_WORKDIR        the workspace (default %s)\n"
	    "  SANDPOOL_AGENT_MAX_OUTPUT     bytes kept per output stream "
	    "(default %d)\n"
	    "  SANDPOOL_AGENT_PYTHON         interpreter of run_ipython_cell "
	    "(default python3)\n"
	    "  SANDPOOL_AGENT_IPYTHON        0: never use IPython (default "
	    "1)\n"
	    "  SANDPOOL_AGENT_MCP_FILESYSTEM 1: serve the filesystem MCP "
	    "tools (default 0)\n"
	    "  SANDPOOL_AGENT_LOG_LEVEL      DEBUG, INFO, WARNING, ERROR "
	    "(default INFO)\n",
	    AGENT_DEFAULT_PORT, AGENT_DEFAULT_SOCKET, AGENT_DEFAULT_WORKDIR,
	    AGENT_DEFAULT_MAX_OUTPUT);
}

/* The workspace directory. */
const char *
agent_workdir(void)
{
	return agent.workdir;
}

/* Bytes kept per output stream. */
size_t
agent_max_output(void)
{
	return agent.max_output;
}

/* Answers a request: the one place that sends a complete reply. */
void
agent_reply(struct ahttp_req *req, int code, const char *ctype,
    const char *body, size_t len)
{
	log_debug("agent: %s %s -> %d", ahttp_req_method_name(req),
	    ahttp_req_target(req), code);
	ahttp_reply(req, code, ctype, body, len);
}

/* Answers with a JSON body, which this function frees. */
void
agent_reply_json(struct ahttp_req *req, int code, char *json, size_t len)
{
	agent_reply(req, code, "application/json", json, len);
	free(json);
}

/* Answers {"detail": msg}. */
void
agent_reply_detail(struct ahttp_req *req, int code, const char *msg)
{
	size_t len;
	char *json = json_detail(msg, &len);

	agent_reply_json(req, code, json, len);
}

/* The decoded value of a query parameter. */
char *
agent_query(struct ahttp_req *req, const char *name)
{
	const char *q = ahttp_req_query(req), *v;
	struct evkeyvalq kv;
	char *out = NULL;

	if (q == NULL)
		return NULL;
	TAILQ_INIT(&kv);
	if (evhttp_parse_query_str(q, &kv) == 0 &&
	    (v = evhttp_find_header(&kv, name)) != NULL)
		out = xstrdup(v);
	evhttp_clear_headers(&kv);
	return out;
}

/* The client went away: cancel the operation and forget the request. */
static void
agent_pending_on_close(struct ahttp_req *req, void *arg)
{
	struct agent_pending *p = arg;

	log_debug("agent: %s %s: client gone before the answer",
	    ahttp_req_method_name(req), ahttp_req_target(req));
	if (p->cancel != NULL)
		p->cancel(p->op);
	TAILQ_REMOVE(&agent.pendings, p, entry);
	free(p);
}

/* Makes a pending record for req. */
struct agent_pending *
agent_pending_new(struct ahttp_req *req)
{
	struct agent_pending *p;

	p = xcalloc(1, sizeof *p);
	p->req = req;
	TAILQ_INSERT_TAIL(&agent.pendings, p, entry);
	ahttp_req_set_close_cb(req, agent_pending_on_close, p);
	return p;
}

/* Names the operation behind a pending record. */
void
agent_pending_set(struct agent_pending *p, agent_cancel_fn cancel, void *op)
{
	p->cancel = cancel;
	p->op = op;
}

/* Frees a pending record without answering. */
void
agent_pending_drop(struct agent_pending *p)
{
	if (p == NULL)
		return;
	ahttp_req_set_close_cb(p->req, NULL, NULL);
	TAILQ_REMOVE(&agent.pendings, p, entry);
	free(p);
}

/* The request of a pending record. */
struct ahttp_req *
agent_pending_req(struct agent_pending *p)
{
	return p->req;
}

/* Answers a pending request and frees the record. */
void
agent_pending_reply(struct agent_pending *p, int code, const char *ctype,
    const char *body, size_t len)
{
	struct ahttp_req *req = p->req;

	agent_pending_drop(p);
	agent_reply(req, code, ctype, body, len);
}

/* Answers a pending request with JSON (freed here). */
void
agent_pending_reply_json(
    struct agent_pending *p, int code, char *json, size_t len)
{
	agent_pending_reply(p, code, "application/json", json, len);
	free(json);
}

/* Answers a pending request with {"detail": msg}. */
void
agent_pending_detail(struct agent_pending *p, int code, const char *msg)
{
	size_t len;
	char *json = json_detail(msg, &len);

	agent_pending_reply_json(p, code, json, len);
}

/*
 * Compares the offered token with ours in time that depends only on our
 * token's length and the offer's, never on where they first differ.
 */
static int
agent_token_equal(const char *offer, size_t len)
{
	volatile unsigned char diff;
	size_t i;

	diff = len != agent.token_len;
	for (i = 0; i < agent.token_len; i++)
		diff |= (unsigned char)agent.token[i] ^
		    (unsigned char)(i < len ? offer[i] : 0);
	return diff == 0;
}

/* Checks the Authorization header (spec 6.2); answers 403 and returns -1. */
static int
agent_auth(struct ahttp_req *req)
{
	static const char scheme[] = "Bearer ";
	const char *h;

	h = ahttp_req_header(req, "Authorization");
	if (h == NULL || strncmp(h, scheme, sizeof scheme - 1) != 0) {
		agent_reply_detail(
		    req, 403, "Missing or invalid authorization header");
		return -1;
	}
	h += sizeof scheme - 1;
	if (agent.token == NULL || !agent_token_equal(h, strlen(h))) {
		agent_reply_detail(req, 403, "Invalid secret token");
		return -1;
	}
	return 0;
}

/* GET /healthz: 200 "OK" without a content type, as upstream. */
static void
agent_healthz(struct ahttp_req *req, yajl_val body)
{
	agent_reply(req, 200, NULL, "OK", 2);
}

/* A command finished: answer with the CallToolResult of spec 6.4. */
static void
agent_on_shell_done(const struct shell_result *r, void *arg)
{
	struct agent_pending *p = arg;
	char rc[16];
	yajl_gen g;
	char *json;
	size_t len;

	snprintf(rc, sizeof rc, "%d", r->returncode);
	g = result_open();
	result_text(g, r->out, r->out_len, "stdout");
	if (r->err_len > 0)
		result_text(g, r->err, r->err_len, "stderr");
	result_text(g, rc, strlen(rc), "returncode");
	json = result_close(g, r->err_len > 0, &len);
	agent_pending_reply_json(p, 200, json, len);
}

/* Cancels a command whose client went away: it runs on (as upstream). */
static void
agent_shell_cancel(void *op)
{
	shell_cancel(op);
}

/* Reads the optional "timeout" member: 0 (none), seconds, or -1 if bad. */
double
agent_get_timeout(yajl_val body)
{
	yajl_val v = json_get(body, "timeout");
	double t;

	if (v == NULL || YAJL_IS_NULL(v))
		return 0;
	if (YAJL_IS_INTEGER(v))
		t = (double)YAJL_GET_INTEGER(v);
	else if (YAJL_IS_DOUBLE(v))
		t = YAJL_GET_DOUBLE(v);
	else
		return -1;
	if (!(t > 0 && t <= AGENT_MAX_CMD_TIMEOUT))
		return -1;
	return t;
}

/* POST /tools/run_shell_command {"command": str, "timeout": seconds}. */
static void
agent_run_shell(struct ahttp_req *req, yajl_val body)
{
	struct agent_pending *p;
	struct shell_cmd *cmd;
	const char *command;
	double timeout;
	char *cause, *msg;

	if ((command = json_get_str(body, "command")) == NULL) {
		agent_reply_detail(req, 422,
		    "field 'command' is required and must be a string");
		return;
	}
	if ((timeout = agent_get_timeout(body)) < 0) {
		agent_reply_detail(req, 422,
		    "field 'timeout' must be a positive number of seconds");
		return;
	}
	p = agent_pending_new(req);
	cmd = shell_run(command, timeout, agent_on_shell_done, p, &cause);
	if (cmd == NULL) {
		agent_pending_drop(p);
		log_warnx("agent: cannot run a command: %s", cause);
		xasprintf(&msg, "cannot run the command: %s", cause);
		agent_reply_detail(req, 500, msg);
		free(msg);
		free(cause);
		return;
	}
	agent_pending_set(p, agent_shell_cancel, cmd);
}

/* A JSON body has been read: parse it and run the route. */
static void
agent_on_body(struct ahttp_req *req, int error, void *arg)
{
	const struct agent_route *r = arg;
	const char *text;
	char *cause;
	size_t len;
	yajl_val v;

	if (error != 0)
		return; /* answered by ahttp, or the client is gone */
	text = ahttp_req_body(req, &len);
	if (len == 0 && r->body == AGENT_BODY_JSON_OPT)
		text = "{}", len = 2;
	if ((v = json_parse(text, len, &cause)) == NULL) {
		agent_reply_detail(req, 422, cause);
		free(cause);
		return;
	}
	if (!YAJL_IS_OBJECT(v)) {
		agent_reply_detail(
		    req, 422, "request body must be a JSON object");
		yajl_tree_free(v);
		return;
	}
	r->cb(req, v);
	yajl_tree_free(v);
}

/* Every request head: authenticate, strip /fastapi, route. */
static void
agent_on_request(struct ahttp_req *req, void *arg)
{
	enum ahttp_method method = ahttp_req_method(req);
	const struct agent_route *r;
	const char *path;
	char allow[64] = "";
	size_t i;

	if (agent_auth(req) == -1)
		return;
	path = ahttp_req_path(req);
	if (strncmp(path, "/fastapi/", 9) == 0)
		path += 8;
	for (i = 0; i < nitems(agent_routes); i++) {
		r = &agent_routes[i];
		if (strcmp(path, r->path) != 0)
			continue;
		if (r->method != method) {
			size_t n = strlen(allow);

			snprintf(allow + n, sizeof allow - n, "%s%s",
			    n > 0 ? ", " : "", r->method_name);
			continue;
		}
		switch (r->body) {
		case AGENT_BODY_JSON:
		case AGENT_BODY_JSON_OPT:
			ahttp_req_read_body(
			    req, AGENT_MAX_BODY, agent_on_body, (void *)r);
			break;
		case AGENT_BODY_NONE:
		case AGENT_BODY_STREAM:
			r->cb(req, NULL);
			break;
		}
		return;
	}
	if (allow[0] != '\0') {
		ahttp_reply_header(req, "Allow", allow);
		agent_reply_detail(req, 405, "Method Not Allowed");
		return;
	}
	agent_reply_detail(req, 404, "Not Found");
}

/* SIGTERM or SIGINT: leave the loop; main() cleans up. */
static void
agent_on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("agent: signal %d: exiting", (int)sig);
	agent.stopping = 1;
	event_base_loopbreak(agent.base);
}

/*
 * Listens on the unix socket if its directory exists: a stale socket is
 * unlinked first, the new one is mode 0600. 0, or -1 if not listening.
 */
static int
agent_listen_unix(const char *path)
{
	struct sockaddr_un sun;
	struct stat st;
	char *dir, *slash;
	mode_t old;
	int fd, dir_ok;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		log_warnx("agent: socket %s: path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	dir_ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
	free(dir);
	if (!dir_ok) {
		log_info(
		    "agent: socket %s: no such directory: not listening", path);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("agent: socket %s: exists and is not a "
				  "socket: not listening",
			    path);
			return -1;
		}
		if (unlink(path) == -1) {
			log_warn("agent: socket %s: unlink", path);
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("agent: socket %s: socket", path);
		return -1;
	}
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		log_warn("agent: socket %s: bind", path);
		umask(old);
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(path, 0600) == -1 || listen(fd, 128) == -1 ||
	    ahttp_listen_fd(agent.http, fd) == -1) {
		log_warn("agent: socket %s: listen", path);
		close(fd);
		unlink(path);
		return -1;
	}
	log_info("agent: listening on %s", path);
	return 0;
}

/*
 * Listens on TCP 0.0.0.0:port. The socket is made here, without
 * getaddrinfo(3): a static binary must not need the image's NSS
 * libraries. 0 or -1.
 */
static int
agent_listen_tcp(int port)
{
	struct sockaddr_in sin;
	int fd, on = 1;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("agent: 0.0.0.0:%d: socket", port);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 128) == -1) {
		log_warn("agent: cannot listen on 0.0.0.0:%d", port);
		close(fd);
		return -1;
	}
	if (ahttp_listen_fd(agent.http, fd) == -1) {
		log_warnx("agent: 0.0.0.0:%d: cannot accept", port);
		close(fd);
		return -1;
	}
	log_info("agent: listening on 0.0.0.0:%d", port);
	return 0;
}

/* Parses a non-negative integer environment variable within bounds. */
static long long
agent_env_num(const char *name, long long def, long long min, long long max)
{
	const char *s = getenv(name);
	long long v;
	char *end;

	if (s == NULL || *s == '\0')
		return def;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		fatalx("agent: %s=%s: not an integer in %lld..%lld", name, s,
		    min, max);
	return v;
}

/*
 * Takes SECRET_TOKEN out of the environment: commands do not inherit it,
 * and its bytes in the original environment block (what
 * /proc/1/environ shows) are wiped.
 */
static void
agent_take_token(void)
{
	char *s = getenv("SECRET_TOKEN");

	if (s != NULL && *s != '\0') {
		agent.token = xstrdup(s);
		agent.token_len = strlen(s);
		memset(s, 0, agent.token_len);
	}
	unsetenv("SECRET_TOKEN");
	if (agent.token == NULL)
		log_warnx("agent: SECRET_TOKEN is not set: every request "
			  "will be refused with 403");
}

/* Reads the environment into the agent's settings. */
static void
agent_configure(void)
{
	const char *s;
	int level;

	if ((s = getenv("SANDPOOL_AGENT_LOG_LEVEL")) != NULL && *s != '\0') {
		if ((level = log_level_parse(s)) == -1)
			fatalx("agent: SANDPOOL_AGENT_LOG_LEVEL=%s: unknown "
			       "level",
			    s);
		log_setlevel(level);
	}
	agent_take_token();
	agent.port = (int)agent_env_num(
	    "SANDPOOL_AGENT_PORT", AGENT_DEFAULT_PORT, 0, 65535);
	s = getenv("SANDPOOL_AGENT_SOCKET");
	if (s == NULL)
		s = AGENT_DEFAULT_SOCKET;
	agent.socket_path = *s != '\0' ? xstrdup(s) : NULL;
	s = getenv("SANDPOOL_AGENT_WORKDIR");
	agent.workdir =
	    xstrdup(s != NULL && *s != '\0' ? s : AGENT_DEFAULT_WORKDIR);
	agent.max_output = (size_t)agent_env_num("SANDPOOL_AGENT_MAX_OUTPUT",
	    AGENT_DEFAULT_MAX_OUTPUT, 1, 1024LL * 1024 * 1024);
	s = getenv("SANDPOOL_AGENT_PYTHON");
	agent.python = xstrdup(s != NULL && *s != '\0' ? s : "python3");
	agent.ipython = (int)agent_env_num("SANDPOOL_AGENT_IPYTHON", 1, 0, 1);
	agent.mcp_filesystem =
	    (int)agent_env_num("SANDPOOL_AGENT_MCP_FILESYSTEM", 0, 0, 1);
	/* For tests: resolve paths without openat2. */
	agent.force_walk =
	    (int)agent_env_num("SANDPOOL_AGENT_NO_OPENAT2", 0, 0, 1);
}

/* Creates the HTTP server and its listeners; -1 if none listens. */
static int
agent_serve(void)
{
	int listening = 0;

	agent.http = ahttp_new(agent.base, agent_on_request, NULL);
	if (agent.port != 0 && agent_listen_tcp(agent.port) == 0)
		listening++;
	if (agent.socket_path != NULL &&
	    agent_listen_unix(agent.socket_path) == 0) {
		agent.socket_bound = 1;
		listening++;
	}
	return listening > 0 ? 0 : -1;
}

/* Frees everything in reverse order of acquisition. */
static void
agent_cleanup(void)
{
	struct agent_pending *p;

	/* Requests still waiting get no answer; their operations stop. */
	while ((p = TAILQ_FIRST(&agent.pendings)) != NULL) {
		if (p->cancel != NULL)
			p->cancel(p->op);
		TAILQ_REMOVE(&agent.pendings, p, entry);
		free(p);
	}
	ws_shutdown();
	mcp_shutdown();
	python_shutdown();
	shell_shutdown();
	ahttp_free(agent.http);
	child_shutdown();
	if (agent.socket_bound)
		unlink(agent.socket_path);
	if (agent.sigint != NULL)
		event_free(agent.sigint);
	if (agent.sigterm != NULL)
		event_free(agent.sigterm);
	if (agent.base != NULL)
		event_base_free(agent.base);
	free(agent.workdir);
	free(agent.socket_path);
	free(agent.python);
	if (agent.token != NULL) {
		memset(agent.token, 0, agent.token_len);
		free(agent.token);
	}
}

int
main(int argc, char **argv)
{
	int i;

	log_init("sandpool-agent", LOG_LEVEL_INFO);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--version") == 0 ||
		    strcmp(argv[i], "-V") == 0) {
			printf("sandpool-agent %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			agent_usage(stdout);
			return 0;
		}
		fprintf(stderr, "sandpool-agent: unexpected argument: %s\n",
		    argv[i]);
		agent_usage(stderr);
		return 2;
	}

	/*
	 * Not dumpable: commands, which run as the same user, cannot read
	 * the token from /proc/1/mem or /proc/1/environ. When not PID 1,
	 * become a subreaper so that orphaned background jobs are still
	 * ours to reap.
	 */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	TAILQ_INIT(&agent.pendings);
	agent_configure();

	if ((agent.base = event_base_new()) == NULL)
		fatalx("agent: cannot create the event base");
	if (child_init(agent.base) == -1 ||
	    shell_init(agent.base, agent.workdir, agent.max_output) == -1)
		fatalx("agent: cannot set up child handling");
	if (python_init(agent.base, agent.workdir, agent.python, agent.ipython,
		agent.max_output) == -1)
		fatalx("agent: cannot set up the Python module");
	ws_init(agent.workdir, agent.force_walk);
	mcp_init(agent.base, agent.workdir, agent.mcp_filesystem);
	agent.sigterm =
	    evsignal_new(agent.base, SIGTERM, agent_on_signal, NULL);
	agent.sigint = evsignal_new(agent.base, SIGINT, agent_on_signal, NULL);
	if (agent.sigterm == NULL || agent.sigint == NULL ||
	    evsignal_add(agent.sigterm, NULL) == -1 ||
	    evsignal_add(agent.sigint, NULL) == -1)
		fatalx("agent: cannot install signal handlers");
	if (agent_serve() == -1) {
		agent_cleanup();
		fatalx("agent: no listener: nothing to serve on");
	}
	log_info("agent: sandpool-agent %s ready (pid %ld)", PACKAGE_VERSION,
	    (long)getpid());
	event_base_dispatch(agent.base);
	agent_cleanup();
	log_info("agent: stopped");
	return 0;
}
