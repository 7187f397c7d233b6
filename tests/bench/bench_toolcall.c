/*
 * bench_toolcall: the latency of one trivial tool call three ways, in one
 * run, interleaved (each round runs the three in a rotating order):
 *
 *   manager  POST /call_tool {"identity", "tool_name":"run_shell_command",
 *            "arguments":{"command":"true"}} on a kept-alive connection to
 *            runtime-sandbox-server;
 *   agent    POST /fastapi/tools/run_shell_command {"command":"true"}
 *            straight to the sandbox's runtime, on a kept-alive connection
 *            to its unix socket (<SANDPOOL_RUN_DIR>/<session_id>/agent.sock)
 *            or, when that is not reachable, to its published port, with
 *            the runtime token from get_info;
 *   docker   docker exec through the Engine API on its unix socket:
 *            POST /containers/<id>/exec (Cmd /bin/sh -c true) and
 *            GET /exec/<id>/json on a kept-alive connection, and
 *            POST /exec/<id>/start {"Detach":false,"Tty":false} (not
 *            upgraded) on a fresh connection read to its close, as the
 *            daemon ends that stream by closing.
 *
 * It prints each way's median, p90, p99 and mean, and the ratios of the
 * medians. Every sample is one complete exchange timed in the client
 * (CLOCK_MONOTONIC), after a warm-up.
 *
 * How to run it (from the build tree; `make bench` builds it):
 *
 *   ./runtime-sandbox-server --config my.env &     # or any running server
 *   tests/bench/bench_toolcall --server http://127.0.0.1:8000 \
 *       [--token TOKEN] [--type base] [--identity NAME] [-n 200] \
 *       [--run-dir /run/sandpool] [--docker /var/run/docker.sock]
 *
 * Without --identity it creates a sandbox of --type (POST /create) and
 * releases it at the end. --run-dir must be the server's SANDPOOL_RUN_DIR
 * for the agent to be reached over its unix socket. The token defaults to
 * $BEARER_TOKEN. A private server on busybox sandboxes is started by
 * tests/bench/bench_toolcall.py.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

#define BENCH_WARMUP 10
#define BENCH_MAXBODY (16 * 1024 * 1024)

/* A blocking HTTP/1.1 connection, reopened when the peer closes it. */
struct conn {
	int fd;
	const char *unix_path; /* or host:port */
	char host[256];
	int port;
	char buf[65536];
	size_t off, len;
};

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "bench_toolcall: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* Seconds now, monotonic. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Opens the connection's socket. */
static void
conn_open(struct conn *c)
{
	struct sockaddr_un sun;
	struct addrinfo hints, *ai;
	char port[16];
	int one = 1;

	c->off = c->len = 0;
	if (c->unix_path != NULL) {
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (strlen(c->unix_path) >= sizeof sun.sun_path)
			die("socket path too long: %s", c->unix_path);
		strcpy(sun.sun_path, c->unix_path);
		c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c->fd, (struct sockaddr *)&sun, sizeof sun) == -1)
			die("connect %s: %s", c->unix_path, strerror(errno));
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%d", c->port);
	if (getaddrinfo(c->host, port, &hints, &ai) != 0)
		die("cannot resolve %s", c->host);
	c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == -1)
		die("connect %s:%d: %s", c->host, c->port, strerror(errno));
	freeaddrinfo(ai);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Closes the connection's socket. */
static void
conn_close(struct conn *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
}

/* Reads more into the buffer; 0 at EOF. */
static ssize_t
conn_fill(struct conn *c)
{
	ssize_t n;

	if (c->off == c->len)
		c->off = c->len = 0;
	if (c->len == sizeof c->buf) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	do
		n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
	while (n == -1 && errno == EINTR);
	if (n < 0)
		die("read: %s", strerror(errno));
	c->len += (size_t)n;
	return n;
}

