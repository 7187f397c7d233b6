/*
 * test_hc: the HTTP client glue against two in-process evhttp servers on
 * the same event loop, one on 127.0.0.1 and one on a unix socket.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "hc.h"
#include "free_port.h"
#include "tap.h"

static struct event_base *base;
static int tcp_conns, unix_conns; /* connections the servers accepted */
static char sock_path[64];
static char url_base[64];
static struct evhttp_request *hung; /* the /hang request, never answered */

/* One test request's outcome. */
struct res {
	int done;     /* callbacks seen */
	int returned; /* hc_request had returned when called back */
	long status;
	char *body;
	size_t len;
	char *ctype;
	char *error;
	int timed_out;
	int no_connection;
	int *flag; /* for callbacks that check a flag */
};

/* Counts a new server connection and gives evhttp its bufferevent. */
static struct bufferevent *
srv_on_conn(struct event_base *b, void *arg)
{
	(*(int *)arg)++;
	return bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
}

/* Sends a chunked body of n bytes. */
static void
srv_send_chunked(struct evhttp_request *req, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	char chunk[4096];

	memset(chunk, 'c', sizeof chunk);
	evhttp_send_reply_start(req, 200, "OK");
	while (n > 0) {
		size_t k = n < sizeof chunk ? n : sizeof chunk;

		evbuffer_add(b, chunk, k);
		evhttp_send_reply_chunk(req, b);
		n -= k;
	}
	evhttp_send_reply_end(req);
	evbuffer_free(b);
}

/* A request answered later, forgotten if its connection closes first. */
struct slow {
	struct event *ev;
	struct evhttp_request *req;
};

/* Answers a delayed request. */
static void
srv_on_slow(evutil_socket_t fd, short what, void *arg)
{
	struct slow *s = arg;

	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(s->req), NULL, NULL);
	evhttp_send_reply(s->req, 200, "OK", NULL);
	event_free(s->ev);
	free(s);
}

/* The client closed a connection with a delayed request on it. */
static void
srv_on_slow_close(struct evhttp_connection *c, void *arg)
{
	struct slow *s = arg;

	event_free(s->ev);
	free(s);
}

/* The client closed the connection of the hung request. */
static void
srv_on_hang_close(struct evhttp_connection *c, void *arg)
{
	hung = NULL;
}

/* The test server: /echo, /status/N, /json, /big, /bigchunked, /hang... */
static void
srv_handle(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	const char *m;
	static const struct timeval slow = {0, 200000};

	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		m = "GET";
		break;
	case EVHTTP_REQ_POST:
		m = "POST";
		break;
	case EVHTTP_REQ_PUT:
		m = "PUT";
		break;
	case EVHTTP_REQ_DELETE:
		m = "DELETE";
		break;
	case EVHTTP_REQ_HEAD:
		m = "HEAD";
		break;
	default:
		m = "OTHER";
		break;
	}
	if (strncmp(uri, "/echo", 5) == 0) {
		const char *exp = evhttp_find_header(
		    evhttp_request_get_input_headers(req), "Expect");

		evbuffer_add_printf(out, "%s:%s:", m, exp ? exp : "-");
		evbuffer_add_buffer(out, in);
		evhttp_add_header(oh, "Content-Type", "text/plain");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strncmp(uri, "/status/", 8) == 0) {
		evbuffer_add_printf(out, "status %s", uri + 8);
		evhttp_send_reply(req, atoi(uri + 8), "X", out);
	} else if (strcmp(uri, "/json") == 0) {
		evbuffer_add_printf(out, "{\"a\":1}");
		evhttp_add_header(oh, "Content-Type", "application/json");
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/big") == 0) {
		char *big = malloc(1 << 20);

		memset(big, 'b', 1 << 20);
		evbuffer_add(out, big, 1 << 20);
		free(big);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/count") == 0) {
		const char *te = evhttp_find_header(
		    evhttp_request_get_input_headers(req), "Transfer-Encoding");
		size_t n = evbuffer_get_length(in), i, bad = 0;
		unsigned char *p = evbuffer_pullup(in, -1);

		/* The body must be the pattern stream_fill writes. */
		for (i = 0; i < n; i++)
			bad += p[i] != (unsigned char)(i % 251);
		evbuffer_add_printf(
		    out, "%s %zu %s %zu", m, n, te != NULL ? te : "-", bad);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/bigchunked") == 0) {
		srv_send_chunked(req, 1 << 20);
	} else if (strcmp(uri, "/hang") == 0) {
		hung = req;
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(req), srv_on_hang_close,
		    NULL);
	} else if (strcmp(uri, "/slow") == 0) {
		struct slow *s = malloc(sizeof *s);

		s->req = req;
		s->ev = evtimer_new(base, srv_on_slow, s);
		evtimer_add(s->ev, &slow);
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(req), srv_on_slow_close, s);
	} else
		evhttp_send_reply(req, 404, "Not Found", NULL);
	evbuffer_free(out);
}

