/*
 * ahttp: a small HTTP/1.1 server for the agent (see ahttp.h for why it is
 * not evhttp). Each connection is a bufferevent and a little state
 * machine: read a head, hand it to the handler, move the body the way the
 * handler chose, wait for the reply to be written, then start over on the
 * same connection. Owns the listeners, the connections and their current
 * requests.
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "ahttp.h"
#include "log.h"
#include "xmalloc.h"

/* Input kept before reading pauses (a body is moved on as it comes). */
#define AHTTP_READ_HIGH (256 * 1024)
/* Most bytes read from a socket at once. */
#define AHTTP_READ_CHUNK (128 * 1024)
/* Longest chunk-size or trailer line of a chunked body. */
#define AHTTP_MAX_LINE 4096
/* Most trailer lines after a chunked body. */
#define AHTTP_MAX_TRAILERS 64
/* Seconds a closing connection keeps reading what the client still sends. */
#define AHTTP_LINGER 2

enum ahttp_framing { AHTTP_BF_NONE, AHTTP_BF_LENGTH, AHTTP_BF_CHUNKED };

enum ahttp_chunk {
	AHTTP_CK_SIZE,	 /* reading a chunk-size line */
	AHTTP_CK_DATA,	 /* inside a chunk */
	AHTTP_CK_CRLF,	 /* the CRLF after a chunk */
	AHTTP_CK_TRAILER /* trailer lines up to the empty one */
};

enum ahttp_mode {
	AHTTP_BM_NONE,	 /* not claimed yet (only inside the head callback) */
	AHTTP_BM_BUFFER, /* kept in req->body for ahttp_req_body() */
	AHTTP_BM_STREAM, /* handed to data_cb piece by piece */
	AHTTP_BM_DISCARD /* read and dropped */
};

enum ahttp_reply_state { AHTTP_RS_NONE, AHTTP_RS_STREAM, AHTTP_RS_DONE };

struct ahttp_hdr {
	const char *name;
	const char *value;
};

struct ahttp_req {
	struct ahttp_conn *conn;
	char *head; /* the head's text; the fields below point into it */
	enum ahttp_method method;
	const char *method_s;
	const char *target;
	char *path; /* decoded */
	const char *query;
	int minor; /* HTTP/1.<minor> */
	struct ahttp_hdr hdrs[AHTTP_MAX_HEADERS];
	size_t nhdrs;
	int keepalive;
	int expect_continue;
	int continue_sent;

	enum ahttp_framing framing;
	uint64_t left; /* body or chunk bytes still to come */
	enum ahttp_chunk ck;
	size_t trailers;
	int body_done;
	enum ahttp_mode mode;
	int body_reported; /* body_cb / end_cb has been called */
	int body_nul;	   /* a NUL was added after the buffered body */
	struct evbuffer *body;
	size_t max;
	ahttp_body_cb body_cb;
	ahttp_data_cb data_cb;
	void *body_arg;
	ahttp_close_cb close_cb;
	void *close_arg;

	enum ahttp_reply_state reply;
	int chunked_reply;
	int closing; /* "Connection: close": the connection ends after */
	struct evbuffer *out_hdrs;
};

struct ahttp_conn {
	TAILQ_ENTRY(ahttp_conn) entry;
	struct ahttp *srv;
	struct bufferevent *bev;
	struct ahttp_req *req;
	int close_when_flushed;
	int lingering;
	struct event *linger;
};

struct ahttp_listener {
	TAILQ_ENTRY(ahttp_listener) entry;
	struct evconnlistener *lev;
};

struct ahttp {
	struct event_base *base;
	ahttp_req_cb cb;
	void *arg;
	TAILQ_HEAD(, ahttp_conn) conns;
	TAILQ_HEAD(, ahttp_listener) listeners;
	size_t nconns;
};

