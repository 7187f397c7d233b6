/*
 * test_http: the HTTP server glue and its stream intake, over real
 * sockets. The parent runs the server (ordinary requests through evhttp,
 * /proxy/ requests as streams); a forked child is the client, speaking
 * raw HTTP/1.x with blocking sockets, and reports each check back through
 * a pipe so that the parent prints one TAP stream.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "http.h"
#include "free_port.h"
#include "tap.h"

static struct event_base *base;
static int port;
static int port2;	/* a server with a one second timeout */
static int port3;	/* one with a 1 s request deadline, 3 connections */
static int closes;	/* streams that got on_close */
static int streams;	/* streams started */
static size_t max_hold; /* most request body a sink had to take at once */

/* ------------------------------------------------------------------ */
/* The server side. */

/* Ordinary requests: "/echo" answers "<method> <body length> <body>". */
static void
srv_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	const char *body = http_body(req, &len);
	const char *m;

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
	default:
		m = "OTHER";
		break;
	}
	evbuffer_add_printf(
	    out, "%s %s %zu ", m, evhttp_request_get_uri(req), len);
	evbuffer_add(out, body, len > 32 ? 32 : len);
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* A stream handler's state. */
struct sh {
	struct http_stream *st;
	int kind;
	size_t n, sum;	  /* sink: bytes and byte sum so far */
	size_t left, off; /* source: bytes still to send */
	int lazy;	  /* sink: read one piece per timer tick */
	struct event *tick;
};

enum { SH_SINK, SH_SOURCE, SH_SOURCE_CL, SH_EARLY, SH_HOLD, SH_LATER };

/* Frees a handler. */
static void
sh_free(struct sh *s)
{
	if (s->tick != NULL)
		event_free(s->tick);
	free(s);
}

/* Answers a sink: {"n":..,"sum":..}. */
static void
sh_sink_reply(struct sh *s)
{
	char body[128];
	int len;

	len = snprintf(
	    body, sizeof body, "{\"n\":%zu,\"sum\":%zu}", s->n, s->sum);
	http_stream_reply_json(s->st, 200, NULL, 0, body, (size_t)len);
	sh_free(s);
}

/* Reads what the sink can; replies at the end of the body. */
static void
sh_sink_pump(struct sh *s)
{
	static const struct timeval tick = {0, 1000};
	char buf[65536];
	ssize_t n;
	size_t i;

	for (;;) {
		n = http_stream_read(s->st, buf, sizeof buf);
		if (n == HTTP_STREAM_WAIT)
			return;
		if (n == HTTP_STREAM_BAD) {
			http_stream_reply_json(s->st, 400, NULL, 0,
			    "{\"detail\":\"bad body\"}", 21);
			sh_free(s);
			return;
		}
		if (n == 0) {
			sh_sink_reply(s);
			return;
		}
		if ((size_t)n > max_hold)
			max_hold = (size_t)n;
		for (i = 0; i < (size_t)n; i++)
			s->sum += (unsigned char)buf[i];
		s->n += (size_t)n;
		if (s->lazy) {
			evtimer_add(s->tick, &tick);
			return;
		}
	}
}

/* Sends what the source can; waits for on_drain when the output is full. */
static void
sh_source_pump(struct sh *s)
{
	char buf[16384];
	size_t k, i;

	while (s->left > 0) {
		k = s->left < sizeof buf ? s->left : sizeof buf;
		for (i = 0; i < k; i++)
			buf[i] = (char)('a' + (s->off + i) % 26);
		s->off += k;
		s->left -= k;
		if (http_stream_reply_data(s->st, buf, k))
			return;
	}
	http_stream_reply_end(s->st);
	sh_free(s);
}

/* on_body. */
static void
sh_on_body(void *arg)
{
	sh_sink_pump(arg);
}

/* The lazy sink's timer; the late answer's. */
static void
sh_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sh *s = arg;

	if (s->kind == SH_LATER) {
		http_stream_reply_json(s->st, 200, NULL, 0, "\"late\"", 6);
		sh_free(s);
		return;
	}
	sh_sink_pump(s);
}