/* Records a response. */
static void
on_done(const struct hc_resp *r, void *arg)
{
	struct res *x = arg;

	x->done++;
	x->status = r->status;
	free(x->body);
	x->body = malloc(r->len + 1);
	memcpy(x->body, r->body, r->len + 1);
	x->len = r->len;
	free(x->ctype);
	x->ctype = r->ctype ? strdup(r->ctype) : NULL;
	free(x->error);
	x->error = r->error ? strdup(r->error) : NULL;
	x->timed_out = r->timed_out;
	x->no_connection = r->no_connection;
	x->returned = x->flag != NULL ? *x->flag : -1;
}

/* Frees a result's copies. */
static void
res_clear(struct res *x)
{
	free(x->body);
	free(x->ctype);
	free(x->error);
	memset(x, 0, sizeof *x);
}

/* Sets *arg when the guard timer fires. */
static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Runs the loop until *n reaches want or ms pass. Returns 0 if reached. */
static int
run_until(const int *n, int want, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	int expired = 0;
	struct event *guard = evtimer_new(base, on_guard, &expired);

	evtimer_add(guard, &tv);
	while (*n < want && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	return *n >= want ? 0 : -1;
}

/* Runs the loop for ms. */
static void
run_for(int ms)
{
	int never = 0;

	run_until(&never, 1, ms);
}

/* Makes a URL on the TCP server. */
static const char *
url(const char *path)
{
	static char buf[256];

	snprintf(buf, sizeof buf, "%s%s", url_base, path);
	return buf;
}

static void
test_basic(struct hc *hc)
{
	struct hc_opts o;
	struct res x;
	int returned = 0;
	const char *hdrs[] = {"Content-Type: text/plain", "X-A: b", NULL};

	/* GET, and the callback comes from the loop. */
	memset(&x, 0, sizeof x);
	memset(&o, 0, sizeof o);
	o.method = "GET";
	o.url = url("/echo");
	o.timeout_ms = 2000;
	x.flag = &returned;
	hc_request(hc, &o, on_done, &x);
	returned = 1;
	ok(x.done == 0, "no callback from inside hc_request");
	is_int(hc_pending(hc), 1, "one request pending");
	ok(run_until(&x.done, 1, 2000) == 0, "GET completes");
	is_int(x.returned, 1, "called back after hc_request returned");
	is_int(x.status, 200, "GET status 200");
	is_str(x.body, "GET:-:", "GET body, no Expect header sent");
	is_str(x.ctype, "text/plain", "Content-Type captured");
	ok(x.error == NULL && !x.timed_out, "no error");
	is_int(hc_pending(hc), 0, "nothing pending");
	res_clear(&x);

	/* POST with a body holding a NUL byte. */
	o.method = "POST";
	o.headers = hdrs;
	o.body = "hello\0world";
	o.body_len = 11;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_int(x.status, 200, "POST status 200");
	is_int(x.len, 7 + 11, "POST body length");
	ok(x.len == 18 && memcmp(x.body, "POST:-:hello\0world", 18) == 0,
	    "POST body echoed, Expect empty");
	ok(x.body[x.len] == '\0', "body NUL-terminated");
	res_clear(&x);

	/* A body large enough for libcurl to want 100-continue. */
	{
		char *big = malloc(8192);

		memset(big, 'x', 8192);
		o.body = big;
		o.body_len = 8192;
		hc_request(hc, &o, on_done, &x);
		free(big);
		run_until(&x.done, 1, 2000);
		ok(x.len == 7 + 8192 && strncmp(x.body, "POST:-:xx", 9) == 0,
		    "8 KiB POST: no Expect, body copied at hc_request");
		res_clear(&x);
	}

	/* POST without a body, PUT with one, DELETE, HEAD. */
	o.headers = NULL;
	o.body = NULL;
	o.body_len = 0;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_str(x.body, "POST:-:", "empty POST");
	res_clear(&x);
	o.method = "PUT";
	o.body = "p";
	o.body_len = 1;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_str(x.body, "PUT:-:p", "PUT with a body");
	res_clear(&x);
	o.method = "DELETE";
	o.body = NULL;
	o.body_len = 0;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_str(x.body, "DELETE:-:", "DELETE");
	res_clear(&x);
	o.method = "HEAD";
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 200 && x.len == 0 && x.body[0] == '\0',
	    "HEAD: 200, empty body");
	res_clear(&x);

	/* Status codes and a JSON Content-Type. */
	o.method = "GET";
	o.url = url("/status/404");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 404 && x.error == NULL, "404 is a status, not an error");
	is_str(x.body, "status 404", "404 body");
	res_clear(&x);
	o.url = url("/status/500");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_int(x.status, 500, "500 status");
	res_clear(&x);
	o.url = url("/status/204");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 204 && x.len == 0, "204, empty body");
	res_clear(&x);
	o.url = url("/json");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	is_str(x.ctype, "application/json", "JSON Content-Type");
	is_str(x.body, "{\"a\":1}", "JSON body");
	res_clear(&x);
}