/* clang-format off */
static const struct {
	int		 code;
	const char	*reason;
} ahttp_reasons[] = {
	{ 100, "Continue" },
	{ 200, "OK" },
	{ 201, "Created" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 411, "Length Required" },
	{ 413, "Content Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 422, "Unprocessable Entity" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 503, "Service Unavailable" },
	{ 505, "HTTP Version Not Supported" },
};

static const struct {
	const char		*name;
	enum ahttp_method	 method;
} ahttp_methods[] = {
	{ "GET",	AHTTP_GET },
	{ "HEAD",	AHTTP_HEAD },
	{ "POST",	AHTTP_POST },
	{ "PUT",	AHTTP_PUT },
	{ "DELETE",	AHTTP_DELETE },
	{ "PATCH",	AHTTP_PATCH },
	{ "OPTIONS",	AHTTP_OPTIONS },
};
/* clang-format on */

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

static void ahttp_on_read(struct bufferevent *, void *);
static void ahttp_on_write(struct bufferevent *, void *);
static void ahttp_on_event(struct bufferevent *, short, void *);
static void ahttp_process(struct ahttp_conn *);

/* The reason phrase for code. */
const char *
ahttp_reason(int code)
{
	size_t i;

	for (i = 0; i < nitems(ahttp_reasons); i++)
		if (ahttp_reasons[i].code == code)
			return ahttp_reasons[i].reason;
	return "Unknown";
}

/* Makes a server. */
struct ahttp *
ahttp_new(struct event_base *base, ahttp_req_cb cb, void *arg)
{
	struct ahttp *srv;

	srv = xcalloc(1, sizeof *srv);
	srv->base = base;
	srv->cb = cb;
	srv->arg = arg;
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->listeners);
	return srv;
}

/* Frees a request and what it holds. */
static void
ahttp_req_free(struct ahttp_req *req)
{
	if (req == NULL)
		return;
	if (req->body != NULL)
		evbuffer_free(req->body);
	if (req->out_hdrs != NULL)
		evbuffer_free(req->out_hdrs);
	free(req->path);
	free(req->head);
	free(req);
}

/* Closes a connection and frees it, with its request (no callbacks). */
static void
ahttp_conn_free(struct ahttp_conn *conn)
{
	if (conn->linger != NULL)
		event_free(conn->linger);
	ahttp_req_free(conn->req);
	bufferevent_free(conn->bev);
	TAILQ_REMOVE(&conn->srv->conns, conn, entry);
	conn->srv->nconns--;
	free(conn);
}

/* Frees the server: connections first, then listeners. */
void
ahttp_free(struct ahttp *srv)
{
	struct ahttp_listener *l;
	struct ahttp_conn *conn;

	if (srv == NULL)
		return;
	while ((conn = TAILQ_FIRST(&srv->conns)) != NULL)
		ahttp_conn_free(conn);
	while ((l = TAILQ_FIRST(&srv->listeners)) != NULL) {
		TAILQ_REMOVE(&srv->listeners, l, entry);
		evconnlistener_free(l->lev);
		free(l);
	}
	free(srv);
}

/* Sets the read timeout: idle while reading a request, none otherwise. */
static void
ahttp_conn_timeouts(struct ahttp_conn *conn, int reading)
{
	struct timeval tv = {AHTTP_IDLE_TIMEOUT, 0};

	bufferevent_set_timeouts(conn->bev, reading ? &tv : NULL, &tv);
}

/* A new connection. */
static void
ahttp_on_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ahttp *srv = arg;
	struct ahttp_conn *conn;
	struct bufferevent *bev;

	if (srv->nconns >= AHTTP_MAX_CONNS) {
		log_warnx("ahttp: %zu connections already: refusing one",
		    srv->nconns);
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_warnx("ahttp: cannot make a bufferevent");
		close(fd);
		return;
	}
	conn = xcalloc(1, sizeof *conn);
	conn->srv = srv;
	conn->bev = bev;
	TAILQ_INSERT_TAIL(&srv->conns, conn, entry);
	srv->nconns++;
	bufferevent_setcb(
	    bev, ahttp_on_read, ahttp_on_write, ahttp_on_event, conn);
	bufferevent_setwatermark(bev, EV_READ, 0, AHTTP_READ_HIGH);
	/* Bigger reads than libevent's 16 KiB: fewer rounds per upload. */
	bufferevent_set_max_single_read(bev, AHTTP_READ_CHUNK);
	ahttp_conn_timeouts(conn, 1);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Accept failed (EMFILE, say): log it; the listener goes on. */
static void
ahttp_on_accept_error(struct evconnlistener *lev, void *arg)
{
	log_warn("ahttp: accept");
}