/* on_drain. */
static void
sh_on_drain(void *arg)
{
	struct sh *s = arg;

	if (s->kind == SH_SOURCE || s->kind == SH_SOURCE_CL)
		sh_source_pump(s);
}

/* on_close: the client went away. */
static void
sh_on_close(void *arg)
{
	closes++;
	sh_free(arg);
}

/* Streams: /proxy/sink, /proxy/lazysink, /proxy/source?n=N, ... */
static void
srv_stream(struct http_stream *st, void *arg)
{
	static const struct http_stream_cbs cbs = {
	    sh_on_body, sh_on_drain, sh_on_close};
	const char *t = http_stream_target(st), *q;
	struct http_header h = {"X-Method", http_stream_method(st)};
	struct sh *s = calloc(1, sizeof *s);
	long long n;

	streams++;
	s->st = st;
	s->tick = evtimer_new(base, sh_on_tick, s);
	http_stream_set_cbs(st, &cbs, s);
	if (strncmp(t, "/proxy/sink", 11) == 0 ||
	    strncmp(t, "/proxy/lazysink", 15) == 0) {
		s->kind = SH_SINK;
		s->lazy = t[7] == 'l';
		sh_sink_pump(s);
	} else if (strncmp(t, "/proxy/source", 13) == 0) {
		q = strstr(t, "n=");
		n = q != NULL ? atoll(q + 2) : 0;
		s->kind = strncmp(t, "/proxy/source-cl", 16) == 0 ? SH_SOURCE_CL
								  : SH_SOURCE;
		s->left = (size_t)n;
		http_stream_reply_start(
		    st, 200, &h, 1, s->kind == SH_SOURCE_CL ? n : -1);
		sh_source_pump(s);
	} else if (strncmp(t, "/proxy/early", 12) == 0) {
		http_stream_reply_json(
		    st, 404, &h, 1, "{\"detail\":\"no\"}", 15);
		sh_free(s);
	} else if (strncmp(t, "/proxy/later", 12) == 0) {
		struct timeval later = {1, 600000};

		/* Answered after the server's timeout (or ?ms=). */
		if ((q = strstr(t, "ms=")) != NULL) {
			later.tv_sec = atoi(q + 3) / 1000;
			later.tv_usec = atoi(q + 3) % 1000 * 1000;
		}
		s->kind = SH_LATER;
		evtimer_add(s->tick, &later);
	} else if (strncmp(t, "/proxy/hold", 11) == 0) {
		s->kind = SH_HOLD; /* never answered: the client leaves */
	} else {
		http_stream_reply_json(st, 404, NULL, 0, "{}", 2);
		sh_free(s);
	}
}

/* ------------------------------------------------------------------ */
/* The client side (the child). */

static int report_fd;

/* Reports one check to the parent. */
static void __attribute__((format(printf, 2, 3)))
cok(int cond, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof line, "%c", cond ? '1' : '0');
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(report_fd, line, (size_t)n) != n)
		_exit(3);
}

/* A blocking connection to the server on port p. */
static int
cconnect_to(int p)
{
	struct sockaddr_in sin;
	struct timeval tv = {20, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)p);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == -1)
		_exit(4);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

/* A blocking connection to the main server. */
static int
cconnect(void)
{
	return cconnect_to(port);
}

/* Writes everything. */
static int
csend(int fd, const void *p, size_t n)
{
	const char *b = p;
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, b, n)) <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes a string. */
static int
csends(int fd, const char *s)
{
	return csend(fd, s, strlen(s));
}

/* Buffered reads from one connection. */
struct rd {
	int fd;
	char buf[65536];
	size_t off, len;
	int eof;
};

/* Makes sure at least one byte is buffered; -1 at EOF. */
static int
rd_fill(struct rd *r)
{
	ssize_t n;

	if (r->off < r->len)
		return 0;
	r->off = r->len = 0;
	if ((n = read(r->fd, r->buf, sizeof r->buf)) <= 0) {
		r->eof = 1;
		return -1;
	}
	r->len = (size_t)n;
	return 0;
}