static void
test_keepalive(struct hc *hc)
{
	struct hc_opts o;
	struct res x;
	int i, before, good = 0;

	memset(&x, 0, sizeof x);
	memset(&o, 0, sizeof o);
	o.url = url("/echo");
	o.timeout_ms = 2000;
	before = tcp_conns;
	for (i = 0; i < 20; i++) {
		hc_request(hc, &o, on_done, &x);
		run_until(&x.done, i + 1, 2000);
		good += x.status == 200;
	}
	is_int(good, 20, "20 sequential GETs");
	ok(tcp_conns - before <= 1, "TCP keep-alive: %d new connection(s)",
	    tcp_conns - before);
	res_clear(&x);

	/* The same over the unix socket; the URL's host is ignored. */
	o.url = "http://ignored.invalid/echo";
	o.unix_path = sock_path;
	before = unix_conns;
	good = 0;
	for (i = 0; i < 20; i++) {
		hc_request(hc, &o, on_done, &x);
		run_until(&x.done, i + 1, 2000);
		good += x.status == 200 && strcmp(x.body, "GET:-:") == 0;
	}
	is_int(good, 20, "20 sequential GETs over the unix socket");
	is_int(unix_conns - before, 1, "unix keep-alive: one connection");
	res_clear(&x);
}