/* Serves a listening socket. */
int
ahttp_listen_fd(struct ahttp *srv, int fd)
{
	struct ahttp_listener *l;
	struct evconnlistener *lev;

	lev = evconnlistener_new(srv->base, ahttp_on_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (lev == NULL)
		return -1;
	evconnlistener_set_error_cb(lev, ahttp_on_accept_error);
	l = xcalloc(1, sizeof *l);
	l->lev = lev;
	TAILQ_INSERT_TAIL(&srv->listeners, l, entry);
	return 0;
}

/* Writes a bare error answer and closes the connection once it is sent. */
static void
ahttp_conn_fail(struct ahttp_conn *conn, int code)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	char body[128];
	int n;

	n = snprintf(
	    body, sizeof body, "{\"detail\":\"%s\"}", ahttp_reason(code));
	evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	    code, ahttp_reason(code), n, body);
	conn->close_when_flushed = 1;
	ahttp_conn_timeouts(conn, 0);
}

/* Is c a token character of RFC 9110? */
static int
ahttp_tchar(int c)
{
	return c > 0x20 && c < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

/* Parses a Content-Length value; -1 if it is not a plain number. */
static int
ahttp_parse_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s) || v > (UINT64_MAX >> 2) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* Does a comma-separated header value hold token (any case)? */
static int
ahttp_has_token(const char *value, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = value;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (strncasecmp(p, token, tlen) == 0 &&
		    (p[tlen] == '\0' || p[tlen] == ',' || p[tlen] == ' ' ||
			p[tlen] == '\t'))
			return 1;
		p = strchr(p, ',');
	}
	return 0;
}

/*
 * Parses the head in req->head (request line and header lines, CRLF
 * separated, without the final empty line). 0, or an HTTP status.
 */
static int
ahttp_parse_head(struct ahttp_req *req)
{
	char *line, *next, *sp, *target, *version, *colon, *v, *e, *q;
	const char *cl = NULL, *te = NULL, *conn_h = NULL, *expect;
	uint64_t len;
	size_t i;

	line = req->head;
	if ((next = strstr(line, "\r\n")) != NULL) {
		*next = '\0';
		next += 2;
	}
	/* Request line: method SP target SP version. */
	if ((sp = strchr(line, ' ')) == NULL)
		return 400;
	*sp = '\0';
	target = sp + 1;
	if ((sp = strchr(target, ' ')) == NULL)
		return 400;
	*sp = '\0';
	version = sp + 1;
	for (v = line; *v != '\0'; v++)
		if (!ahttp_tchar((unsigned char)*v))
			return 400;
	if (*line == '\0' || *target == '\0')
		return 400;
	req->method_s = line;
	req->method = AHTTP_OTHER;
	for (i = 0; i < nitems(ahttp_methods); i++)
		if (strcmp(line, ahttp_methods[i].name) == 0)
			req->method = ahttp_methods[i].method;
	if (strcmp(version, "HTTP/1.1") == 0)
		req->minor = 1;
	else if (strcmp(version, "HTTP/1.0") == 0)
		req->minor = 0;
	else if (strncmp(version, "HTTP/", 5) == 0)
		return 505;
	else
		return 400;
	for (v = target; *v != '\0'; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			return 400;
	/* Absolute form: keep the path. */
	if (strncasecmp(target, "http://", 7) == 0 ||
	    strncasecmp(target, "https://", 8) == 0) {
		v = strstr(target, "//") + 2;
		target = strchr(v, '/');
		if (target == NULL)
			target = "/";
	}
	req->target = target;

	/* Header lines. */
	for (line = next; line != NULL && *line != '\0'; line = next) {
		if ((next = strstr(line, "\r\n")) != NULL) {
			*next = '\0';
			next += 2;
		}
		if (*line == ' ' || *line == '\t')
			return 400; /* obsolete line folding */
		if ((colon = strchr(line, ':')) == NULL || colon == line)
			return 400;
		*colon = '\0';
		for (v = line; *v != '\0'; v++)
			if (!ahttp_tchar((unsigned char)*v))
				return 400;
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (req->nhdrs == AHTTP_MAX_HEADERS)
			return 431;
		req->hdrs[req->nhdrs].name = line;
		req->hdrs[req->nhdrs].value = v;
		req->nhdrs++;
		if (strcasecmp(line, "Content-Length") == 0) {
			if (cl != NULL && strcmp(cl, v) != 0)
				return 400;
			cl = v;
		} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
			if (te != NULL)
				return 501;
			te = v;
		} else if (strcasecmp(line, "Connection") == 0)
			conn_h = v;
	}

	req->framing = AHTTP_BF_NONE;
	if (te != NULL) {
		if (cl != NULL)
			return 400;
		if (strcasecmp(te, "chunked") != 0)
			return 501;
		req->framing = AHTTP_BF_CHUNKED;
		req->ck = AHTTP_CK_SIZE;
	} else if (cl != NULL) {
		if (ahttp_parse_length(cl, &len) == -1)
			return 400;
		if (len > 0) {
			req->framing = AHTTP_BF_LENGTH;
			req->left = len;
		}
	}
	if (req->minor == 1)
		req->keepalive =
		    conn_h == NULL || !ahttp_has_token(conn_h, "close");
	else
		req->keepalive =
		    conn_h != NULL && ahttp_has_token(conn_h, "keep-alive");
	expect = ahttp_req_header(req, "Expect");
	if (expect != NULL && req->minor == 1) {
		if (strcasecmp(expect, "100-continue") != 0)
			return 400;
		req->expect_continue = req->framing != AHTTP_BF_NONE;
	}

	/* The decoded path (without the query) for routing. */
	q = strchr(target, '?');
	v = xstrndup(target, q != NULL ? (size_t)(q - target) : strlen(target));
	req->query = q != NULL ? q + 1 : NULL;
	req->path = evhttp_uridecode(v, 0, NULL);
	free(v);
	if (req->path == NULL)
		return 400;
	return 0;
}

