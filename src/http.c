/*
 * http: owns the evhttp server and its listening socket. evhttp does the
 * protocol work (keep-alive, Content-Length and chunked request bodies,
 * header and body size limits, the idle timeout); this module configures
 * it, funnels every request into one callback and every reply through one
 * helper, and adds what evhttp 2.1 lacks: a cap on connections and a
 * deadline for each request.
 *
 * libevent 2.1 tells nobody when a server connection closes, so the
 * connections are counted from the kernel's side: a census lists this
 * process's TCP sockets accepted on our port (fd and inode, so that a
 * reused fd is a new connection). evhttp's accept hook says when one more
 * arrived; at the cap the listener is paused (clients wait in the kernel's
 * backlog) until a census finds a free slot. The same census gives each
 * connection its request deadline: a connection waiting for a request
 * (after accept, or after its last reply went out) that starts receiving
 * one must finish it within request_timeout, or it is answered 408 and
 * shut down; evhttp then frees it as after any EOF. A connection whose
 * request is being handled is never cut here.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <netinet/in.h>
/* Not <netinet/tcp.h>: glibc's struct tcp_info lacks tcpi_bytes_received. */
#include <linux/tcp.h>

#include <dirent.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "http.h"
#include "log.h"
#include "xmalloc.h"

/* Census period, and while accepting is paused at the cap. */
#define HTTP_SWEEP_MS 1000
#define HTTP_SWEEP_PAUSED_MS 100

/* What a client connection is doing, as far as the deadline cares. */
enum http_conn_state {
	HTTP_CONN_WAITING = 0, /* for (the rest of) a request */
	HTTP_CONN_HANDLING     /* its request is with the callback */
};

/* One accepted connection, indexed by its fd. */
struct http_conn {
	int used;
	ino_t ino; /* the socket's inode: tells fd reuse apart */
	enum http_conn_state state;
	uint64_t rx_mark; /* bytes received when it began to wait */
	double started;	  /* request bytes first seen; 0 = none yet */
	int seen;	  /* found by the current census */
	int cut;	  /* already shut down for being slow */
};

struct http {
	struct event_base *base;
	struct evhttp *evh;
	struct evhttp_bound_socket *sock;
	http_request_cb cb;
	void *arg;
	int port;	     /* the bound port, as accepted sockets show it */
	int max_conns;	     /* 0 = no limit */
	int request_timeout; /* seconds; 0 = no deadline */
	struct http_conn *conns; /* by fd */
	size_t nconns;
	int estimate; /* connections: last census + accepts since */
	struct event *sweep;
	struct http_stats stats;
};

/* Monotonic seconds. */
static double
http_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The table entry of fd, grown as needed. */
static struct http_conn *
http_conn_at(struct http *h, int fd)
{
	size_t n;

	if (fd < 0)
		return NULL;
	if ((size_t)fd >= h->nconns) {
		n = h->nconns > 0 ? h->nconns : 64;
		while (n <= (size_t)fd)
			n *= 2;
		h->conns = xreallocarray(h->conns, n, sizeof *h->conns);
		memset(h->conns + h->nconns, 0,
		    (n - h->nconns) * sizeof *h->conns);
		h->nconns = n;
	}
	return &h->conns[fd];
}

/*
 * The entry of an accepted connection on fd, reset if the fd is new or
 * now holds another socket; NULL if fd is not a socket.
 */
static struct http_conn *
http_conn_get(struct http *h, int fd)
{
	struct http_conn *c;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return NULL;
	c = http_conn_at(h, fd);
	if (!c->used || c->ino != st.st_ino) {
		memset(c, 0, sizeof *c);
		c->used = 1;
		c->ino = st.st_ino;
		c->state = HTTP_CONN_WAITING;
	}
	return c;
}

/* 1 if fd is a TCP connection accepted on our port (not a listener). */
static int
http_is_client(const struct http *h, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int listening = 0;
	socklen_t olen = sizeof listening;
	int port;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		return 0;
	if (port != h->port)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) != 0)
		return 0;
	return !listening;
}

/* The fd of a request's connection, or -1. */
static int
http_req_fd(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev;

	if (evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL)
		return -1;
	return (int)bufferevent_getfd(bev);
}

/*
 * Ends a connection that took too long to send its request: a 408 if the
 * socket takes it, then shutdown, which evhttp reads as EOF and frees the
 * connection. Nothing else is written on it at this point (the previous
 * reply is complete), so the 408 cannot interleave.
 */