static void
test_limits(struct hc *hc)
{
	struct hc_opts o;
	struct res x;
	char path[160];

	memset(&x, 0, sizeof x);
	memset(&o, 0, sizeof o);
	o.timeout_ms = 2000;

	/* Response cap, with and without Content-Length. */
	o.url = url("/big");
	o.max_response = 1000;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 0 && x.error != NULL && strstr(x.error, "1000"),
	    "size cap (Content-Length): %s", x.error ? x.error : "-");
	ok(x.len == 0 && x.body[0] == '\0', "no body on error");
	res_clear(&x);
	o.url = url("/bigchunked");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 0 && x.error != NULL && strstr(x.error, "1000"),
	    "size cap (chunked): %s", x.error ? x.error : "-");
	res_clear(&x);
	o.max_response = 1 << 20;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 200 && x.len == 1 << 20, "exactly the cap passes");
	res_clear(&x);
	o.max_response = 0;
	o.url = url("/big");
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 200 && x.len == 1 << 20 && x.body[x.len] == '\0',
	    "1 MiB body under the default cap");
	res_clear(&x);

	/* A handler that never replies. */
	o.url = url("/hang");
	o.timeout_ms = 200;
	hc_request(hc, &o, on_done, &x);
	ok(run_until(&x.done, 1, 3000) == 0, "hung request calls back");
	ok(x.timed_out && x.status == 0 && x.error != NULL, "timed out: %s",
	    x.error ? x.error : "-");
	ok(!x.no_connection, "timed out: it had connected");
	res_clear(&x);

	/* Connection refused, on TCP and on a missing unix socket. */
	snprintf(path, sizeof path, "http://127.0.0.1:%d/", free_port());
	o.url = path;
	o.timeout_ms = 2000;
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 0 && x.error != NULL && !x.timed_out,
	    "connection refused: %s", x.error ? x.error : "-");
	ok(x.no_connection, "connection refused: no_connection");
	res_clear(&x);
	o.url = "http://x/";
	o.unix_path = "/nonexistent/sandpool-test.sock";
	hc_request(hc, &o, on_done, &x);
	run_until(&x.done, 1, 2000);
	ok(x.status == 0 && x.error != NULL, "missing unix socket: %s",
	    x.error ? x.error : "-");
	ok(x.no_connection, "missing unix socket: no_connection");
	res_clear(&x);

	/* A request that cannot start fails from the loop too. */
	o.url = NULL;
	hc_request(hc, &o, on_done, &x);
	ok(x.done == 0, "no URL: no callback from inside hc_request");
	run_until(&x.done, 1, 2000);
	ok(x.done == 1 && x.status == 0 && x.error != NULL,
	    "no URL: error from the loop");
	res_clear(&x);
}

/* Arguments of the re-entrant callbacks. */
struct reent {
	struct hc *hc;
	struct hc_req *victim;
	struct res *next;
	struct hc_opts *opts;
	int done;
};

/* Cancels another request and starts a new one from a callback. */
static void
on_reent(const struct hc_resp *r, void *arg)
{
	struct reent *re = arg;

	re->done++;
	hc_cancel(re->victim);
	hc_request(re->hc, re->opts, on_done, re->next);
}

/* Frees the whole client from a callback. */
static void
on_free_client(const struct hc_resp *r, void *arg)
{
	struct reent *re = arg;

	re->done++;
	hc_free(re->hc);
}

static void
test_cancel(struct hc *hc)
{
	struct hc_opts o;
	struct res x, y, z[3];
	struct reent re;
	struct hc_req *r;
	struct hc *hc2;
	int i;

	memset(&x, 0, sizeof x);
	memset(&y, 0, sizeof y);
	memset(z, 0, sizeof z);
	memset(&o, 0, sizeof o);
	o.timeout_ms = 2000;

	/* Cancel right away, and cancel a request that failed early. */
	o.url = url("/slow");
	r = hc_request(hc, &o, on_done, &x);
	hc_cancel(r);
	is_int(hc_pending(hc), 0, "cancelled: nothing pending");
	o.url = NULL;
	hc_cancel(hc_request(hc, &o, on_done, &x));
	run_for(400);
	is_int(x.done, 0, "cancelled requests never call back");

	/* A callback cancels another request and starts a new one. */
	memset(&re, 0, sizeof re);
	re.hc = hc;
	re.next = &y;
	re.opts = &o;
	o.url = url("/slow");
	re.victim = hc_request(hc, &o, on_done, &x);
	o.url = url("/echo");
	hc_request(hc, &o, on_reent, &re);
	run_until(&y.done, 1, 2000);
	run_for(400);
	ok(re.done == 1 && y.done == 1 && y.status == 200,
	    "request started from a callback completes");
	is_int(x.done, 0, "request cancelled from a callback never calls back");
	res_clear(&y);

	/* Two requests finishing in the same loop turn; the first cancels
	 * the second, whose completion may already be queued. */
	memset(&re, 0, sizeof re);
	re.hc = hc;
	re.next = &y;
	re.opts = &o;
	hc_request(hc, &o, on_reent, &re);
	re.victim = hc_request(hc, &o, on_done, &x);
	run_until(&y.done, 1, 2000);
	run_for(100);
	ok(re.done == 1 && x.done == 0 && y.done == 1,
	    "cancel of a request completing in the same turn");
	res_clear(&y);

	/* A callback frees the client with requests still in flight. */
	hc2 = hc_new(base, 2);
	memset(&re, 0, sizeof re);
	re.hc = hc2;
	hc_request(hc2, &o, on_free_client, &re);
	for (i = 0; i < 3; i++)
		hc_request(hc2, &o, on_done, &z[i]);
	o.url = url("/slow");
	hc_request(hc2, &o, on_done, &x);
	run_until(&re.done, 1, 2000);
	run_for(400);
	ok(re.done == 1 && x.done == 0,
	    "hc_free from a callback: no more "
	    "callbacks (%d %d %d)",
	    z[0].done, z[1].done, z[2].done);
	for (i = 0; i < 3; i++)
		res_clear(&z[i]);
	res_clear(&x);

	/* hc_free with requests in flight, outside any callback. */
	hc2 = hc_new(base, 2);
	hc_request(hc2, &o, on_done, &x);
	hc_request(hc2, &o, on_done, &x);
	run_for(20);
	hc_free(hc2);
	hc_free(NULL);
	run_for(300);
	is_int(x.done, 0, "hc_free cancels without callbacks");
	res_clear(&x);
}