/*
 * Looks for a complete head in the input. Returns a new request, or NULL
 * with *err 0 (need more) or an HTTP status.
 */
static struct ahttp_req *
ahttp_read_head(struct ahttp_conn *conn, int *err)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);
	struct evbuffer_ptr end;
	struct ahttp_req *req;
	unsigned char c;
	size_t len;

	*err = 0;
	/* Empty lines before a request line are allowed (RFC 9112 2.2). */
	while (evbuffer_copyout(in, &c, 1) == 1 && (c == '\r' || c == '\n'))
		evbuffer_drain(in, 1);
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1) {
		if (evbuffer_get_length(in) > AHTTP_MAX_HEAD)
			*err = 431;
		return NULL;
	}
	len = (size_t)end.pos;
	if (len > AHTTP_MAX_HEAD) {
		*err = 431;
		return NULL;
	}
	req = xcalloc(1, sizeof *req);
	req->conn = conn;
	req->head = xmalloc(len + 1);
	evbuffer_remove(in, req->head, len);
	req->head[len] = '\0';
	evbuffer_drain(in, 4);
	if ((*err = ahttp_parse_head(req)) != 0) {
		ahttp_req_free(req);
		return NULL;
	}
	req->body_done = req->framing == AHTTP_BF_NONE;
	return req;
}

/* Sends "100 Continue" once, if the client waits for it. */
static void
ahttp_send_continue(struct ahttp_req *req)
{
	if (!req->expect_continue || req->continue_sent ||
	    req->reply != AHTTP_RS_NONE)
		return;
	req->continue_sent = 1;
	evbuffer_add_printf(bufferevent_get_output(req->conn->bev),
	    "HTTP/1.1 100 Continue\r\n\r\n");
}

/*
 * A buffered body is over its limit: answer 413, tell the handler, and
 * close the connection after the answer rather than read the rest.
 */
static void
ahttp_too_large(struct ahttp_req *req)
{
	log_debug("ahttp: request body over %zu bytes: 413", req->max);
	req->mode = AHTTP_BM_DISCARD;
	req->closing = 1;
	if (req->reply == AHTTP_RS_NONE)
		ahttp_reply(req, 413, "application/json",
		    "{\"detail\":\"request body too large\"}", 35);
	if (!req->body_reported) {
		req->body_reported = 1;
		req->body_cb(req, 413, req->body_arg);
	}
}