/* A line (CRLF stripped) into out. */
static void
conn_line(struct conn *c, char *out, size_t cap)
{
	char *nl;
	size_t n;

	while ((nl = memchr(c->buf + c->off, '\n', c->len - c->off)) == NULL)
		if (conn_fill(c) == 0)
			die("connection closed in a header");
	n = (size_t)(nl - (c->buf + c->off));
	if (n > 0 && nl[-1] == '\r')
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, c->buf + c->off, n);
	out[n] = '\0';
	c->off = (size_t)(nl - c->buf) + 1;
}

/* Appends up to n body bytes (or to EOF when n is -1). */
static void
conn_body(struct conn *c, long long n, char **body, size_t *len)
{
	size_t k;

	while (n != 0) {
		if (c->off == c->len && conn_fill(c) == 0) {
			if (n < 0)
				return;
			die("connection closed in a body");
		}
		k = c->len - c->off;
		if (n >= 0 && (long long)k > n)
			k = (size_t)n;
		if (*len + k > BENCH_MAXBODY)
			die("response too large");
		*body = realloc(*body, *len + k + 1);
		memcpy(*body + *len, c->buf + c->off, k);
		*len += k;
		(*body)[*len] = '\0';
		c->off += k;
		if (n > 0)
			n -= (long long)k;
	}
}

/*
 * One exchange: returns the status; the body (caller frees) in *body.
 * With to_close the response is read until the peer closes.
 */
static int
http(struct conn *c, const char *method, const char *path, const char *extra,
    const char *body, int to_close, char **out)
{
	char req[8192], line[8192];
	long long cl = -1, n;
	int status, chunked = 0, closes = to_close;
	size_t len = 0, blen = body != NULL ? strlen(body) : 0;

	if (c->fd == -1)
		conn_open(c);
	snprintf(req, sizeof req,
	    "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s"
	    "Content-Length: %zu\r\n\r\n",
	    method, path, c->unix_path != NULL ? "localhost" : c->host,
	    extra != NULL ? extra : "",
	    body != NULL ? "Content-Type: application/json\r\n" : "", blen);
	if (write(c->fd, req, strlen(req)) != (ssize_t)strlen(req) ||
	    (blen > 0 && write(c->fd, body, blen) != (ssize_t)blen))
		die("write: %s", strerror(errno));
	*out = calloc(1, 1);
	do {
		conn_line(c, line, sizeof line);
		status = atoi(line + 9);
		for (;;) {
			conn_line(c, line, sizeof line);
			if (line[0] == '\0')
				break;
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				cl = atoll(line + 15);
			else if (strncasecmp(line, "Transfer-Encoding:", 18) ==
				0 &&
			    strstr(line, "chunked") != NULL)
				chunked = 1;
			else if (strncasecmp(line, "Connection:", 11) == 0 &&
			    strcasestr(line, "close") != NULL)
				closes = 1;
		}
	} while (status == 100);
	if (chunked) {
		for (;;) {
			conn_line(c, line, sizeof line);
			if ((n = strtoll(line, NULL, 16)) == 0)
				break;
			conn_body(c, n, out, &len);
			conn_line(c, line, sizeof line);
		}
		conn_line(c, line, sizeof line);
	} else if (cl >= 0)
		conn_body(c, cl, out, &len);
	else if (to_close)
		conn_body(c, -1, out, &len);
	if (closes)
		conn_close(c);
	return status;
}

/* Parses a URL "http://host[:port]" into c. */
static void
conn_url(struct conn *c, const char *url)
{
	const char *h = url, *colon;

	memset(c, 0, sizeof *c);
	c->fd = -1;
	c->port = 80;
	if (strncmp(h, "http://", 7) == 0)
		h += 7;
	snprintf(c->host, sizeof c->host, "%.*s", (int)strcspn(h, ":/"), h);
	if ((colon = strchr(h, ':')) != NULL)
		c->port = atoi(colon + 1);
}