static void
test_concurrent(void)
{
	struct hc *hc = hc_new(base, 4);
	struct hc_opts o;
	struct res x[50];
	char paths[50][128];
	int i, good = 0, total = 0, before = tcp_conns;

	memset(x, 0, sizeof x);
	memset(&o, 0, sizeof o);
	o.method = "POST";
	o.timeout_ms = 5000;
	for (i = 0; i < 50; i++) {
		snprintf(paths[i], sizeof paths[i], "%s/echo?%d", url_base, i);
		o.url = paths[i];
		o.body = paths[i];
		o.body_len = strlen(paths[i]);
		hc_request(hc, &o, on_done, &x[i]);
	}
	is_int(hc_pending(hc), 50, "50 in flight");
	for (i = 0; i < 50; i++) {
		char want[256];

		run_until(&x[i].done, 1, 5000);
		snprintf(want, sizeof want, "POST:-:%.127s", paths[i]);
		good += x[i].done == 1 && x[i].status == 200 &&
		    strcmp(x[i].body, want) == 0;
		total += x[i].done;
	}
	is_int(good, 50, "50 concurrent requests, right bodies");
	is_int(total, 50, "each called back once");
	ok(tcp_conns - before <= 4, "at most 4 connections (%d)",
	    tcp_conns - before);
	for (i = 0; i < 50; i++)
		res_clear(&x[i]);
	hc_free(hc);
}

/* What a streamed request saw. */
struct stream {
	struct hc_req *req;
	int heads, dones;
	long status, done_status;
	char *clen, *te; /* Content-Length, Transfer-Encoding of the head */
	size_t got;	 /* body bytes */
	size_t bad;	 /* body bytes not 'b' or 'c' */
	int data_before_head;
	int pause_every; /* pause on every n-th piece (0: never) */
	int pieces;
	int paused;
	int cancel_at; /* cancel inside on_data after this many bytes */
	size_t up_size, up_sent;
	int up_wait; /* read_body says "wait" every other call */
	int up_calls;
	char *body; /* done's body */
	struct event *kick;
};

/* Records the head of a streamed response. */
static void
st_on_head(const struct hc_head *h, void *arg)
{
	struct stream *st = arg;
	size_t i;

	st->heads++;
	st->status = h->status;
	for (i = 0; i < h->nheaders; i++) {
		if (strcasecmp(h->headers[i].name, "Content-Length") == 0)
			st->clen = strdup(h->headers[i].value);
		if (strcasecmp(h->headers[i].name, "Transfer-Encoding") == 0)
			st->te = strdup(h->headers[i].value);
	}
}

/* Resumes a paused stream from a timer. */
static void
st_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct stream *st = arg;

	st->paused = 0;
	hc_resume(st->req);
}