/* Hands n input bytes of the body to where the handler wants them. */
static void
ahttp_deliver(struct ahttp_req *req, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(req->conn->bev);
	struct evbuffer_iovec vec[16];
	size_t done = 0;
	int i, nv;

	switch (req->mode) {
	case AHTTP_BM_BUFFER:
		if (evbuffer_get_length(req->body) + n > req->max) {
			ahttp_too_large(req);
			evbuffer_drain(in, n);
			return;
		}
		evbuffer_remove_buffer(in, req->body, n);
		return;
	case AHTTP_BM_STREAM:
		while (done < n && req->mode == AHTTP_BM_STREAM) {
			nv = evbuffer_peek(in, (ev_ssize_t)(n - done), NULL,
			    vec, (int)nitems(vec));
			if (nv > (int)nitems(vec))
				nv = (int)nitems(vec);
			for (i = 0; i < nv && done < n; i++) {
				size_t take = vec[i].iov_len;

				if (take > n - done)
					take = n - done;
				if (req->data_cb(req, vec[i].iov_base, take,
					req->body_arg) == -1) {
					req->mode = AHTTP_BM_DISCARD;
					take = n - done;
				}
				evbuffer_drain(in, take);
				done += take;
				if (req->mode != AHTTP_BM_STREAM)
					break;
			}
		}
		if (done < n)
			evbuffer_drain(in, n - done);
		return;
	case AHTTP_BM_NONE:
	case AHTTP_BM_DISCARD:
		evbuffer_drain(in, n);
		return;
	}
}

/* The body has been read entirely. */
static void
ahttp_body_complete(struct ahttp_req *req)
{
	req->body_done = 1;
	if (req->body_reported || req->reply != AHTTP_RS_NONE)
		return;
	switch (req->mode) {
	case AHTTP_BM_BUFFER:
		req->body_reported = 1;
		req->body_cb(req, 0, req->body_arg);
		break;
	case AHTTP_BM_STREAM:
		req->body_reported = 1;
		req->body_cb(req, 0, req->body_arg);
		break;
	default:
		break;
	}
}

/*
 * Moves the body on with what the input holds. Returns 1 to be called
 * again, 0 when more input is needed or the body is done, or an HTTP
 * status for a broken body.
 */
static int
ahttp_body_step(struct ahttp_req *req)
{
	struct evbuffer *in = bufferevent_get_input(req->conn->bev);
	size_t avail = evbuffer_get_length(in), n;
	char *line, *end;
	uint64_t size;

	if (req->body_done)
		return 0;
	if (req->framing == AHTTP_BF_LENGTH) {
		if (avail == 0)
			return 0;
		n = avail < req->left ? avail : (size_t)req->left;
		req->left -= n;
		ahttp_deliver(req, n);
		if (req->left == 0)
			ahttp_body_complete(req);
		return 1;
	}
	switch (req->ck) {
	case AHTTP_CK_SIZE:
	case AHTTP_CK_TRAILER:
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			return avail > AHTTP_MAX_LINE ? 400 : 0;
		if (n > AHTTP_MAX_LINE) {
			free(line);
			return 400;
		}
		if (req->ck == AHTTP_CK_TRAILER) {
			free(line);
			if (n == 0) {
				ahttp_body_complete(req);
				return 0;
			}
			return ++req->trailers > AHTTP_MAX_TRAILERS ? 400 : 1;
		}
		errno = 0;
		size = strtoull(line, &end, 16);
		if (end == line || errno != 0 ||
		    (*end != '\0' && *end != ';' && *end != ' ' &&
			*end != '\t') ||
		    size > (UINT64_MAX >> 2)) {
			free(line);
			return 400;
		}
		free(line);
		if (size == 0)
			req->ck = AHTTP_CK_TRAILER;
		else {
			req->ck = AHTTP_CK_DATA;
			req->left = size;
		}
		return 1;
	case AHTTP_CK_DATA:
		if (avail == 0)
			return 0;
		n = avail < req->left ? avail : (size_t)req->left;
		req->left -= n;
		ahttp_deliver(req, n);
		if (req->left == 0)
			req->ck = AHTTP_CK_CRLF;
		return 1;
	case AHTTP_CK_CRLF: {
		char crlf[2];

		if (avail < 2)
			return 0;
		evbuffer_remove(in, crlf, 2);
		if (crlf[0] != '\r' || crlf[1] != '\n')
			return 400;
		req->ck = AHTTP_CK_SIZE;
		return 1;
	}
	}
	return 0;
}