/* An RPC to the manager: returns its data member's tree (caller frees). */
static yajl_val
rpc(struct conn *m, const char *auth, const char *method, const char *body,
    yajl_val *tree)
{
	char path[256], *out, *err;
	int st;

	snprintf(path, sizeof path, "/%s", method);
	st = http(m, "POST", path, auth, body, 0, &out);
	if (st != 200 || (*tree = json_parse(out, strlen(out), &err)) == NULL)
		die("%s: HTTP %d: %s", method, st, out);
	free(out);
	return json_get(*tree, "data");
}

/* A copy of s, which must be there. */
static char *
need(const char *s, const char *what)
{
	if (s == NULL)
		die("no %s in the reply", what);
	return strdup(s);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The p-th percentile (nearest rank) of sorted xs. */
static double
pct(const double *xs, int n, double p)
{
	int i = (int)lround(p / 100.0 * (n - 1));

	return xs[i < 0 ? 0 : i >= n ? n - 1 : i];
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"token", required_argument, NULL, 't'},
	    {"type", required_argument, NULL, 'y'},
	    {"identity", required_argument, NULL, 'i'},
	    {"run-dir", required_argument, NULL, 'r'},
	    {"docker", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
	const char *server = "http://127.0.0.1:8000", *token = NULL;
	const char *type = "base", *identity = NULL, *run_dir = NULL;
	const char *docker = "/var/run/docker.sock", *names[3];
	char auth[512], rauth[512], body[1024], path[512], sock[600];
	char *name, *sid, *cid, *rtok, *url, *out, *execid, *err;
	struct conn m, a, d, ds;
	yajl_val tree, data, info, t2;
	double *lat[3], t0, med[3];
	int n = 200, i, k, w, opt, st, created = 0;
	struct stat sb;

	if ((token = getenv("BEARER_TOKEN")) != NULL && *token == '\0')
		token = NULL;
	while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			server = optarg;
			break;
		case 't':
			token = optarg;
			break;
		case 'y':
			type = optarg;
			break;
		case 'i':
			identity = optarg;
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 'd':
			docker = optarg;
			break;
		case 'n':
			n = atoi(optarg);
			break;
		default:
			fprintf(stderr,
			    "usage: bench_toolcall [--server URL] [--token T] "
			    "[--type TYPE] [--identity NAME] [-n N] "
			    "[--run-dir DIR] [--docker SOCKET]\n");
			return 2;
		}
	}
	if (n < 2)
		die("-n must be at least 2");
	auth[0] = '\0';
	if (token != NULL)
		snprintf(
		    auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
	conn_url(&m, server);

	/* The sandbox. */
	if (identity == NULL) {
		snprintf(body, sizeof body, "{\"sandbox_type\":\"%s\"}", type);
		data = rpc(&m, auth, "create", body, &tree);
		if (!YAJL_IS_STRING(data))
			die("create returned no sandbox");
		name = need(YAJL_GET_STRING(data), "sandbox name");
		yajl_tree_free(tree);
		created = 1;
	} else
		name = strdup(identity);
	snprintf(body, sizeof body, "{\"identity\":\"%s\"}", name);
	info = rpc(&m, auth, "get_info", body, &tree);
	sid = need(json_get_str(info, "session_id"), "session_id");
	cid = need(json_get_str(info, "container_id"), "container_id");
	rtok = need(json_get_str(info, "runtime_token"), "runtime_token");
	url =
	    strdup(json_get_str(info, "url") ? json_get_str(info, "url") : "");
	yajl_tree_free(tree);

	/* The agent: its unix socket if we can reach it, else its port. */
	memset(&a, 0, sizeof a);
	a.fd = -1;
	sock[0] = '\0';
	if (run_dir != NULL)
		snprintf(sock, sizeof sock, "%s/%s/agent.sock", run_dir, sid);
	if (sock[0] != '\0' && stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode))
		a.unix_path = sock;
	else if (*url != '\0')
		conn_url(&a, url);
	else
		die("no way to the agent: give --run-dir (no published port)");
	snprintf(rauth, sizeof rauth, "Authorization: Bearer %s\r\n", rtok);

	memset(&d, 0, sizeof d);
	d.fd = -1;
	d.unix_path = docker;
	ds = d;

	for (k = 0; k < 3; k++)
		lat[k] = calloc((size_t)n, sizeof(double));
	names[0] = "manager call_tool";
	names[1] = "agent direct";
	names[2] = "docker exec (Engine API)";
	snprintf(body, sizeof body,
	    "{\"identity\":\"%s\",\"tool_name\":\"run_shell_command\","
	    "\"arguments\":{\"command\":\"true\"}}",
	    name);
	for (i = -BENCH_WARMUP; i < n; i++) {
		for (w = 0; w < 3; w++) {
			k = (i + w + 3 * BENCH_WARMUP) % 3;
			t0 = now();
			switch (k) {
			case 0:
				st = http(&m, "POST", "/call_tool", auth, body,
				    0, &out);
				if (st != 200 ||
				    strstr(out, "\"isError\":false") == NULL)
					die("call_tool: %d %s", st, out);
				break;
			case 1:
				st = http(&a, "POST",
				    "/fastapi/tools/run_shell_command", rauth,
				    "{\"command\":\"true\"}", 0, &out);
				if (st != 200)
					die("agent: %d %s", st, out);
				break;
			default:
				snprintf(path, sizeof path,
				    "/v1.41/containers/%s/exec", cid);
				st = http(&d, "POST", path, NULL,
				    "{\"AttachStdout\":true,\"AttachStderr\":"
				    "true,\"Tty\":false,\"Cmd\":[\"/bin/sh\","
				    "\"-c\",\"true\"]}",
				    0, &out);
				if (st != 201 ||
				    (t2 = json_parse(out, strlen(out), &err)) ==
					NULL)
					die("exec create: %d %s", st, out);
				execid =
				    need(json_get_str(t2, "Id"), "exec Id");
				yajl_tree_free(t2);
				free(out);
				snprintf(path, sizeof path,
				    "/v1.41/exec/%s/start", execid);
				st = http(&ds, "POST", path, NULL,
				    "{\"Detach\":false,\"Tty\":false}", 1,
				    &out);
				if (st != 200)
					die("exec start: %d %s", st, out);
				free(out);
				snprintf(path, sizeof path,
				    "/v1.41/exec/%s/json", execid);
				st = http(&d, "GET", path, NULL, NULL, 0, &out);
				if (st != 200)
					die("exec inspect: %d %s", st, out);
				free(execid);
				break;
			}
			free(out);
			if (i >= 0)
				lat[k][i] = (now() - t0) * 1000.0;
		}
	}

	printf("tool call run_shell_command \"true\" into %s, n=%d each, "
	       "interleaved (agent over %s)\n",
	    name, n, a.unix_path != NULL ? "its unix socket" : url);
	for (k = 0; k < 3; k++) {
		double sum = 0;

		for (i = 0; i < n; i++)
			sum += lat[k][i];
		qsort(lat[k], (size_t)n, sizeof(double), cmp_double);
		med[k] = pct(lat[k], n, 50);
		printf("  %-26s median %8.3f ms  p90 %8.3f ms  p99 %8.3f ms  "
		       "mean %8.3f ms\n",
		    names[k], med[k], pct(lat[k], n, 90), pct(lat[k], n, 99),
		    sum / n);
	}
	printf("  ratios of medians: manager/agent %.2f, docker/manager %.2f, "
	       "docker/agent %.2f\n",
	    med[0] / med[1], med[2] / med[0], med[2] / med[1]);

	if (created) {
		snprintf(body, sizeof body, "{\"identity\":\"%s\"}", name);
		rpc(&m, auth, "release", body, &tree);
		yajl_tree_free(tree);
	}
	conn_close(&m);
	conn_close(&a);
	conn_close(&d);
	for (k = 0; k < 3; k++)
		free(lat[k]);
	free(name);
	free(sid);
	free(cid);
	free(rtok);
	free(url);
	return 0;
}