static void
http_cut(struct http *h, int fd, struct http_conn *c)
{
	char msg[256];
	int n, len;

	len = snprintf(msg, sizeof msg,
	    "{\"detail\":\"request not complete within %d s\"}",
	    h->request_timeout);
	n = snprintf(msg + len + 1, sizeof msg - (size_t)len - 1,
	    "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json"
	    "\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
	    len);
	(void)!send(fd, msg + len + 1, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)!send(fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_RDWR);
	c->cut = 1;
	h->stats.cut++;
	log_info("http: fd %d: request not complete within %d s: closed", fd,
	    h->request_timeout);
}

/* Bytes the kernel received on a TCP socket (0 if it cannot say). */
static uint64_t
http_rx_bytes(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;

	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return 0;
	return ti.tcpi_bytes_received;
}

/*
 * Applies the request deadline to one waiting connection: once bytes came
 * in since it began to wait, a request has begun, and this census is its
 * start (so the limit holds to within a census period).
 */
static void
http_check_deadline(struct http *h, int fd, struct http_conn *c, double now)
{
	if (h->request_timeout <= 0 || c->state != HTTP_CONN_WAITING || c->cut)
		return;
	if (c->started == 0) {
		if (http_rx_bytes(fd) <= c->rx_mark)
			return;
		c->started = now;
	}
	if (now - c->started >= h->request_timeout)
		http_cut(h, fd, c);
}

/*
 * Counts this process's client connections, forgets closed ones, and
 * enforces the request deadlines. Returns the count.
 */
static int
http_census(struct http *h)
{
	struct http_conn *c;
	struct dirent *de;
	double now = http_now();
	char *end;
	size_t i;
	DIR *d;
	long fd;
	int n = 0, self;

	for (i = 0; i < h->nconns; i++)
		h->conns[i].seen = 0;
	if ((d = opendir("/proc/self/fd")) == NULL) {
		/* No /proc: no count, so never pause. */
		h->estimate = 0;
		return 0;
	}
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		fd = strtol(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || fd == self ||
		    !http_is_client(h, (int)fd) ||
		    (c = http_conn_get(h, (int)fd)) == NULL)
			continue;
		c->seen = 1;
		n++;
		http_check_deadline(h, (int)fd, c, now);
	}
	closedir(d);
	for (i = 0; i < h->nconns; i++)
		if (h->conns[i].used && !h->conns[i].seen)
			memset(&h->conns[i], 0, sizeof h->conns[i]);
	h->estimate = n;
	h->stats.connections = n;
	return n;
}

/* Pauses or resumes accepting by the connection count. */
static void
http_flow(struct http *h, int count)
{
	struct evconnlistener *l;
	struct timeval tv;

	if (h->max_conns <= 0 && h->request_timeout <= 0)
		return;
	l = h->sock != NULL ? evhttp_bound_socket_get_listener(h->sock) : NULL;
	if (l != NULL && h->max_conns > 0 && count >= h->max_conns &&
	    !h->stats.paused) {
		evconnlistener_disable(l);
		h->stats.paused = 1;
		h->stats.pauses++;
		log_warnx("http: %d connections (SANDPOOL_MAX_CONNECTIONS): "
			  "new ones wait",
		    count);
	} else if (l != NULL && count < h->max_conns && h->stats.paused) {
		evconnlistener_enable(l);
		h->stats.paused = 0;
		log_info("http: %d connections: accepting again", count);
	}
	tv.tv_sec = 0;
	tv.tv_usec =
	    (h->stats.paused ? HTTP_SWEEP_PAUSED_MS : HTTP_SWEEP_MS) * 1000;
	if (tv.tv_usec >= 1000000) {
		tv.tv_sec = tv.tv_usec / 1000000;
		tv.tv_usec %= 1000000;
	}
	evtimer_add(h->sweep, &tv);
}

/* The periodic census. */
static void
http_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;

	(void)fd;
	(void)what;
	http_flow(h, http_census(h));
}

/*
 * evhttp accepted a connection (its fd is open, not yet handed over).
 * Returns NULL: evhttp makes its usual bufferevent.
 */
static struct bufferevent *
http_on_accept(struct event_base *base, void *arg)
{
	struct http *h = arg;

	(void)base;
	if (h->max_conns > 0 && ++h->estimate >= h->max_conns)
		http_flow(h, http_census(h));
	return NULL;
}