/* Can the current request be retired: answered, sent, body consumed? */
static int
ahttp_req_finished(struct ahttp_req *req)
{
	return req->reply == AHTTP_RS_DONE &&
	    evbuffer_get_length(bufferevent_get_output(req->conn->bev)) == 0 &&
	    (req->body_done || req->closing);
}

/* Stops reading and closes once what was written has been sent. */
static void
ahttp_conn_linger_done(evutil_socket_t fd, short what, void *arg)
{
	ahttp_conn_free(arg);
}

/*
 * Closes a connection whose answer has been sent: the write side first,
 * then, after the client stopped sending or a short while, the socket
 * (closing with unread input would reset the connection and could destroy
 * the answer on its way).
 */
static void
ahttp_conn_close(struct ahttp_conn *conn)
{
	struct timeval tv = {AHTTP_LINGER, 0};

	shutdown(bufferevent_getfd(conn->bev), SHUT_WR);
	conn->lingering = 1;
	ahttp_req_free(conn->req);
	conn->req = NULL;
	bufferevent_disable(conn->bev, EV_WRITE);
	bufferevent_set_timeouts(conn->bev, NULL, NULL);
	conn->linger =
	    evtimer_new(conn->srv->base, ahttp_conn_linger_done, conn);
	if (conn->linger == NULL || evtimer_add(conn->linger, &tv) == -1) {
		ahttp_conn_free(conn);
		return;
	}
	evbuffer_drain(bufferevent_get_input(conn->bev),
	    evbuffer_get_length(bufferevent_get_input(conn->bev)));
	bufferevent_enable(conn->bev, EV_READ);
}

/*
 * Retires the current request if it is finished. Returns 1 if the
 * connection can go on with the next request, 0 otherwise (including when
 * it was closed).
 */
static int
ahttp_retire(struct ahttp_conn *conn)
{
	struct ahttp_req *req = conn->req;
	int keep;

	if (req == NULL || !ahttp_req_finished(req))
		return 0;
	keep = req->keepalive && !req->closing;
	if (!keep) {
		ahttp_conn_close(conn);
		return 0;
	}
	ahttp_req_free(req);
	conn->req = NULL;
	ahttp_conn_timeouts(conn, 1);
	return 1;
}

