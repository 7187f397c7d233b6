/*
 * fuzz_agent_http: sandpool-agent's HTTP/1.1 server (src/agent/ahttp.c)
 * reading one connection's bytes: request heads, Content-Length and
 * chunked bodies (buffered and streamed), pipelining, Expect. Each input
 * is written into one end of a socket pair whose other end the server
 * serves; the loop runs until the server closes the connection. Properties:
 * no crash, no leak, no hang, and the connection always ends.
 */
#include "../../src/agent/ahttp.c"

#include <stdint.h>
#include <signal.h>
#include <sys/socket.h>

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct event_base *fuzz_base;
static struct ahttp *fuzz_srv;
static size_t fuzz_streamed;

/* A buffered body arrived: answer with its length. */
static void
fuzz_on_body(struct ahttp_req *req, int error, void *arg)
{
	char buf[32];
	size_t len;

	(void)arg;
	if (error != 0)
		return;
	ahttp_req_body(req, &len);
	snprintf(buf, sizeof buf, "%zu", len);
	ahttp_reply(req, 200, "text/plain", buf, strlen(buf));
}

/* A streamed piece. */
static int
fuzz_on_data(struct ahttp_req *req, const char *p, size_t n, void *arg)
{
	(void)req;
	(void)p;
	(void)arg;
	fuzz_streamed += n;
	return n > 0 && p[0] == '!' ? -1 : 0;
}

/* A streamed body ended: answer with a chunked reply. */
static void
fuzz_on_end(struct ahttp_req *req, int error, void *arg)
{
	(void)arg;
	if (error != 0)
		return;
	ahttp_reply_start(req, 200, "text/plain", -1);
	ahttp_reply_add(req, "a", 1);
	ahttp_reply_add(req, "b", 1);
	ahttp_reply_end(req);
}

/* A request head: route by the path's first letter. */
static void
fuzz_on_req(struct ahttp_req *req, void *arg)
{
	const char *path = ahttp_req_path(req);

	(void)arg;
	(void)ahttp_req_query(req);
	(void)ahttp_req_header(req, "authorization");
	if (path != NULL && strncmp(path, "/s", 2) == 0 &&
	    ahttp_req_has_body(req))
		ahttp_req_stream_body(req, fuzz_on_data, fuzz_on_end, NULL);
	else if (ahttp_req_has_body(req))
		ahttp_req_read_body(req, 4096, fuzz_on_body, NULL);
	else {
		ahttp_reply_header(req, "X-Fuzz", "1");
		ahttp_reply(req, 204, NULL, NULL, 0);
	}
}

/* One loop and one server for every input. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_agent_http", LOG_LEVEL_CRIT);
	signal(SIGPIPE, SIG_IGN);
	fuzz_base = event_base_new();
	fuzz_srv = ahttp_new(fuzz_base, fuzz_on_req, NULL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char sink[65536];
	int sv[2], rounds;

	if (size > 32768)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		abort();
	ahttp_on_accept(NULL, sv[0], NULL, 0, fuzz_srv);
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR);
	/* The peer's EOF must end the connection within a few turns. */
	for (rounds = 0; fuzz_srv->nconns > 0 && rounds < 10000; rounds++) {
		event_base_loop(fuzz_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		while (read(sv[1], sink, sizeof sink) > 0)
			;
	}
	if (fuzz_srv->nconns > 0)
		abort(); /* a connection that never ends is a bug */
	close(sv[1]);
	return 0;
}