/* Counts body bytes; pauses now and then, resumed by a timer. */
static int
st_on_data(const char *data, size_t len, void *arg)
{
	struct stream *st = arg;
	static const struct timeval later = {0, 2000};
	size_t i;

	if (st->heads == 0)
		st->data_before_head = 1;
	st->pieces++;
	if (st->pause_every && st->pieces % st->pause_every == 0 &&
	    !st->paused) {
		st->paused = 1;
		evtimer_add(st->kick, &later);
		return HC_PAUSE;
	}
	for (i = 0; i < len; i++)
		st->bad += data[i] != 'b' && data[i] != 'c';
	st->got += len;
	if (st->cancel_at && st->got >= (size_t)st->cancel_at) {
		hc_cancel(st->req);
		st->req = NULL;
	}
	return 0;
}

/* The request body: bytes i % 251, with "nothing yet" now and then. */
static ssize_t
st_read_body(char *buf, size_t max, void *arg)
{
	struct stream *st = arg;
	static const struct timeval later = {0, 1000};
	size_t n = 0;

	if (st->up_wait && st->up_calls++ % 2 == 0 && !st->paused) {
		st->paused = 1;
		evtimer_add(st->kick, &later);
		return HC_BODY_WAIT;
	}
	while (n < max && n < 7000 && st->up_sent < st->up_size) {
		buf[n++] = (char)(st->up_sent % 251);
		st->up_sent++;
	}
	return (ssize_t)n;
}

/* The stream ended. */
static void
st_on_done(const struct hc_resp *r, void *arg)
{
	struct stream *st = arg;

	st->dones++;
	st->done_status = r->status;
	st->req = NULL;
	free(st->body);
	st->body = strndup(r->body, r->len);
}

/* Makes a stream record. */
static void
st_init(struct stream *st)
{
	memset(st, 0, sizeof *st);
	st->kick = evtimer_new(base, st_on_kick, st);
}

/* Frees a stream record's copies. */
static void
st_clear(struct stream *st)
{
	event_free(st->kick);
	free(st->clen);
	free(st->te);
	free(st->body);
	memset(st, 0, sizeof *st);
}