/* Reads and moves on whatever the input allows. */
static void
ahttp_process(struct ahttp_conn *conn)
{
	struct ahttp_req *req;
	int err, r;

	for (;;) {
		if (conn->lingering || conn->close_when_flushed) {
			struct evbuffer *in = bufferevent_get_input(conn->bev);

			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		if ((req = conn->req) == NULL) {
			if ((req = ahttp_read_head(conn, &err)) == NULL) {
				if (err != 0) {
					log_debug("ahttp: bad request head: "
						  "%d",
					    err);
					ahttp_conn_fail(conn, err);
				}
				return;
			}
			conn->req = req;
			conn->srv->cb(req, conn->srv->arg);
			if (req->mode == AHTTP_BM_NONE)
				req->mode = AHTTP_BM_DISCARD;
			/* No body at all: a claimed one is complete now. */
			if (req->body_done)
				ahttp_body_complete(req);
			/* A body announced too large is refused unread. */
			else if (req->mode == AHTTP_BM_BUFFER &&
			    req->framing == AHTTP_BF_LENGTH &&
			    req->left > req->max)
				ahttp_too_large(req);
			if (!req->body_done && req->expect_continue &&
			    !req->continue_sent)
				req->closing = 1; /* body may never come */
			if (req->body_done && req->reply == AHTTP_RS_NONE)
				ahttp_conn_timeouts(conn, 0);
		}
		if (!req->body_done &&
		    !(req->closing && req->mode == AHTTP_BM_DISCARD)) {
			while ((r = ahttp_body_step(req)) == 1)
				;
			if (r > 1) {
				/* A broken chunked body. */
				log_debug("ahttp: bad request body: %d", r);
				req->closing = 1;
				req->mode = AHTTP_BM_DISCARD;
				if (req->reply == AHTTP_RS_NONE)
					ahttp_reply(req, r, "application/json",
					    "{\"detail\":\"bad request body\"}",
					    29);
				if (!req->body_reported &&
				    (req->body_cb != NULL)) {
					req->body_reported = 1;
					req->body_cb(req, r, req->body_arg);
				}
			}
			if (req->body_done && req->reply == AHTTP_RS_NONE)
				ahttp_conn_timeouts(conn, 0);
		}
		if (!ahttp_retire(conn))
			return;
	}
}

/* Input arrived. */
static void
ahttp_on_read(struct bufferevent *bev, void *arg)
{
	ahttp_process(arg);
}

/* The output drained: retire the request, maybe start the next one. */
static void
ahttp_on_write(struct bufferevent *bev, void *arg)
{
	struct ahttp_conn *conn = arg;

	if (conn->close_when_flushed) {
		ahttp_conn_close(conn);
		return;
	}
	if (ahttp_retire(conn))
		ahttp_process(conn);
}

/* End of file, an error or a timeout: the connection is over. */
static void
ahttp_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct ahttp_conn *conn = arg;
	struct ahttp_req *req = conn->req;

	if (conn->lingering) {
		if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
			ahttp_conn_free(conn);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("ahttp: connection timed out");
	if (req != NULL && req->reply != AHTTP_RS_DONE) {
		if (!req->body_reported && req->body_cb != NULL &&
		    (req->mode == AHTTP_BM_BUFFER ||
			req->mode == AHTTP_BM_STREAM)) {
			req->body_reported = 1;
			req->body_cb(req, -1, req->body_arg);
		} else if (req->close_cb != NULL)
			req->close_cb(req, req->close_arg);
	}
	ahttp_conn_free(conn);
}

/* Accessors. */
enum ahttp_method
ahttp_req_method(const struct ahttp_req *req)
{
	return req->method;
}

/* The method as sent. */
const char *
ahttp_req_method_name(const struct ahttp_req *req)
{
	return req->method_s;
}

/* The target as sent. */
const char *
ahttp_req_target(const struct ahttp_req *req)
{
	return req->target;
}

/* The decoded path. */
const char *
ahttp_req_path(const struct ahttp_req *req)
{
	return req->path;
}

/* The raw query string or NULL. */
const char *
ahttp_req_query(const struct ahttp_req *req)
{
	return req->query;
}

/* The first header of that name. */
const char *
ahttp_req_header(const struct ahttp_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nhdrs; i++)
		if (strcasecmp(req->hdrs[i].name, name) == 0)
			return req->hdrs[i].value;
	return NULL;
}

/* Was a body announced? */
int
ahttp_req_has_body(const struct ahttp_req *req)
{
	return req->framing != AHTTP_BF_NONE;
}

/* Buffers the body for cb. */
void
ahttp_req_read_body(
    struct ahttp_req *req, size_t max, ahttp_body_cb cb, void *arg)
{
	req->mode = AHTTP_BM_BUFFER;
	req->body = evbuffer_new();
	req->max = max;
	req->body_cb = cb;
	req->body_arg = arg;
	ahttp_send_continue(req);
}

/* The buffered body. */
const char *
ahttp_req_body(const struct ahttp_req *req, size_t *len)
{
	struct ahttp_req *r = (struct ahttp_req *)req;
	size_t n = r->body != NULL ? evbuffer_get_length(r->body) : 0;

	if (n == 0) {
		*len = 0;
		return "";
	}
	if (!r->body_nul) {
		evbuffer_add(r->body, "", 1); /* NUL, not counted */
		r->body_nul = 1;
	}
	*len = evbuffer_get_length(r->body) - 1;
	return (const char *)evbuffer_pullup(r->body, -1);
}

/* Streams the body to data_cb. */
void
ahttp_req_stream_body(struct ahttp_req *req, ahttp_data_cb data_cb,
    ahttp_body_cb end_cb, void *arg)
{
	req->mode = AHTTP_BM_STREAM;
	req->data_cb = data_cb;
	req->body_cb = end_cb;
	req->body_arg = arg;
	ahttp_send_continue(req);
}

