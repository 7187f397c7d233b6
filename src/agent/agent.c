/*
 * agent: sandpool-agent's main program, the in-container runtime (spec
 * section 6). Serves the runtime API with evhttp on TCP
 * 0.0.0.0:$SANDPOOL_AGENT_PORT and on the unix socket
 * $SANDPOOL_AGENT_SOCKET, checks the bearer token on every request, routes,
 * and answers each request exactly once through agent_reply(). Runs as
 * PID 1: signals end it cleanly and shell.c reaps every child. Owns the
 * event base, the HTTP server, the listeners and the pending requests.
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
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#include "agent.h"
#include "json.h"
#include "log.h"
#include "xmalloc.h"

/* A request waiting for a command to finish. */
struct agent_req {
	TAILQ_ENTRY(agent_req) entry;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct shell_cmd *cmd;
};

TAILQ_HEAD(agent_reqs, agent_req);

static struct {
	struct event_base *base;
	struct evhttp *http;
	struct event *sigterm, *sigint;
	char *token; /* NULL: refuse everything */
	size_t token_len;
	int port;	   /* 0: no TCP listener */
	char *socket_path; /* NULL: no unix socket */
	int socket_bound;
	char *workdir;
	size_t max_output;
	struct agent_reqs reqs;
	int stopping;
} agent;

typedef void (*agent_route_cb)(struct evhttp_request *);

static void agent_healthz(struct evhttp_request *);
static void agent_run_shell(struct evhttp_request *);
static void agent_run_ipython(struct evhttp_request *);
static void agent_list_tools(struct evhttp_request *);
static void agent_call_tool(struct evhttp_request *);

/* clang-format off */
static const struct agent_route {
	const char		*path;
	enum evhttp_cmd_type	 method;
	const char		*allow;
	agent_route_cb		 cb;
} agent_routes[] = {
	{ "/healthz",			EVHTTP_REQ_GET,  "GET",  agent_healthz },
	{ "/tools/run_shell_command",	EVHTTP_REQ_POST, "POST", agent_run_shell },
	{ "/tools/run_ipython_cell",	EVHTTP_REQ_POST, "POST", agent_run_ipython },
	{ "/mcp/list_tools",		EVHTTP_REQ_GET,  "GET",  agent_list_tools },
	{ "/mcp/call_tool",		EVHTTP_REQ_POST, "POST", agent_call_tool },
};

/* Reason phrases for the statuses the agent sends itself. */
static const struct {
	int		 code;
	const char	*reason;
} agent_reasons[] = {
	{ 200, "OK" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 422, "Unprocessable Entity" },
	{ 500, "Internal Server Error" },
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
	    "  SECRET_TOKEN               bearer token (required; unset or "
	    "empty refuses all)\n"
	    "  SANDPOOL_AGENT_PORT        TCP port on 0.0.0.0 (default %d; 0 "
	    "disables)\n"
	    "  SANDPOOL_AGENT_SOCKET      unix socket (default %s; empty "
	    "disables)\n"
	    "  SANDPOOL_AGENT_WORKDIR     directory commands run in (default "
	    "%s)\n"
	    "  SANDPOOL_AGENT_MAX_OUTPUT  bytes kept per output stream "
	    "(default %d)\n"
	    "  SANDPOOL_AGENT_LOG_LEVEL   DEBUG, INFO, WARNING, ERROR "
	    "(default INFO)\n",
	    AGENT_DEFAULT_PORT, AGENT_DEFAULT_SOCKET, AGENT_DEFAULT_WORKDIR,
	    AGENT_DEFAULT_MAX_OUTPUT);
}

/* Names a method for the log. */
static const char *
agent_method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "other";
	}
}

/* Answers a request: the one place that sends a reply. */
static void
agent_reply(struct evhttp_request *req, int code, const char *ctype,
    const char *body, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	const char *reason = NULL;
	struct evbuffer *buf;
	size_t i;

	for (i = 0; i < nitems(agent_reasons); i++)
		if (agent_reasons[i].code == code)
			reason = agent_reasons[i].reason;
	if (ctype != NULL)
		evhttp_add_header(h, "Content-Type", ctype);
	if ((buf = evbuffer_new()) == NULL)
		fatalx("agent: out of memory");
	evbuffer_add(buf, body, len);
	log_debug("agent: %s %s -> %d",
	    agent_method_name(evhttp_request_get_command(req)),
	    evhttp_request_get_uri(req), code);
	evhttp_send_reply(req, code, reason, buf);
	evbuffer_free(buf);
}