static void
test_stream(struct hc *hc)
{
	struct hc_opts o;
	struct stream st;
	char want[128];

	/* A 1 MiB body with a length, paused every third piece. */
	st_init(&st);
	memset(&o, 0, sizeof o);
	o.method = "GET";
	o.url = url("/big");
	o.on_head = st_on_head;
	o.on_data = st_on_data;
	o.stream_arg = &st;
	o.max_response = 1000; /* not a cap for streams */
	st.pause_every = 3;
	st.req = hc_request(hc, &o, st_on_done, &st);
	ok(run_until(&st.dones, 1, 5000) == 0, "streamed GET completes");
	is_int(st.heads, 1, "one head");
	is_int(st.status, 200, "head status 200");
	is_str(st.clen, "1048576", "head has Content-Length");
	ok(!st.data_before_head, "no data before the head");
	is_int(st.got, 1 << 20, "every byte delivered once across pauses");
	is_int(st.bad, 0, "bytes intact");
	ok(st.pieces > 3, "paused and resumed (%d pieces)", st.pieces);
	is_int(st.done_status, 200, "done status 200");
	is_str(st.body, "", "done has no body");
	st_clear(&st);

	/* A chunked body. */
	st_init(&st);
	o.url = url("/bigchunked");
	st.req = hc_request(hc, &o, st_on_done, &st);
	ok(run_until(&st.dones, 1, 5000) == 0,
	    "streamed chunked GET completes");
	ok(st.clen == NULL, "no Content-Length");
	is_str(st.te, "chunked", "Transfer-Encoding: chunked");
	is_int(st.got, 1 << 20, "chunked body complete");
	st_clear(&st);

	/* An error status still streams its head and body. */
	st_init(&st);
	o.url = url("/status/404");
	st.req = hc_request(hc, &o, st_on_done, &st);
	run_until(&st.dones, 1, 5000);
	is_int(st.status, 404, "head of a 404");
	is_int(st.got, 10, "its body ('status 404')");
	st_clear(&st);

	/* Upload of unknown size: sent chunked, with waits. */
	st_init(&st);
	memset(&o, 0, sizeof o);
	o.method = "POST";
	o.url = url("/count");
	o.on_head = st_on_head;
	o.on_data = st_on_data;
	o.read_body = st_read_body;
	o.body_size = -1;
	o.stream_arg = &st;
	st.up_size = 300000;
	st.up_wait = 1;
	st.req = hc_request(hc, &o, st_on_done, &st);
	ok(run_until(&st.dones, 1, 5000) == 0, "chunked upload completes");
	is_int(st.status, 200, "upload status");
	ok(st.up_calls > 4, "read_body waited and was resumed");
	snprintf(want, sizeof want, "POST %d chunked 0", 300000);
	is_int(st.got, strlen(want), "server saw the whole body, chunked");
	st_clear(&st);

	/* Upload of known size with PUT: Content-Length, no chunks. */
	st_init(&st);
	o.method = "PUT";
	o.body_size = 123457;
	st.up_size = 123457;
	st.req = hc_request(hc, &o, st_on_done, &st);
	ok(run_until(&st.dones, 1, 5000) == 0, "sized upload completes");
	is_int(st.got, strlen("PUT 123457 - 0"),
	    "server saw 123457 bytes, not chunked");
	st_clear(&st);

	/* Cancel from inside on_data: no done, nothing left behind. */
	st_init(&st);
	memset(&o, 0, sizeof o);
	o.method = "GET";
	o.url = url("/big");
	o.on_head = st_on_head;
	o.on_data = st_on_data;
	o.stream_arg = &st;
	st.cancel_at = 1;
	st.req = hc_request(hc, &o, st_on_done, &st);
	run_for(300);
	is_int(st.dones, 0, "cancelled inside on_data: no callback");
	ok(st.got < (1 << 20), "transfer stopped (%zu bytes)", st.got);
	is_int(hc_pending(hc), 0, "nothing pending after the cancel");
	st_clear(&st);

	/* on_data without on_head is refused through the callback. */
	st_init(&st);
	o.on_head = NULL;
	st.req = hc_request(hc, &o, st_on_done, &st);
	run_until(&st.dones, 1, 2000);
	is_int(st.dones, 1, "on_data without on_head fails once");
	is_int(st.done_status, 0, "with no status");
	st_clear(&st);
}

int
main(void)
{
	struct evhttp *tcp, *ux;
	struct evhttp_bound_socket *bs;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	struct sockaddr_un sun;
	socklen_t len = sizeof sin;
	struct hc *hc;
	int fd;

	/* The servers write to connections the client dropped on purpose. */
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	tcp = evhttp_new(base);
	evhttp_set_gencb(tcp, srv_handle, NULL);
	evhttp_set_bevcb(tcp, srv_on_conn, &tcp_conns);
	evhttp_set_allowed_methods(tcp,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
		EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
	if ((bs = evhttp_bind_socket_with_handle(tcp, "127.0.0.1", 0)) == NULL)
		tap_skip_all("cannot bind 127.0.0.1");
	getsockname(
	    evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
	snprintf(url_base, sizeof url_base, "http://127.0.0.1:%d",
	    ntohs(sin.sin_port));

	ux = evhttp_new(base);
	evhttp_set_gencb(ux, srv_handle, NULL);
	evhttp_set_bevcb(ux, srv_on_conn, &unix_conns);
	snprintf(sock_path, sizeof sock_path, "/tmp/sandpool-test-hc-%d.sock",
	    (int)getpid());
	unlink(sock_path);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(fd, 64) == -1)
		tap_skip_all("cannot listen on %s", sock_path);
	evutil_make_socket_nonblocking(fd);
	lev =
	    evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	evhttp_bind_listener(ux, lev);

	hc = hc_new(base, 4);
	test_basic(hc);
	test_keepalive(hc);
	test_limits(hc);
	test_cancel(hc);
	test_stream(hc);
	test_concurrent();
	hc_free(hc);

	if (hung != NULL)
		evhttp_send_reply(hung, 503, "Late", NULL);
	run_for(50);
	evhttp_free(ux);
	evhttp_free(tcp);
	unlink(sock_path);
	event_base_free(base);
	return tap_done();
}