/* Reads a line (without CRLF) into out; -1 at EOF. */
static int
rd_line(struct rd *r, char *out, size_t cap)
{
	size_t n = 0;
	char c;

	for (;;) {
		if (rd_fill(r) != 0)
			return -1;
		c = r->buf[r->off++];
		if (c == '\n')
			break;
		if (n + 1 < cap)
			out[n++] = c;
	}
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 0;
}

/* Reads n bytes into out (if not NULL); returns how many came. */
static size_t
rd_bytes(struct rd *r, char *out, size_t n, size_t *sum)
{
	size_t got = 0, k;

	while (got < n && rd_fill(r) == 0) {
		k = r->len - r->off;
		if (k > n - got)
			k = n - got;
		if (out != NULL)
			memcpy(out + got, r->buf + r->off, k);
		if (sum != NULL) {
			size_t i;

			for (i = 0; i < k; i++)
				*sum += (unsigned char)r->buf[r->off + i];
		}
		r->off += k;
		got += k;
	}
	return got;
}

/* A response as the client read it. */
struct resp {
	int status;
	char first[128];
	char hdrs[4096];
	char body[4096]; /* its start */
	size_t len;	 /* its length */
	int chunked, close;
	int pattern_ok; /* the body is the sources' a..z pattern */
};

/* Reads one response; 0 or -1. */
static int
rd_resp(struct rd *r, struct resp *x)
{
	char line[1024], chunk[65536];
	long long cl = -1;
	size_t n, k, i, take;

	memset(x, 0, sizeof *x);
	x->pattern_ok = 1;
	do {
		if (rd_line(r, x->first, sizeof x->first) != 0)
			return -1;
		x->status = atoi(x->first + 9);
		x->hdrs[0] = '\0';
		for (;;) {
			if (rd_line(r, line, sizeof line) != 0)
				return -1;
			if (line[0] == '\0')
				break;
			if (strlen(x->hdrs) + strlen(line) + 2 <
			    sizeof x->hdrs) {
				strcat(x->hdrs, line);
				strcat(x->hdrs, "\n");
			}
			if (strncasecmp(line, "Content-Length:", 15) == 0)
				cl = atoll(line + 15);
			if (strncasecmp(
				line, "Transfer-Encoding: chunked", 26) == 0)
				x->chunked = 1;
			if (strncasecmp(line, "Connection: close", 17) == 0)
				x->close = 1;
		}
	} while (x->status == 100);
	for (;;) {
		if (x->chunked) {
			if (rd_line(r, line, sizeof line) != 0)
				return -1;
			n = strtoul(line, NULL, 16);
			if (n == 0) {
				rd_line(r, line, sizeof line);
				break;
			}
		} else if (cl >= 0)
			n = (size_t)cl;
		else
			n = (size_t)-1; /* until close */
		while (n > 0) {
			take = n < sizeof chunk ? n : sizeof chunk;
			k = rd_bytes(r, chunk, take, NULL);
			for (i = 0; i < k; i++)
				if (chunk[i] != (char)('a' + (x->len + i) % 26))
					x->pattern_ok = 0;
			if (x->len < sizeof x->body - 1)
				memcpy(x->body + x->len, chunk,
				    k < sizeof x->body - 1 - x->len
					? k
					: sizeof x->body - 1 - x->len);
			x->len += k;
			if (k < take)
				break;
			if (n != (size_t)-1)
				n -= k;
		}
		if (x->chunked)
			rd_line(r, line, sizeof line);
		else
			break;
	}
	x->body[x->len < sizeof x->body ? x->len : sizeof x->body - 1] = '\0';
	return 0;
}

/* One request with a body, one response, on connection r. */
static int
exchange(struct rd *r, const char *head, const char *body, size_t blen,
    struct resp *x)
{
	if (csend(r->fd, head, strlen(head)) != 0 ||
	    (blen > 0 && csend(r->fd, body, blen) != 0))
		return -1;
	return rd_resp(r, x);
}