/* Answers with a JSON body, which this function frees. */
static void
agent_reply_json(struct evhttp_request *req, int code, char *json, size_t len)
{
	agent_reply(req, code, "application/json", json, len);
	free(json);
}

/* Answers {"detail": msg}. */
static void
agent_reply_detail(struct evhttp_request *req, int code, const char *msg)
{
	size_t len;
	char *json = json_detail(msg, &len);

	agent_reply_json(req, code, json, len);
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
agent_auth(struct evhttp_request *req)
{
	static const char scheme[] = "Bearer ";
	const char *h;

	h = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");
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

/* Parses a request body as a JSON object; answers 422 and NULL if not. */
static yajl_val
agent_body_object(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *p;
	char *cause;
	yajl_val v;

	p = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	if ((v = json_parse(p, len, &cause)) == NULL) {
		agent_reply_detail(req, 422, cause);
		free(cause);
		return NULL;
	}
	if (!YAJL_IS_OBJECT(v)) {
		agent_reply_detail(
		    req, 422, "request body must be a JSON object");
		yajl_tree_free(v);
		return NULL;
	}
	return v;
}

/* GET /healthz: 200 "OK" without a content type, as upstream. */
static void
agent_healthz(struct evhttp_request *req)
{
	agent_reply(req, 200, NULL, "OK", 2);
}

/* GET /mcp/list_tools: no MCP servers yet. */
static void
agent_list_tools(struct evhttp_request *req)
{
	agent_reply(req, 200, "application/json", "{}", 2);
}

/* POST /mcp/call_tool: no MCP servers yet, so every tool is unknown. */
static void
agent_call_tool(struct evhttp_request *req)
{
	const char *name;
	yajl_val body;
	char *msg;

	if ((body = agent_body_object(req)) == NULL)
		return;
	if ((name = json_get_str(body, "tool_name")) == NULL) {
		agent_reply_detail(req, 422,
		    "field 'tool_name' is required and must be a string");
		yajl_tree_free(body);
		return;
	}
	xasprintf(&msg, "Tool '%s' not found.", name);
	agent_reply_detail(req, 500, msg);
	free(msg);
	yajl_tree_free(body);
}

/* POST /tools/run_ipython_cell: not implemented yet. */
static void
agent_run_ipython(struct evhttp_request *req)
{
	agent_reply_detail(req, 500, "run_ipython_cell is not available yet");
}

/* Emits one text item of a CallToolResult. */
static void
agent_gen_item(yajl_gen g, const char *text, size_t len, const char *desc)
{
	yajl_gen_map_open(g);
	json_gen_str(g, "type");
	json_gen_str(g, "text");
	json_gen_str(g, "text");
	json_gen_strn(g, text, len);
	json_gen_str(g, "annotations");
	json_gen_null(g);
	json_gen_str(g, "description");
	json_gen_str(g, desc);
	yajl_gen_map_close(g);
}

/* Frees a pending request's record (not the evhttp request). */
static void
agent_req_free(struct agent_req *ar)
{
	if (ar == NULL)
		return;
	if (ar->evcon != NULL)
		evhttp_connection_set_closecb(ar->evcon, NULL, NULL);
	TAILQ_REMOVE(&agent.reqs, ar, entry);
	free(ar);
}

/* A command finished: answer with the CallToolResult of spec 6.4. */
static void
agent_on_shell_done(const struct shell_result *r, void *arg)
{
	struct agent_req *ar = arg;
	struct evhttp_request *req = ar->req;
	char rc[16];
	yajl_gen g;
	char *json;
	size_t len;

	agent_req_free(ar);
	snprintf(rc, sizeof rc, "%d", r->returncode);
	g = json_gen_new();
	yajl_gen_map_open(g);
	json_gen_str(g, "meta");
	json_gen_null(g);
	json_gen_str(g, "content");
	yajl_gen_array_open(g);
	agent_gen_item(g, r->out, r->out_len, "stdout");
	if (r->err_len > 0)
		agent_gen_item(g, r->err, r->err_len, "stderr");
	agent_gen_item(g, rc, strlen(rc), "returncode");
	yajl_gen_array_close(g);
	json_gen_str(g, "isError");
	json_gen_bool(g, r->err_len > 0);
	yajl_gen_map_close(g);
	json = json_gen_done(g, &len);
	agent_reply_json(req, 200, json, len);
}

/*
 * The connection of a request whose command runs is going away. The
 * command runs on (as upstream) and its answer is dropped. If evhttp
 * detached the request from the connection (a client EOF or timeout), the
 * request is ours to free; if the request is still on it, evhttp frees it
 * with the connection. (libevent 2.1 does not watch a connection while
 * its request is being handled, so a client that gives up is usually
 * noticed only when the answer cannot be written; both paths are safe.)
 */
static void
agent_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct agent_req *ar = arg;
	struct evhttp_request *req = ar->req;

	shell_cancel(ar->cmd);
	ar->evcon = NULL;
	agent_req_free(ar);
	if (evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

/* Reads the optional "timeout" member: 0 (none), seconds, or -1 if bad. */
static double
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
agent_run_shell(struct evhttp_request *req)
{
	struct agent_req *ar;
	const char *command;
	yajl_val body;
	double timeout;
	char *cause, *msg;

	if ((body = agent_body_object(req)) == NULL)
		return;
	if ((command = json_get_str(body, "command")) == NULL) {
		agent_reply_detail(req, 422,
		    "field 'command' is required and must be a string");
		goto out;
	}
	if ((timeout = agent_get_timeout(body)) < 0) {
		agent_reply_detail(req, 422,
		    "field 'timeout' must be a positive number of seconds");
		goto out;
	}
	ar = xcalloc(1, sizeof *ar);
	ar->req = req;
	ar->cmd = shell_run(command, timeout, agent_on_shell_done, ar, &cause);
	if (ar->cmd == NULL) {
		log_warnx("agent: cannot run a command: %s", cause);
		xasprintf(&msg, "cannot run the command: %s", cause);
		agent_reply_detail(req, 500, msg);
		free(msg);
		free(cause);
		free(ar);
		goto out;
	}
	TAILQ_INSERT_TAIL(&agent.reqs, ar, entry);
	ar->evcon = evhttp_request_get_connection(req);
	if (ar->evcon != NULL)
		evhttp_connection_set_closecb(ar->evcon, agent_on_close, ar);
out:
	yajl_tree_free(body);
}

/* Every request: authenticate, strip /fastapi, route. */
static void
agent_on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *path = NULL, *allow = NULL;
	size_t i;

	if (agent_auth(req) == -1)
		return;
	if (uri != NULL)
		path = evhttp_uri_get_path(uri);
	if (path == NULL || *path == '\0')
		path = "/";
	if (strncmp(path, "/fastapi/", 9) == 0)
		path += 8;
	for (i = 0; i < nitems(agent_routes); i++) {
		if (strcmp(path, agent_routes[i].path) != 0)
			continue;
		if (agent_routes[i].method == method) {
			agent_routes[i].cb(req);
			return;
		}
		allow = agent_routes[i].allow;
	}
	if (allow != NULL) {
		evhttp_add_header(
		    evhttp_request_get_output_headers(req), "Allow", allow);
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
	    evhttp_accept_socket_with_handle(agent.http, fd) == NULL) {
		log_warn("agent: socket %s: listen", path);
		close(fd);
		unlink(path);
		return -1;
	}
	log_info("agent: listening on %s", path);
	return 0;
}

/*
 * Listens on TCP 0.0.0.0:port. The socket is made here rather than by
 * evhttp_bind_socket(), which would go through getaddrinfo(3): a static
 * binary must not need the image's NSS libraries. 0 or -1.
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
	if (evhttp_accept_socket_with_handle(agent.http, fd) == NULL) {
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
}

/* Creates the HTTP server and its listeners; -1 if none listens. */
static int
agent_serve(void)
{
	int listening = 0;

	if ((agent.http = evhttp_new(agent.base)) == NULL)
		fatalx("agent: cannot create the HTTP server");
	evhttp_set_max_body_size(agent.http, AGENT_MAX_BODY);
	evhttp_set_max_headers_size(agent.http, AGENT_MAX_HEADERS);
	evhttp_set_timeout(agent.http, AGENT_IDLE_TIMEOUT);
	evhttp_set_default_content_type(agent.http, NULL);
	/* Let every method through, so that a wrong one gets our 405. */
	evhttp_set_allowed_methods(agent.http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(agent.http, agent_on_request, NULL);
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
	struct agent_req *ar;

	/* Requests still waiting get no answer; their commands are killed. */
	while ((ar = TAILQ_FIRST(&agent.reqs)) != NULL) {
		shell_cancel(ar->cmd);
		agent_req_free(ar);
	}
	shell_shutdown();
	if (agent.http != NULL)
		evhttp_free(agent.http);
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
	TAILQ_INIT(&agent.reqs);
	agent_configure();

	if ((agent.base = event_base_new()) == NULL)
		fatalx("agent: cannot create the event base");
	if (shell_init(agent.base, agent.workdir, agent.max_output) == -1)
		fatalx("agent: cannot set up child handling");
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