/* Sets the close callback. */
void
ahttp_req_set_close_cb(struct ahttp_req *req, ahttp_close_cb cb, void *arg)
{
	req->close_cb = cb;
	req->close_arg = arg;
}

/* Adds a response header. */
void
ahttp_reply_header(struct ahttp_req *req, const char *name, const char *value)
{
	if (req->out_hdrs == NULL)
		req->out_hdrs = evbuffer_new();
	evbuffer_add_printf(req->out_hdrs, "%s: %s\r\n", name, value);
}

/* Writes the status line and headers. */
static void
ahttp_write_head(
    struct ahttp_req *req, int code, const char *ctype, int64_t length)
{
	struct evbuffer *out = bufferevent_get_output(req->conn->bev);

	/* A body the client may still be sending, and nobody will read. */
	if (!req->body_done && req->expect_continue && !req->continue_sent)
		req->closing = 1;
	if (length < 0 && req->minor == 0)
		req->closing = 1; /* the end of the body is the end */
	evbuffer_add_printf(
	    out, "HTTP/1.1 %d %s\r\n", code, ahttp_reason(code));
	if (ctype != NULL)
		evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
	if (code == 204 || code == 304)
		; /* no body, and no Content-Length (RFC 9110 8.6) */
	else if (length >= 0)
		evbuffer_add_printf(
		    out, "Content-Length: %" PRId64 "\r\n", length);
	else if (req->minor == 1) {
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
		req->chunked_reply = 1;
	}
	if (req->out_hdrs != NULL)
		evbuffer_add_buffer(out, req->out_hdrs);
	if (!req->keepalive || req->closing)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (req->minor == 0)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
	if (req->method == AHTTP_HEAD)
		req->chunked_reply = 0;
	/* Replying ends the body callbacks: the rest is read and dropped. */
	if (!req->body_done)
		req->mode = AHTTP_BM_DISCARD;
}

/* Answers with a complete body. */
void
ahttp_reply(struct ahttp_req *req, int code, const char *ctype,
    const void *body, size_t len)
{
	if (req->reply != AHTTP_RS_NONE)
		fatalx("ahttp: a request was answered twice");
	ahttp_write_head(req, code, ctype, (int64_t)len);
	if (req->method != AHTTP_HEAD && len > 0)
		evbuffer_add(bufferevent_get_output(req->conn->bev), body, len);
	req->reply = AHTTP_RS_DONE;
}

/* Starts a streamed answer. */
void
ahttp_reply_start(
    struct ahttp_req *req, int code, const char *ctype, int64_t length)
{
	if (req->reply != AHTTP_RS_NONE)
		fatalx("ahttp: a request was answered twice");
	ahttp_write_head(req, code, ctype, length);
	req->reply = AHTTP_RS_STREAM;
}

/* Adds bytes to a streamed answer. */
void
ahttp_reply_add(struct ahttp_req *req, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(req->conn->bev);

	if (req->method == AHTTP_HEAD || len == 0)
		return;
	if (req->chunked_reply)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (req->chunked_reply)
		evbuffer_add(out, "\r\n", 2);
}

/*
 * Adds a file's bytes. They go straight onto the socket's output buffer,
 * which libevent drains with sendfile(2): the file is never read into
 * memory.
 */
int
ahttp_reply_add_file(struct ahttp_req *req, int fd, int64_t offset, int64_t len)
{
	struct evbuffer *out = bufferevent_get_output(req->conn->bev);

	if (req->method == AHTTP_HEAD || len == 0) {
		close(fd);
		return 0;
	}
	if (req->chunked_reply)
		evbuffer_add_printf(out, "%" PRIx64 "\r\n", len);
	if (evbuffer_add_file(out, fd, offset, len) == -1)
		return -1;
	if (req->chunked_reply)
		evbuffer_add(out, "\r\n", 2);
	return 0;
}

/* Ends a streamed answer. */
void
ahttp_reply_end(struct ahttp_req *req)
{
	if (req->reply != AHTTP_RS_STREAM)
		fatalx("ahttp: reply_end without reply_start");
	if (req->chunked_reply)
		evbuffer_add(
		    bufferevent_get_output(req->conn->bev), "0\r\n\r\n", 5);
	req->reply = AHTTP_RS_DONE;
}