/* Seconds since an arbitrary start (monotonic). */
static double
cnow(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sets a connection's read timeout in ms. */
static void
crcvtimeo(int fd, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* Sends n bytes of the pattern i % 251; adds them to *sum. */
static void
send_pattern(int fd, size_t n, size_t *sum, int chunked)
{
	char buf[50000], hex[32];
	size_t i, k, off = 0;

	while (off < n) {
		k = n - off < sizeof buf ? n - off : sizeof buf;
		for (i = 0; i < k; i++) {
			buf[i] = (char)((off + i) % 251);
			*sum += (unsigned char)buf[i];
		}
		if (chunked) {
			snprintf(hex, sizeof hex, "%zx\r\n", k);
			csend(fd, hex, strlen(hex));
		}
		csend(fd, buf, k);
		if (chunked)
			csend(fd, "\r\n", 2);
		off += k;
	}
}

/*
 * The limits on streams (server 3: a 1 s request deadline, 3 connections,
 * a 30 s idle timeout): a stream's head is under the deadline, its body
 * and its reply are not, a body left unread after an early reply is, and
 * streams count against the connection cap.
 */
static void
limits(void)
{
	struct rd r, q;
	struct resp x;
	char head[512], want[128];
	int hold[3], k;
	size_t sum;
	double t0;

	/* A stream's head sent too slowly: 408, closed. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect_to(port3);
	t0 = cnow();
	csends(r.fd, "PUT /proxy/sink HTTP/1.1\r\n");
	usleep(500000);
	csends(r.fd, "X: y\r\n");
	rd_resp(&r, &x);
	cok(x.status == 408 && cnow() - t0 < 3.5,
	    "a stream's head sent slowly: 408 at the deadline "
	    "(%d after %.1f s)",
	    x.status, cnow() - t0);
	cok(rd_fill(&r) == -1, "and the connection is closed");
	close(r.fd);

	/* A reply later than the deadline is not cut; the connection then
	 * waits for its next request under the deadline again. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect_to(port3);
	t0 = cnow();
	exchange(&r, "GET /proxy/later?ms=2600 HTTP/1.1\r\nHost: x\r\n\r\n",
	    NULL, 0, &x);
	cok(x.status == 200 && strcmp(x.body, "\"late\"") == 0,
	    "a stream answered after 2.6 s is not cut by a 1 s deadline "
	    "(%d %s)",
	    x.status, x.body);
	sum = 0;
	snprintf(head, sizeof head,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
	    "\r\n",
	    5 * 1000);
	csends(r.fd, head);
	for (k = 0; k < 5; k++) {
		usleep(600000);
		send_pattern(r.fd, 1000, &sum, 0);
	}
	rd_resp(&r, &x);
	snprintf(want, sizeof want, "{\"n\":5000,\"sum\":%zu}", sum);
	cok(x.status == 200 && strcmp(x.body, want) == 0,
	    "a streamed body sent over 3 s is read whole (%s)", x.body);
	t0 = cnow();
	csends(r.fd, "GET /echo HTTP/1.1\r\n");
	rd_resp(&r, &x);
	cok(x.status == 408 && cnow() - t0 < 3.5,
	    "then a slow ordinary request on that connection: 408 (%d)",
	    x.status);
	close(r.fd);

	/* An early reply: the unread body must come within the deadline. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect_to(port3);
	csends(r.fd,
	    "PUT /proxy/early HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 200000\r\n\r\n");
	sum = 0;
	send_pattern(r.fd, 1000, &sum, 0);
	rd_resp(&r, &x);
	t0 = cnow();
	cok(x.status == 404, "early 404 (%d)", x.status);
	for (k = 0; k < 20; k++) {
		usleep(200000);
		if (csends(r.fd, "z") != 0)
			break;
	}
	cok(rd_fill(&r) == -1 && cnow() - t0 < 3.5,
	    "a body trickled after it is cut at the deadline (%.1f s)",
	    cnow() - t0);
	close(r.fd);

	/* Streams count against the cap of 3 connections. */
	for (k = 0; k < 3; k++) {
		hold[k] = cconnect_to(port3);
		csends(hold[k], "GET /proxy/hold HTTP/1.1\r\nHost: x\r\n\r\n");
	}
	usleep(300000);
	memset(&q, 0, sizeof q);
	q.fd = cconnect_to(port3);
	crcvtimeo(q.fd, 800);
	csends(q.fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	cok(rd_fill(&q) == -1, "a fourth connection waits behind 3 streams");
	q.eof = 0;
	close(hold[0]);
	crcvtimeo(q.fd, 5000);
	rd_resp(&q, &x);
	cok(x.status == 200, "and is served once a stream's client left (%d)",
	    x.status);
	close(q.fd);
	close(hold[1]);
	close(hold[2]);
	usleep(200000);
}

/* The client's scenarios. */
static void
client(void)
{
	struct rd r;
	struct resp x;
	char head[512], want[128];
	size_t sum, i;
	int fd;

	/* 1. One keep-alive connection: ordinary and streamed requests. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(&r, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200 && strncmp(x.body, "GET /echo 0", 11) == 0,
	    "ordinary GET through evhttp (%d %s)", x.status, x.body);
	sum = 0;
	snprintf(head, sizeof head,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
	    "\r\n",
	    1 << 20);
	csend(r.fd, head, strlen(head));
	send_pattern(r.fd, 1 << 20, &sum, 0);
	rd_resp(&r, &x);
	snprintf(want, sizeof want, "{\"n\":%d,\"sum\":%zu}", 1 << 20, sum);
	cok(x.status == 200 && strcmp(x.body, want) == 0,
	    "1 MiB PUT with Content-Length streamed (%s)", x.body);
	exchange(&r,
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	    NULL, 0, &x);
	cok(x.status == 200 && strcmp(x.body, "POST /echo 3 abc") == 0,
	    "ordinary POST after a stream, same connection (%s)", x.body);
	exchange(&r, "GET /proxy/source?n=300000 HTTP/1.1\r\nHost: x\r\n\r\n",
	    NULL, 0, &x);
	cok(x.status == 200 && x.chunked && x.len == 300000 && x.pattern_ok &&
		strstr(x.hdrs, "X-Method: GET") != NULL,
	    "300000 bytes streamed back chunked (%zu)", x.len);
	exchange(&r,
	    "GET /proxy/source-cl?n=5000000 HTTP/1.1\r\nHost: x\r\n\r\n", NULL,
	    0, &x);
	cok(x.status == 200 && !x.chunked && x.len == 5000000 && x.pattern_ok &&
		strstr(x.hdrs, "Content-Length: 5000000"),
	    "5 MB streamed back with Content-Length (%zu)", x.len);
	exchange(
	    &r, "GET /echo?again HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200 && strncmp(x.body, "GET /echo?again 0", 17) == 0,
	    "evhttp serves the connection after the streams");
	close(r.fd);

	/* 2. A chunked upload by hand, with a trailer. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	csends(r.fd,
	    "POST /proxy/sink HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n");
	sum = 0;
	send_pattern(r.fd, 777777, &sum, 1);
	csends(r.fd, "0\r\nX-Trailer: 1\r\n\r\n");
	rd_resp(&r, &x);
	snprintf(want, sizeof want, "{\"n\":777777,\"sum\":%zu}", sum);
	cok(x.status == 200 && strcmp(x.body, want) == 0,
	    "chunked upload with a trailer (%s)", x.body);
	exchange(&r, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200, "and the connection goes on");
	/* Broken chunk framing: 400, and the connection closes. */
	exchange(&r,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
	    NULL, 0, &x);
	cok(x.status == 400 && x.close, "bad chunk size: 400, close (%d)",
	    x.status);
	cok(rd_fill(&r) == -1, "connection closed after it");
	close(r.fd);

	/* 3. Pipelined: ordinary, stream, ordinary in one write. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	csends(r.fd,
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
	    "\x01\x02\x03\x04"
	    "GET /echo?3 HTTP/1.1\r\nHost: x\r\n\r\n");
	rd_resp(&r, &x);
	cok(x.status == 200 && strcmp(x.body, "POST /echo 2 hi") == 0,
	    "pipelined 1: ordinary (%s)", x.body);
	rd_resp(&r, &x);
	cok(x.status == 200 && strcmp(x.body, "{\"n\":4,\"sum\":10}") == 0,
	    "pipelined 2: stream, in order (%s)", x.body);
	rd_resp(&r, &x);
	cok(x.status == 200 && strncmp(x.body, "GET /echo?3 0", 13) == 0,
	    "pipelined 3: ordinary again (%s)", x.body);
	close(r.fd);

	/* 4. Expect: 100-continue. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	csends(r.fd,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	    "Expect: 100-continue\r\n\r\n");
	rd_line(&r, head, sizeof head);
	cok(strcmp(head, "HTTP/1.1 100 Continue") == 0,
	    "100 Continue before the body (%s)", head);
	rd_line(&r, head, sizeof head);
	csend(r.fd, "hello", 5);
	rd_resp(&r, &x);
	cok(x.status == 200 && strncmp(x.body, "{\"n\":5,", 7) == 0,
	    "then the reply (%s)", x.body);
	close(r.fd);

	/* 5. An early reply: the unread body is dropped, keep-alive goes on. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	csends(r.fd,
	    "PUT /proxy/early HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 200000\r\n\r\n");
	sum = 0;
	send_pattern(r.fd, 200000, &sum, 0);
	rd_resp(&r, &x);
	cok(x.status == 404 && !x.close && strstr(x.hdrs, "X-Method: PUT"),
	    "early 404 with keep-alive (%d)", x.status);
	exchange(&r, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200 && strncmp(x.body, "GET /echo 0", 11) == 0,
	    "the dropped body did not become a request (%s)", x.body);
	close(r.fd);

	/* 6. HTTP/1.0: close-delimited reply. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(
	    &r, "GET /proxy/source?n=100000 HTTP/1.0\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200 && !x.chunked && x.close && x.len == 100000 &&
		x.pattern_ok && strncmp(x.first, "HTTP/1.0", 8) == 0,
	    "HTTP/1.0: no chunks, ends with the close (%zu)", x.len);
	close(r.fd);

	/* 7. Connection: close on a stream and on an ordinary request. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(&r,
	    "GET /proxy/source-cl?n=3000000 HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n",
	    NULL, 0, &x);
	cok(x.status == 200 && x.close && x.len == 3000000 && x.pattern_ok,
	    "Connection: close: the whole 3 MB, then close (%zu)", x.len);
	cok(rd_fill(&r) == -1, "closed");
	close(r.fd);
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(&r,
	    "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	    "Content-Length: 1\r\n\r\nz",
	    NULL, 0, &x);
	cok(x.status == 200 && strcmp(x.body, "POST /echo 1 z") == 0,
	    "ordinary request with Connection: close");
	close(r.fd);

	/* 8. A lazy reader: the client is held back, memory stays low. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	sum = 0;
	snprintf(head, sizeof head,
	    "PUT /proxy/lazysink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
	    "\r\n",
	    8 << 20);
	csend(r.fd, head, strlen(head));
	send_pattern(r.fd, 8 << 20, &sum, 0);
	rd_resp(&r, &x);
	snprintf(want, sizeof want, "{\"n\":%d,\"sum\":%zu}", 8 << 20, sum);
	cok(x.status == 200 && strcmp(x.body, want) == 0,
	    "8 MiB to a slow reader (%s)", x.body);
	close(r.fd);

	/* 9. The client leaves: the stream hears of it. */
	fd = cconnect();
	csends(fd, "GET /proxy/hold HTTP/1.1\r\nHost: x\r\n\r\n");
	usleep(100000);
	close(fd);
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	csends(
	    r.fd, "GET /proxy/source?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n");
	rd_line(&r, head, sizeof head);
	i = rd_bytes(&r, NULL, 200000, NULL);
	close(r.fd);
	cok(strncmp(head, "HTTP/1.1 200", 12) == 0 && i == 200000,
	    "left a 50 MB download after 200 kB");
	usleep(200000);

	/* 10. Timeouts (server 2: one second): none while the stream's
	 * reply is awaited, the server's while its body is awaited. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect_to(port2);
	exchange(
	    &r, "GET /proxy/later HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200 && strcmp(x.body, "\"late\"") == 0,
	    "a reply 1.6 s late outlives a 1 s timeout (%d %s)", x.status,
	    x.body);
	exchange(&r, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0, &x);
	cok(x.status == 200, "and evhttp goes on on that connection");
	close(r.fd);
	memset(&r, 0, sizeof r);
	r.fd = cconnect_to(port2);
	csends(r.fd,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 10\r\n\r\nabc");
	cok(rd_fill(&r) == -1, "a stalled upload is cut by the timeout");
	close(r.fd);

	/* 11. What the intake cannot read goes to evhttp as it is. */
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(&r, "GET /echo HTTP/1.1\r\nHost: x\r\n bad folding\r\n\r\n",
	    NULL, 0, &x);
	cok(x.status == 200 || x.status == 400,
	    "a folded header is evhttp's business (%d)", x.status);
	close(r.fd);
	memset(&r, 0, sizeof r);
	r.fd = cconnect();
	exchange(&r,
	    "PUT /proxy/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n",
	    NULL, 0, &x);
	cok(x.status == 400 || x.status == 0,
	    "Content-Length with chunked is refused (%d)", x.status);
	close(r.fd);

	limits();
}

/* ------------------------------------------------------------------ */

/* A line from the child: one check. */
static void
on_report(evutil_socket_t fd, short what, void *arg)
{
	static char buf[8192];
	static size_t len;
	char *nl;
	ssize_t n;

	n = read(fd, buf + len, sizeof buf - 1 - len);
	if (n <= 0) {
		event_base_loopexit(base, NULL);
		return;
	}
	len += (size_t)n;
	buf[len] = '\0';
	while ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		ok(buf[0] == '1', "%s", buf + 1);
		len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, len + 1);
	}
}

int
main(void)
{
	struct http_params p;
	struct http_stats hs;
	struct http *h, *h2, *h3;
	struct event *rev;
	char *cause;
	int fds[2], status;
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	memset(&p, 0, sizeof p);
	p.fd = -1;
	p.host = "127.0.0.1";
	p.port = port = free_port();
	p.max_body = 64 * 1024;
	p.max_headers = 16 * 1024;
	p.timeout = 30;
	p.stream_prefix = "/proxy/";
	p.stream_methods = "GET POST PUT DELETE PATCH";
	p.stream_cb = srv_stream;
	if ((h = http_new(base, &p, srv_request, NULL, &cause)) == NULL)
		tap_skip_all("cannot listen: %s", cause);
	p.port = port2 = free_port();
	p.timeout = 1;
	if ((h2 = http_new(base, &p, srv_request, NULL, &cause)) == NULL)
		tap_skip_all("cannot listen: %s", cause);
	p.port = port3 = free_port();
	p.timeout = 30;
	p.request_timeout = 1;
	p.max_connections = 3;
	if ((h3 = http_new(base, &p, srv_request, NULL, &cause)) == NULL)
		tap_skip_all("cannot listen: %s", cause);
	if (pipe(fds) == -1 || (pid = fork()) == -1)
		tap_skip_all("cannot fork");
	if (pid == 0) {
		close(fds[0]);
		report_fd = fds[1];
		client();
		_exit(0);
	}
	close(fds[1]);
	rev = event_new(base, fds[0], EV_READ | EV_PERSIST, on_report, NULL);
	event_add(rev, NULL);
	event_base_dispatch(base);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the client ran to its end");
	http_get_stats(h3, &hs);
	ok(hs.cut == 3 && hs.pauses >= 1,
	    "server 3 cut 3 slow clients and paused at its cap (%lu, %lu)",
	    hs.cut, hs.pauses);
	ok(closes == 6,
	    "departed and timed-out clients ended their streams "
	    "(%d)",
	    closes);
	ok(streams == 21, "each stream went to the stream callback (%d)",
	    streams);
	ok(max_hold <= 65536, "reads stay within the reader's buffer");
	event_free(rev);
	close(fds[0]);
	http_free(h3);
	http_free(h2);
	http_free(h);
	event_base_free(base);
	return tap_done();
}