/* A reply went out completely: the connection waits for its next request. */
static void
http_on_complete(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	struct http_conn *c;
	int fd = http_req_fd(req);

	if ((c = http_conn_get(h, fd)) == NULL)
		return;
	c->state = HTTP_CONN_WAITING;
	c->rx_mark = http_rx_bytes(fd);
	c->started = 0;
}

/* A whole request arrived: no deadline while it is handled. */
static void
http_on_request(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	struct http_conn *c;

	if ((c = http_conn_get(h, http_req_fd(req))) != NULL) {
		c->state = HTTP_CONN_HANDLING;
		c->started = 0;
	}
	evhttp_request_set_on_complete_cb(req, http_on_complete, h);
	h->cb(req, h->arg);
}

/* Binds the listener and configures evhttp. */
struct http *
http_new(struct event_base *base, const struct http_params *p,
    http_request_cb cb, void *arg, char **cause)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	struct http *h;
	int saved;

	*cause = NULL;
	h = xcalloc(1, sizeof *h);
	h->base = base;
	h->cb = cb;
	h->arg = arg;
	h->max_conns = p->max_connections;
	h->request_timeout = p->request_timeout;
	if ((h->evh = evhttp_new(base)) == NULL) {
		free(h);
		*cause = xstrdup("cannot make an HTTP server");
		return NULL;
	}
	errno = 0;
	if (p->fd >= 0)
		h->sock = evhttp_accept_socket_with_handle(h->evh, p->fd);
	else
		h->sock = evhttp_bind_socket_with_handle(
		    h->evh, p->host, (unsigned short)p->port);
	if (h->sock == NULL) {
		saved = errno;
		xasprintf(cause, "cannot listen on %s%s%s:%d: %s",
		    strchr(p->host, ':') != NULL ? "[" : "", p->host,
		    strchr(p->host, ':') != NULL ? "]" : "", p->port,
		    saved != 0 ? strerror(saved) : "address not usable");
		evhttp_free(h->evh);
		free(h);
		return NULL;
	}
	h->port = p->port;
	if (getsockname(evhttp_bound_socket_get_fd(h->sock),
		(struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			h->port =
			    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	evhttp_set_max_body_size(h->evh, (ev_ssize_t)p->max_body);
	evhttp_set_max_headers_size(h->evh, (ev_ssize_t)p->max_headers);
	evhttp_set_timeout(h->evh, p->timeout);
	evhttp_set_allowed_methods(h->evh,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(h->evh, http_on_accept, h);
	evhttp_set_gencb(h->evh, http_on_request, h);
	h->sweep = evtimer_new(base, http_on_sweep, h);
	http_flow(h, 0);
	return h;
}

/* Closes the listening socket. */
void
http_stop_accepting(struct http *h)
{
	if (h == NULL || h->sock == NULL)
		return;
	evhttp_del_accept_socket(h->evh, h->sock);
	h->sock = NULL;
	h->stats.paused = 0;
}

/* Frees the server and every connection it still has. */
void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	if (h->sweep != NULL)
		event_free(h->sweep);
	evhttp_free(h->evh);
	free(h->conns);
	free(h);
}

/* Copies the counters. */
void
http_get_stats(const struct http *h, struct http_stats *st)
{
	*st = h->stats;
}

/* Sends the one reply of a request. */
void
http_reply_json(
    struct evhttp_request *req, int status, const char *body, size_t len)
{
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);

	evhttp_remove_header(hdrs, "Content-Type");
	evhttp_add_header(hdrs, "Content-Type", "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	evhttp_send_reply(req, status, http_reason(status), NULL);
}

/* Makes the request body contiguous and returns it. */
const char *
http_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *p;

	*len = evbuffer_get_length(in);
	if (*len == 0)
		return "";
	p = (const char *)evbuffer_pullup(in, -1);
	return p != NULL ? p : "";
}

/* Reason phrases of the statuses this server sends. */
const char *
http_reason(int status)
{
	/* clang-format off */
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		{ 200, "OK" },
		{ 201, "Created" },
		{ 204, "No Content" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 413, "Payload Too Large" },
		{ 422, "Unprocessable Entity" },
		{ 500, "Internal Server Error" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
	};
	/* clang-format on */
	size_t i;

	for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return status >= 500 ? "Server Error"
	    : status >= 400  ? "Client Error"
			     : "OK";
}
