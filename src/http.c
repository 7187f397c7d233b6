/*
 * http: owns the evhttp server, its listening socket, the limits evhttp
 * 2.1 lacks (a cap on connections, a deadline for each request), and the
 * intake that streams requests under one path prefix (/proxy/). evhttp
 * does the protocol work for everything else (keep-alive, Content-Length
 * and chunked request bodies, header and body size limits, the idle
 * timeout); this module configures it, funnels every request into one
 * callback and every reply through one helper, which also keeps the Date
 * header text of the current second.
 *
 * Connections and deadlines. libevent 2.1 tells nobody when a server
 * connection closes, so the connections are counted from the kernel's
 * side: a census lists this process's TCP sockets accepted on our port
 * (fd and inode, so that a reused fd is a new connection). evhttp's
 * bufferevent hook says when one more arrived; at the cap the listener is
 * paused (clients wait in the kernel's backlog) until a census finds a
 * free slot. The same census gives each connection its request deadline:
 * a connection waiting for a request (after accept, or after its last
 * reply went out) that starts receiving one must finish it within
 * request_timeout, or it is answered 408 and shut down; evhttp then frees
 * it as after any EOF. A connection whose request is being handled is
 * never cut here. Streams are counted like any connection; a stream's
 * head is under the same deadline (the intake gathers it while the
 * connection waits), and from the head on the stream is "handled": its
 * body is read as the stream's user asks for it, each read under the idle
 * timeout, and the connection waits again once the stream hands it back.
 * A body left unread after an early reply is dropped for at most
 * request_timeout (and HTTP_DISCARD_MAX bytes) before the connection is
 * closed, so that no client can hold one by trickling a body nobody reads.
 *
 * Why an intake. libevent 2.1.12's evhttp reads a whole request body into
 * memory before it calls the request callback, and fails it past the body
 * limit. Its incremental hooks do not help an incoming request: the header
 * callback and the chunk callback (evhttp_request_set_header_cb,
 * _set_chunked_cb) are honoured on incoming requests, but the request
 * object is made inside evhttp (evhttp_associate_new_request_with_
 * connection) and is never shown to the caller before its body is read,
 * and 2.1 has no "new request" hook (evhttp_set_newreqcb is 2.2). Raising
 * the body limit would buffer 100 MB uploads. A filter bufferevent between
 * evhttp and the socket (evhttp_set_bevcb) would see the bytes first, but
 * evhttp then declares a reply written when the filter has taken it, not
 * when the socket has, and frees the connection (and the unsent tail) at
 * once after a "Connection: close" reply; in 2.1.12 a filter also leaves
 * output queued while evhttp has EV_WRITE disabled (a plain GET hangs).
 *
 * So the intake sits on the socket bufferevent evhttp uses (made by
 * evhttp_set_bevcb exactly as evhttp would make it) as an evbuffer
 * callback on its input buffer, which libevent runs synchronously when a
 * read appends, before evhttp's read callback parses anything. The
 * intake moves the new bytes aside ("held"), finds each request head, and
 * gives every ordinary request (head and body, tracked with the same
 * framing rules as evhttp) back to evhttp untouched. A request whose
 * method and path make it a stream is not given to evhttp at all: once
 * evhttp is idle between requests (reading, nothing unparsed), the intake
 * takes the bufferevent over (its own callbacks; a read timeout only
 * while the body is awaited), hands the parsed head to the stream
 * callback, feeds the body out of "held" on demand with the socket read
 * turned off above a high mark, and writes the reply itself (chunked when
 * its length is unknown), pacing it with the bufferevent's write
 * watermark. When the reply is out and the body read (or discarded),
 * evhttp's callbacks, timeouts and watermarks are put back and it goes on
 * with the next request as if nothing had happened. The connection's
 * close callback (evhttp_connection_set_closecb) ends a stream whose
 * client went away. Anything the intake cannot parse makes it step aside
 * for the rest of that connection ("opaque"): evhttp then sees the raw
 * bytes and answers them as it would anyway.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <netinet/in.h>
/* Not <netinet/tcp.h>: glibc's struct tcp_info lacks tcpi_bytes_received. */
#include <linux/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
/* Stream input held at most before the socket read is turned off. */
#define HTTP_IN_MAX (256 * 1024)
/* Reply output above which writers are told to wait ... */
#define HTTP_OUT_HIGH (256 * 1024)
/* ... and below which they are told to go on (the write low watermark). */
#define HTTP_OUT_LOW (64 * 1024)
/* Request body dropped at most after an early reply, then close. */
#define HTTP_DISCARD_MAX (16L * 1024 * 1024)
/* Longest chunk-size or trailer line. */
#define HTTP_MAX_LINE 8192
/* Most headers of a streamed request. */
#define HTTP_MAX_HEADERS 256
/* Head bytes allowed beyond max_headers (the request line). */
#define HTTP_HEAD_SLACK 8192
/* Connection table buckets. */
#define HTTP_NBUCKETS 256
/* Longest wait between checks for evhttp to go idle (ms). */
#define HTTP_POLL_MAX_MS 100

/* How the intake treats the bytes of one connection. */
enum http_in {
	HTTP_IN_HEAD,	/* between requests: gathering the next head */
	HTTP_IN_PASS,	/* an ordinary request's body: goes to evhttp */
	HTTP_IN_STREAM, /* a stream's head was read: the rest is held */
	HTTP_IN_OPAQUE	/* lost track: everything goes to evhttp */
};

/* Body framing states. */
enum http_dec_state {
	HTTP_DEC_LENGTH,  /* Content-Length bytes left */
	HTTP_DEC_SIZE,	  /* a chunk-size line */
	HTTP_DEC_DATA,	  /* chunk data left */
	HTTP_DEC_TRAILER, /* trailer lines after the last chunk */
	HTTP_DEC_DONE
};

/* A request body's framing, as evhttp reads it. */
struct http_dec {
	enum http_dec_state st;
	long long left;
};

/* What the connection's zero-delay event does next. */
enum http_next {
	HTTP_NEXT_NONE,
	HTTP_NEXT_TAKEOVER, /* check whether evhttp is idle; take over */
	HTTP_NEXT_NOTIFY,   /* give the taken-over stream to stream_cb */
	HTTP_NEXT_HANDBACK, /* the stream is done: back to evhttp */
	HTTP_NEXT_CLOSE	    /* close the connection */
};

/* Where a stream is. */
enum http_st_state {
	HTTP_ST_PENDING, /* head read, evhttp not idle yet */
	HTTP_ST_USER,	 /* given to stream_cb: the user owns it */
	HTTP_ST_ENDED	 /* replied: output draining, body being dropped */
};

struct http_stream {
	struct http_conn *c;
	enum http_st_state state;
	char *buf; /* the head's strings */
	char *method, *target;
	int minor; /* HTTP/1.minor */
	struct http_header hdrs[HTTP_MAX_HEADERS];
	size_t nhdrs;
	long long body_size; /* 0 none, -1 chunked */
	struct http_dec dec;
	int body_done, body_bad;
	int expect;	/* the client waits for 100 Continue */
	int continued;	/* 100 Continue was sent */
	int want_close; /* the client asked for close */
	int must_close; /* close once the reply is out */
	int started, chunked, nobody;
	long long discarded;
	int want_body, want_drain;
	struct event *deadline; /* for dropping a body after the reply */
	struct http_stream_cbs cbs;
	void *cbarg;
};

/* The intake's state for one connection that sent bytes. */
struct http_conn {
	LIST_ENTRY(http_conn) entry;
	struct http *h;
	struct bufferevent *bev;
	struct evbuffer *in, *out;
	struct evhttp_connection *evcon;
	/* evhttp's callbacks, put back after a stream. */
	bufferevent_data_cb ev_read, ev_write;
	bufferevent_event_cb ev_event;
	struct evbuffer *held; /* read, not (yet) given to evhttp */
	size_t scan;	       /* held bytes known to hold no head end */
	enum http_in state;
	struct http_dec dec; /* body of the request being passed */
	struct http_stream *st;
	int taken;     /* the stream owns the bufferevent */
	int modifying; /* our own changes to in: not new input */
	int read_off;  /* we turned the socket read off */
	enum http_next next;
	struct event *ev;
	long poll_ms;
};

/* What a client connection is doing, as far as the deadline cares. */
enum http_track_state {
	HTTP_TRACK_WAITING = 0, /* for (the rest of) a request */
	HTTP_TRACK_HANDLING	/* its request is with a callback or stream */
};

/* The census's record of one accepted connection, indexed by its fd. */
struct http_track {
	int used;
	ino_t ino; /* the socket's inode: tells fd reuse apart */
	enum http_track_state state;
	uint64_t rx_mark; /* bytes received when it began to wait */
	double started;	  /* request bytes first seen; 0 = none yet */
	int seen;	  /* found by the current census */
	int cut;	  /* already shut down for being slow */
};

struct http {
	TAILQ_ENTRY(http) entry;
	struct event_base *base;
	struct evhttp *evh;
	struct evhttp_bound_socket *sock;
	http_request_cb cb;
	void *arg;
	size_t max_head;
	int timeout;
	int port;	     /* the bound port, as accepted sockets show it */
	int max_conns;	     /* 0 = no limit */
	int request_timeout; /* seconds; 0 = no deadline */
	struct http_track *tracks; /* by fd */
	size_t ntracks;
	int estimate; /* connections: last census + accepts since */
	struct event *sweep;
	struct http_stats stats;
	char *prefix;  /* stream path prefix, or NULL */
	char *methods; /* " GET PUT " */
	http_stream_cb scb;
	void *sarg;
};

/* Every server and every intake connection of this process. */
static TAILQ_HEAD(, http) http_servers = TAILQ_HEAD_INITIALIZER(http_servers);
static LIST_HEAD(, http_conn) http_conns[HTTP_NBUCKETS];

static void http_on_input(
    struct evbuffer *, const struct evbuffer_cb_info *, void *);
static void http_intake(struct http_conn *);
static void http_schedule(struct http_conn *, enum http_next, long ms);
static void http_stream_ended(struct http_stream *);
static size_t http_held(const struct bufferevent *);

/* ------------------------------------------------------------------ */
/* Body framing. */

/*
 * Reads one LF-terminated line at the front of src into line (without
 * CR LF). Returns 1 and the raw length in *raw, 0 if incomplete, -1 if
 * too long.
 */
static int
http_line(struct evbuffer *src, char *line, size_t cap, size_t *raw)
{
	struct evbuffer_ptr p;
	size_t len;

	p = evbuffer_search_eol(src, NULL, NULL, EVBUFFER_EOL_LF);
	if (p.pos < 0)
		return evbuffer_get_length(src) >= cap ? -1 : 0;
	len = (size_t)p.pos;
	if (len >= cap)
		return -1;
	evbuffer_copyout(src, line, len);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[len - 1] = '\0';
	*raw = len + 1;
	return 1;
}

/* Consumes n framing bytes: moved to pass, or dropped. */
static void
http_dec_skip(struct evbuffer *src, struct evbuffer *pass, size_t n)
{
	if (pass != NULL)
		evbuffer_remove_buffer(src, pass, n);
	else
		evbuffer_drain(src, n);
}

/*
 * Runs a body's framing over the front of src. With pass, every byte of
 * the body (framing too) is moved there; with out, data bytes are copied
 * to out (at most max, counted in *nout) and framing is dropped; with
 * neither, everything is dropped. Chunk sizes and trailers are read as
 * evhttp reads them. Returns 1 at the body's end, 0 when more is needed
 * (or out is full), -1 on broken framing.
 */
static int
http_dec_run(struct http_dec *d, struct evbuffer *src, struct evbuffer *pass,
    char *out, size_t max, size_t *nout)
{
	char line[HTTP_MAX_LINE], *end;
	size_t avail, n, raw;
	long long sz;
	int r;

	for (;;) {
		avail = evbuffer_get_length(src);
		switch (d->st) {
		case HTTP_DEC_DONE:
			return 1;
		case HTTP_DEC_LENGTH:
		case HTTP_DEC_DATA:
			if (d->left == 0) {
				d->st = d->st == HTTP_DEC_LENGTH
				    ? HTTP_DEC_DONE
				    : HTTP_DEC_SIZE;
				continue;
			}
			if (avail == 0)
				return 0;
			n = (unsigned long long)d->left < avail
			    ? (size_t)d->left
			    : avail;
			if (out != NULL) {
				if (n > max - *nout)
					n = max - *nout;
				if (n == 0)
					return 0;
				evbuffer_remove(src, out + *nout, n);
				*nout += n;
			} else
				http_dec_skip(src, pass, n);
			d->left -= (long long)n;
			continue;
		case HTTP_DEC_SIZE:
			if ((r = http_line(src, line, sizeof line, &raw)) <= 0)
				return r;
			http_dec_skip(src, pass, raw);
			if (line[0] == '\0')
				continue; /* the CRLF after a chunk */
			errno = 0;
			sz = strtoll(line, &end, 16);
			if ((*end != '\0' && *end != ' ') || sz < 0 ||
			    errno == ERANGE)
				return -1;
			d->left = sz;
			d->st = sz == 0 ? HTTP_DEC_TRAILER : HTTP_DEC_DATA;
			continue;
		case HTTP_DEC_TRAILER:
			if ((r = http_line(src, line, sizeof line, &raw)) <= 0)
				return r;
			http_dec_skip(src, pass, raw);
			if (line[0] == '\0')
				d->st = HTTP_DEC_DONE;
			continue;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Request heads. */

/* A parsed request head: strings point into buf. */
struct http_head {
	char *buf;
	char *method, *target, *version;
	struct http_header hdrs[HTTP_MAX_HEADERS];
	size_t nhdrs;
};

/*
 * Finds the end of the head at the front of held: returns its length
 * (through the empty line), 0 if incomplete, -1 if too long.
 */
static ssize_t
http_head_end(struct http_conn *c)
{
	struct evbuffer_ptr p, q;
	size_t start;
	char ch;

	for (;;) {
		start = c->scan;
		if (evbuffer_ptr_set(c->held, &p, start, EVBUFFER_PTR_SET) != 0)
			return 0;
		q = evbuffer_search_eol(c->held, &p, NULL, EVBUFFER_EOL_LF);
		if (q.pos < 0)
			return evbuffer_get_length(c->held) > c->h->max_head
			    ? -1
			    : 0;
		c->scan = (size_t)q.pos + 1;
		if (c->scan > c->h->max_head)
			return -1;
		if ((size_t)q.pos == start)
			return (ssize_t)c->scan;
		if ((size_t)q.pos == start + 1) {
			evbuffer_copyout_from(c->held, &p, &ch, 1);
			if (ch == '\r')
				return (ssize_t)c->scan;
		}
	}
}

/* 1 if s (a header value) holds a control character. */
static int
http_has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 && *s != '\t')
			return 1;
	return 0;
}

/*
 * Parses the len bytes of a head at the front of held (not consumed) the
 * way evhttp does. Returns NULL if evhttp would refuse it (or we cannot
 * tell), so that it is left to evhttp.
 */
static struct http_head *
http_head_parse(struct evbuffer *held, size_t len)
{
	/* Not zeroed: hdrs (4 KiB) is written up to nhdrs only. */
	struct http_head *hd = xmalloc(sizeof *hd);
	char *p, *nl, *line, *colon, *sp, *e;

	hd->method = hd->target = hd->version = NULL;
	hd->nhdrs = 0;
	hd->buf = xmalloc(len + 1);
	evbuffer_copyout(held, hd->buf, len);
	hd->buf[len] = '\0';
	for (p = hd->buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		*nl = '\0';
		if (nl > p && nl[-1] == '\r')
			nl[-1] = '\0';
		line = p;
		if (hd->method == NULL) {
			/* "METHOD SP target SP version", trailing spaces ok */
			e = line + strlen(line);
			while (e > line && e[-1] == ' ')
				*--e = '\0';
			if ((sp = strchr(line, ' ')) == NULL)
				goto bad;
			*sp = '\0';
			hd->method = line;
			hd->target = sp + 1;
			if ((sp = strrchr(hd->target, ' ')) == NULL ||
			    sp == hd->target)
				goto bad;
			*sp = '\0';
			hd->version = sp + 1;
			continue;
		}
		if (*line == '\0')
			break;
		if (*line == ' ' || *line == '\t')
			goto bad; /* obsolete folding */
		if ((colon = strchr(line, ':')) == NULL ||
		    hd->nhdrs == HTTP_MAX_HEADERS)
			goto bad;
		*colon = '\0';
		p = colon + 1;
		p += strspn(p, " ");
		e = p + strlen(p);
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (http_has_ctl(line) || http_has_ctl(p))
			goto bad;
		hd->hdrs[hd->nhdrs].name = line;
		hd->hdrs[hd->nhdrs].value = p;
		hd->nhdrs++;
	}
	if (hd->method == NULL)
		goto bad;
	return hd;
bad:
	free(hd->buf);
	free(hd);
	return NULL;
}

/* Frees a head. */
static void
http_head_free(struct http_head *hd)
{
	if (hd == NULL)
		return;
	free(hd->buf);
	free(hd);
}

/* The first header called name, or NULL; *count gets how many there are. */
static const char *
http_find(const struct http_header *h, size_t n, const char *name, int *count)
{
	const char *v = NULL;
	size_t i;

	if (count != NULL)
		*count = 0;
	for (i = 0; i < n; i++) {
		if (strcasecmp(h[i].name, name) != 0)
			continue;
		if (v == NULL)
			v = h[i].value;
		if (count != NULL)
			(*count)++;
	}
	return v;
}

/* 1 if [s, e) (a transfer-coding, OWS trimmed) is "chunked". */
static int
http_is_chunked(const char *s, const char *e)
{
	const char *t;

	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	for (t = s; t < e && *t != ' ' && *t != '\t' && *t != ';'; t++)
		;
	return t - s == 7 && strncasecmp(s, "chunked", 7) == 0;
}

/* 1 if the comma-separated list value holds token (any case). */
static int
http_has_token(const char *value, const char *token)
{
	size_t n = strlen(token);
	const char *p = value, *e;

	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		e = p + strcspn(p, ",");
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == n && strncasecmp(p, token, n) == 0)
			return 1;
		p = strchr(p, ',');
	}
	return 0;
}

/*
 * The body framing evhttp gives a head: *size 0 (none), -1 (chunked) or
 * the Content-Length. Returns -1 where evhttp refuses the request.
 */
static int
http_head_framing(const struct http_head *hd, long long *size)
{
	static const char *const bodied[] = {"POST", "PUT", "PATCH", "GET",
	    "DELETE", "OPTIONS", "CONNECT", NULL};
	const char *cl, *v, *comma;
	int ncl, nte = 0, chunked = 0, i;
	size_t j;
	char *end;

	cl = http_find(hd->hdrs, hd->nhdrs, "Content-Length", &ncl);
	for (j = 0; j < hd->nhdrs; j++) {
		if (strcasecmp(hd->hdrs[j].name, "Transfer-Encoding") != 0)
			continue;
		nte++;
		if (chunked)
			return -1; /* nothing may follow chunked */
		v = hd->hdrs[j].value;
		while ((comma = strchr(v, ',')) != NULL) {
			if (http_is_chunked(v, comma))
				return -1;
			v = comma + 1;
		}
		chunked = http_is_chunked(v, v + strlen(v));
	}
	if (ncl > 1 || (nte > 0 && ncl > 0))
		return -1;
	*size = 0;
	for (i = 0; bodied[i] != NULL; i++)
		if (strcmp(hd->method, bodied[i]) == 0)
			break;
	if (bodied[i] == NULL)
		return 0; /* HEAD, TRACE, unknown: no body */
	if (chunked) {
		*size = -1;
		return 0;
	}
	if (cl == NULL)
		return 0;
	errno = 0;
	*size = strtoll(cl, &end, 10);
	if (*cl == '\0' || *end != '\0' || *size < 0 || errno == ERANGE)
		return -1;
	return 0;
}

/* Sets a decoder for a body of size (0, -1 chunked, or a length). */
static void
http_dec_init(struct http_dec *d, long long size)
{
	d->left = size > 0 ? size : 0;
	d->st = size < 0 ? HTTP_DEC_SIZE
	    : size > 0	 ? HTTP_DEC_LENGTH
			 : HTTP_DEC_DONE;
}

/* The path of a target: origin form as is, absolute form past "//host". */
static const char *
http_target_path(const char *t)
{
	const char *p;

	if (strncasecmp(t, "http://", 7) != 0 &&
	    strncasecmp(t, "https://", 8) != 0)
		return t;
	p = strstr(t, "//") + 2;
	return p + strcspn(p, "/?");
}

/* 1 if a parsed head is a stream: its method and path prefix match. */
static int
http_head_streams(const struct http *h, const struct http_head *hd)
{
	char m[32];
	const char *path;

	if (h->prefix == NULL || strlen(hd->method) > sizeof m - 3)
		return 0;
	snprintf(m, sizeof m, " %s ", hd->method);
	if (strstr(h->methods, m) == NULL)
		return 0;
	if (strcmp(hd->version, "HTTP/1.1") != 0 &&
	    strcmp(hd->version, "HTTP/1.0") != 0)
		return 0;
	path = http_target_path(hd->target);
	if (strncmp(path, h->prefix, strlen(h->prefix)) != 0)
		return 0;
	/* Characters evhttp would refuse in a URI stay its business. */
	return strpbrk(hd->target, " \t\"<>\\^`{|}") == NULL;
}

/* ------------------------------------------------------------------ */
/* Census: the connection cap and the request deadlines. */

/* Monotonic seconds. */
static double
http_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The table entry of fd, grown as needed. */
static struct http_track *
http_track_at(struct http *h, int fd)
{
	size_t n;

	if (fd < 0)
		return NULL;
	if ((size_t)fd >= h->ntracks) {
		n = h->ntracks > 0 ? h->ntracks : 64;
		while (n <= (size_t)fd)
			n *= 2;
		h->tracks = xreallocarray(h->tracks, n, sizeof *h->tracks);
		memset(h->tracks + h->ntracks, 0,
		    (n - h->ntracks) * sizeof *h->tracks);
		h->ntracks = n;
	}
	return &h->tracks[fd];
}

/*
 * The entry of an accepted connection on fd, reset if the fd is new or
 * now holds another socket; NULL if fd is not a socket.
 */
static struct http_track *
http_track_get(struct http *h, int fd)
{
	struct http_track *c;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return NULL;
	c = http_track_at(h, fd);
	if (!c->used || c->ino != st.st_ino) {
		memset(c, 0, sizeof *c);
		c->used = 1;
		c->ino = st.st_ino;
		c->state = HTTP_TRACK_WAITING;
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
http_cut(struct http *h, int fd, struct http_track *c)
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
http_check_deadline(struct http *h, int fd, struct http_track *c, double now)
{
	if (h->request_timeout <= 0 || c->state != HTTP_TRACK_WAITING || c->cut)
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
	struct http_track *c;
	struct dirent *de;
	double now = http_now();
	char *end;
	size_t i;
	DIR *d;
	long fd;
	int n = 0, self;

	for (i = 0; i < h->ntracks; i++)
		h->tracks[i].seen = 0;
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
		    (c = http_track_get(h, (int)fd)) == NULL)
			continue;
		c->seen = 1;
		n++;
		http_check_deadline(h, (int)fd, c, now);
	}
	closedir(d);
	for (i = 0; i < h->ntracks; i++)
		if (h->tracks[i].used && !h->tracks[i].seen)
			memset(&h->tracks[i], 0, sizeof h->tracks[i]);
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

/* The request on fd is with a callback or a stream: no deadline. */
static void
http_track_handling(struct http *h, int fd)
{
	struct http_track *c;

	if ((c = http_track_get(h, fd)) != NULL) {
		c->state = HTTP_TRACK_HANDLING;
		c->started = 0;
	}
}

/*
 * The request on fd was answered: the connection waits for the next one,
 * which has begun already if pending (its bytes are buffered).
 */
static void
http_track_waiting(struct http *h, int fd, int pending)
{
	struct http_track *c;

	if ((c = http_track_get(h, fd)) == NULL)
		return;
	c->state = HTTP_TRACK_WAITING;
	c->rx_mark = http_rx_bytes(fd);
	c->started = pending ? http_now() : 0;
}

/* A reply went out completely: the connection waits for its next request. */
static void
http_on_complete(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev;

	bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	http_track_waiting(arg, http_req_fd(req),
	    bev != NULL &&
		(evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
		    http_held(bev) > 0));
}

/* A whole request arrived: no deadline while it is handled. */
static void
http_on_request(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;

	http_track_handling(h, http_req_fd(req));
	evhttp_request_set_on_complete_cb(req, http_on_complete, h);
	h->cb(req, h->arg);
}

/* ------------------------------------------------------------------ */
/* Connections. */

/* The table bucket of a bufferevent. */
static struct http_conn *
http_conn_find(const struct bufferevent *bev)
{
	struct http_conn *c;
	size_t b = ((uintptr_t)bev >> 4) % HTTP_NBUCKETS;

	LIST_FOREACH (c, &http_conns[b], entry)
		if (c->bev == bev)
			return c;
	return NULL;
}

/* Bytes the intake holds for a connection, not yet given to anyone. */
static size_t
http_held(const struct bufferevent *bev)
{
	struct http_conn *c = http_conn_find(bev);

	return c != NULL ? evbuffer_get_length(c->held) : 0;
}

static void http_on_close(struct evhttp_connection *, void *);
static void http_on_conn_ev(evutil_socket_t, short, void *);

/*
 * Starts tracking a connection at its first bytes: evhttp is reading its
 * first request then, so the bufferevent's callbacks are evhttp's and
 * their argument is the evhttp connection. NULL if that is not so (the
 * intake then steps aside).
 */
static struct http_conn *
http_conn_new(struct bufferevent *bev)
{
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	struct evhttp_connection *evcon;
	struct evhttp *evh;
	struct http_conn *c;
	struct http *h;
	void *arg;

	bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
	if ((evcon = arg) == NULL || rcb == NULL ||
	    evhttp_connection_get_bufferevent(evcon) != bev)
		return NULL;
	evh = evhttp_connection_get_server(evcon);
	TAILQ_FOREACH (h, &http_servers, entry)
		if (h->evh == evh)
			break;
	if (h == NULL)
		return NULL;
	c = xcalloc(1, sizeof *c);
	c->h = h;
	c->bev = bev;
	c->in = bufferevent_get_input(bev);
	c->out = bufferevent_get_output(bev);
	c->evcon = evcon;
	c->ev_read = rcb;
	c->ev_write = wcb;
	c->ev_event = ecb;
	c->held = evbuffer_new();
	c->ev = evtimer_new(h->base, http_on_conn_ev, c);
	c->state = HTTP_IN_HEAD;
	LIST_INSERT_HEAD(
	    &http_conns[((uintptr_t)bev >> 4) % HTTP_NBUCKETS], c, entry);
	evhttp_connection_set_closecb(evcon, http_on_close, c);
	return c;
}

/* Frees a stream. */
static void
http_stream_free(struct http_stream *st)
{
	if (st == NULL)
		return;
	if (st->deadline != NULL)
		event_free(st->deadline);
	free(st->buf);
	free(st);
}

/* Forgets a connection (its bufferevent is about to go). */
static void
http_conn_free(struct http_conn *c)
{
	LIST_REMOVE(c, entry);
	evbuffer_remove_cb(c->in, http_on_input, c->bev);
	evhttp_connection_set_closecb(c->evcon, NULL, NULL);
	event_free(c->ev);
	evbuffer_free(c->held);
	http_stream_free(c->st);
	free(c);
}

/* evhttp is freeing the connection: end its stream, forget it. */
static void
http_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;
	struct http_stream *st = c->st;

	if (st != NULL && st->state == HTTP_ST_USER) {
		st->state = HTTP_ST_ENDED;
		if (st->cbs.on_close != NULL)
			st->cbs.on_close(st->cbarg);
	}
	http_conn_free(c);
}

/*
 * Opens evhttp's input for our own additions: they are not new input, and
 * a socket bufferevent keeps its input's end frozen but while it reads.
 */
static void
http_in_open(struct http_conn *c)
{
	c->modifying++;
	evbuffer_unfreeze(c->in, 0);
}

/* Closes evhttp's input again. */
static void
http_in_close(struct http_conn *c)
{
	evbuffer_freeze(c->in, 0);
	c->modifying--;
}

/* Moves bytes from held into evhttp's input (opened). */
static void
http_release(struct http_conn *c, size_t n)
{
	if (n == (size_t)-1)
		evbuffer_add_buffer(c->in, c->held);
	else
		evbuffer_remove_buffer(c->held, c->in, n);
}

/* Steps aside for the rest of the connection. */
static void
http_opaque(struct http_conn *c)
{
	c->state = HTTP_IN_OPAQUE;
	http_release(c, (size_t)-1);
}

/*
 * 1 if evhttp waits for a new request with nothing unparsed: everything
 * given to it is consumed, it reads, and with its own read callback.
 */
static int
http_evhttp_idle(struct http_conn *c)
{
	bufferevent_data_cb rcb;

	if (c->state != HTTP_IN_STREAM || c->taken ||
	    evbuffer_get_length(c->in) != 0)
		return 0;
	bufferevent_getcb(c->bev, &rcb, NULL, NULL, NULL);
	return rcb == c->ev_read &&
	    (bufferevent_get_enabled(c->bev) & EV_READ) != 0;
}

/*
 * Sets the connection's timeouts: the server's for writes, and for reads
 * only with reads (evhttp's own, or a stream's body still to come): a
 * stream waiting for its runtime or sending its reply expects nothing
 * from the client, for as long as that takes.
 */
static void
http_set_timeouts(struct http_conn *c, int reads)
{
	struct timeval tv = {c->h->timeout, 0};

	if (c->h->timeout <= 0)
		bufferevent_set_timeouts(c->bev, NULL, NULL);
	else
		bufferevent_set_timeouts(c->bev, reads ? &tv : NULL, &tv);
}

static void http_st_on_read(struct bufferevent *, void *);
static void http_st_on_write(struct bufferevent *, void *);
static void http_st_on_event(struct bufferevent *, short, void *);

/*
 * Takes the bufferevent from evhttp for the pending stream; the stream
 * callback follows from the loop.
 */
static void
http_takeover(struct http_conn *c)
{
	c->taken = 1;
	/* evhttp's last reply put the connection back to waiting. */
	http_track_handling(c->h, (int)bufferevent_getfd(c->bev));
	bufferevent_setcb(
	    c->bev, http_st_on_read, http_st_on_write, http_st_on_event, c);
	http_set_timeouts(c, !c->st->body_done);
	bufferevent_setwatermark(c->bev, EV_WRITE, HTTP_OUT_LOW, 0);
	bufferevent_enable(c->bev, EV_WRITE);
	if (evbuffer_get_length(c->held) < HTTP_IN_MAX)
		bufferevent_enable(c->bev, EV_READ);
	else {
		bufferevent_disable(c->bev, EV_READ);
		c->read_off = 1;
	}
	http_schedule(c, HTTP_NEXT_NOTIFY, 0);
}

/* A stream's head was read: take over now if evhttp is idle, else poll. */
static void
http_stream_pending(struct http_conn *c)
{
	if (http_evhttp_idle(c)) {
		http_takeover(c);
		return;
	}
	c->poll_ms = 1;
	http_schedule(c, HTTP_NEXT_TAKEOVER, c->poll_ms);
}

/* Puts evhttp's callbacks and settings back and lets it read on. */
static void
http_handback(struct http_conn *c)
{
	http_stream_free(c->st);
	c->st = NULL;
	c->taken = 0;
	c->read_off = 0;
	c->state = HTTP_IN_HEAD;
	c->scan = 0;
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	http_set_timeouts(c, 1);
	bufferevent_setcb(
	    c->bev, c->ev_read, c->ev_write, c->ev_event, c->evcon);
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
	/* Its next request is under the deadline; it may have begun. */
	http_track_waiting(c->h, (int)bufferevent_getfd(c->bev),
	    evbuffer_get_length(c->held) > 0 || evbuffer_get_length(c->in) > 0);
	http_intake(c);
	if (evbuffer_get_length(c->in) > 0)
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

/* The connection's event: takeover polls, notify, hand back, close. */
static void
http_on_conn_ev(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	enum http_next next = c->next;

	c->next = HTTP_NEXT_NONE;
	switch (next) {
	case HTTP_NEXT_NONE:
		break;
	case HTTP_NEXT_TAKEOVER:
		if (c->st == NULL || c->taken)
			break;
		if (http_evhttp_idle(c)) {
			http_takeover(c);
			break;
		}
		if (c->poll_ms < HTTP_POLL_MAX_MS)
			c->poll_ms *= 2;
		http_schedule(c, HTTP_NEXT_TAKEOVER, c->poll_ms);
		break;
	case HTTP_NEXT_NOTIFY:
		c->st->state = HTTP_ST_USER;
		c->h->scb(c->st, c->h->sarg);
		break;
	case HTTP_NEXT_HANDBACK:
		http_handback(c);
		break;
	case HTTP_NEXT_CLOSE:
		/* Calls http_on_close, which frees c. */
		evhttp_connection_free(c->evcon);
		break;
	}
}

/* Arms the connection's event for next in ms. */
static void
http_schedule(struct http_conn *c, enum http_next next, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	c->next = next;
	evtimer_add(c->ev, &tv);
}

/* Makes the stream of a parsed head (which it takes). */
static struct http_stream *
http_stream_new(struct http_conn *c, struct http_head *hd, long long size)
{
	struct http_stream *st = xcalloc(1, sizeof *st);
	const char *v;

	st->c = c;
	st->state = HTTP_ST_PENDING;
	/* The head is complete: the request is the stream's from here. */
	http_track_handling(c->h, (int)bufferevent_getfd(c->bev));
	st->buf = hd->buf;
	st->method = hd->method;
	st->target = (char *)http_target_path(hd->target);
	st->minor = strcmp(hd->version, "HTTP/1.0") == 0 ? 0 : 1;
	memcpy(st->hdrs, hd->hdrs, hd->nhdrs * sizeof hd->hdrs[0]);
	st->nhdrs = hd->nhdrs;
	st->body_size = size;
	http_dec_init(&st->dec, size);
	st->body_done = size == 0;
	v = http_find(st->hdrs, st->nhdrs, "Expect", NULL);
	st->expect = v != NULL && strcasecmp(v, "100-continue") == 0 &&
	    st->minor == 1 && !st->body_done;
	v = http_find(st->hdrs, st->nhdrs, "Connection", NULL);
	st->want_close =
	    v != NULL ? http_has_token(v, "close") : st->minor == 0;
	if (st->minor == 0 && v != NULL && !http_has_token(v, "keep-alive"))
		st->want_close = 1;
	free(hd);
	return st;
}

static void http_intake_run(struct http_conn *);

/*
 * Processes held bytes between requests: finds heads, gives ordinary
 * requests to evhttp, starts streams.
 */
static void
http_intake(struct http_conn *c)
{
	http_in_open(c);
	http_intake_run(c);
	http_in_close(c);
}

/* http_intake's loop, with evhttp's input open. */
static void
http_intake_run(struct http_conn *c)
{
	struct http_head *hd;
	long long size;
	ssize_t n;
	int r;

	for (;;) {
		switch (c->state) {
		case HTTP_IN_OPAQUE:
			http_release(c, (size_t)-1);
			return;
		case HTTP_IN_STREAM:
			return;
		case HTTP_IN_PASS:
			r = http_dec_run(
			    &c->dec, c->held, c->in, NULL, 0, NULL);
			if (r < 0)
				http_opaque(c);
			else if (r == 0)
				return;
			else
				c->state = HTTP_IN_HEAD;
			continue;
		case HTTP_IN_HEAD:
			if (evbuffer_get_length(c->held) == 0)
				return;
			if ((n = http_head_end(c)) == 0)
				return;
			c->scan = 0;
			if (n < 0 ||
			    (hd = http_head_parse(c->held, (size_t)n)) ==
				NULL) {
				http_opaque(c);
				continue;
			}
			if (http_head_framing(hd, &size) != 0) {
				http_head_free(hd);
				http_opaque(c);
				continue;
			}
			if (http_head_streams(c->h, hd)) {
				evbuffer_drain(c->held, (size_t)n);
				c->st = http_stream_new(c, hd, size);
				c->state = HTTP_IN_STREAM;
				http_stream_pending(c);
				return;
			}
			http_head_free(hd);
			http_release(c, (size_t)n);
			http_dec_init(&c->dec, size);
			c->state = size != 0 ? HTTP_IN_PASS : HTTP_IN_HEAD;
			continue;
		}
	}
}

/* Moves the last n bytes of in (a read just appended them) to held. */
static void
http_take_new(struct http_conn *c, size_t n)
{
	size_t len = evbuffer_get_length(c->in);
	struct evbuffer *old;

	http_in_open(c);
	if (n >= len)
		evbuffer_add_buffer(c->held, c->in);
	else {
		old = evbuffer_new();
		evbuffer_remove_buffer(c->in, old, len - n);
		evbuffer_add_buffer(c->held, c->in);
		evbuffer_add_buffer(c->in, old);
		evbuffer_free(old);
	}
	http_in_close(c);
}

/* Turns the socket read off while a stream holds too much input. */
static void
http_hold_check(struct http_conn *c)
{
	if (c->taken && !c->read_off &&
	    evbuffer_get_length(c->held) >= HTTP_IN_MAX) {
		bufferevent_disable(c->bev, EV_READ);
		c->read_off = 1;
	}
}

/*
 * Bytes were appended to a connection's input (a socket read): take
 * them aside before evhttp's read callback sees them.
 */
static void
http_on_input(
    struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct bufferevent *bev = arg;
	struct http_conn *c;

	if (info->n_added == 0)
		return;
	if ((c = http_conn_find(bev)) == NULL &&
	    (c = http_conn_new(bev)) == NULL) {
		evbuffer_remove_cb(in, http_on_input, bev);
		return;
	}
	if (c->modifying || c->state == HTTP_IN_OPAQUE)
		return;
	http_take_new(c, info->n_added);
	if (c->state == HTTP_IN_STREAM) {
		http_hold_check(c);
		if (!c->taken && http_evhttp_idle(c))
			http_takeover(c);
		return;
	}
	http_intake(c);
}

/*
 * evhttp accepted a connection (its fd is open, not yet handed over):
 * counts it against the cap, and with streams makes its bufferevent as
 * evhttp would, watched by the intake. NULL: evhttp makes its usual one.
 */
static struct bufferevent *
http_on_bev(struct event_base *base, void *arg)
{
	struct http *h = arg;
	struct bufferevent *bev;

	if (h->max_conns > 0 && ++h->estimate >= h->max_conns)
		http_flow(h, http_census(h));
	if (h->prefix == NULL)
		return NULL;
	if ((bev = bufferevent_socket_new(base, -1, 0)) == NULL)
		return NULL;
	evbuffer_add_cb(bufferevent_get_input(bev), http_on_input, bev);
	return bev;
}

/* ------------------------------------------------------------------ */
/* Streams: the connection's side while taken over. */

/* Drops body bytes after the reply; 1 once the body is through. */
static int
http_stream_discard(struct http_stream *st)
{
	struct http_conn *c = st->c;
	size_t before = evbuffer_get_length(c->held);
	int r;

	if (st->body_done)
		return 1;
	r = http_dec_run(&st->dec, c->held, NULL, NULL, 0, NULL);
	st->discarded += (long long)(before - evbuffer_get_length(c->held));
	if (r < 0 || st->discarded > HTTP_DISCARD_MAX) {
		st->must_close = 1;
		return 1;
	}
	if (r == 1)
		st->body_done = 1;
	if (c->read_off && evbuffer_get_length(c->held) < HTTP_IN_MAX) {
		c->read_off = 0;
		bufferevent_enable(c->bev, EV_READ);
	}
	return r == 1;
}

/* An ended stream: hand back or close once its output is out. */
static void
http_stream_settle(struct http_stream *st)
{
	struct http_conn *c = st->c;

	if (c->next == HTTP_NEXT_HANDBACK || c->next == HTTP_NEXT_CLOSE)
		return;
	if (!st->must_close && !http_stream_discard(st))
		return;
	if (evbuffer_get_length(c->out) > 0)
		return; /* http_st_on_write comes back */
	http_schedule(
	    c, st->must_close ? HTTP_NEXT_CLOSE : HTTP_NEXT_HANDBACK, 0);
}

/* Socket read while taken over (the input callback holds the bytes). */
static void
http_st_on_read(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	struct http_stream *st = c->st;

	if (st->state == HTTP_ST_ENDED) {
		http_stream_settle(st);
		return;
	}
	if (st->state == HTTP_ST_USER && st->want_body &&
	    evbuffer_get_length(c->held) > 0) {
		st->want_body = 0;
		if (st->cbs.on_body != NULL)
			st->cbs.on_body(st->cbarg);
	}
}

/* The output went below the low watermark (or empty). */
static void
http_st_on_write(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	struct http_stream *st = c->st;

	if (st->state == HTTP_ST_ENDED) {
		http_stream_settle(st);
		return;
	}
	if (st->state == HTTP_ST_USER && st->want_drain) {
		st->want_drain = 0;
		if (st->cbs.on_drain != NULL)
			st->cbs.on_drain(st->cbarg);
	}
}

/* EOF, error or a stalled write: the client is gone. */
static void
http_st_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;
	struct http_stream *st = c->st;

	if (st->state == HTTP_ST_USER) {
		st->state = HTTP_ST_ENDED;
		if (st->cbs.on_close != NULL)
			st->cbs.on_close(st->cbarg);
	}
	st->must_close = 1;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	http_schedule(c, HTTP_NEXT_CLOSE, 0);
}

/* ------------------------------------------------------------------ */
/* Streams: the user's side. */

/* The stream's method. */
const char *
http_stream_method(const struct http_stream *st)
{
	return st->method;
}

/* The stream's request target, in origin form. */
const char *
http_stream_target(const struct http_stream *st)
{
	return st->target;
}

/* The stream's request headers. */
const struct http_header *
http_stream_headers(const struct http_stream *st, size_t *n)
{
	*n = st->nhdrs;
	return st->hdrs;
}

/* The first request header called name. */
const char *
http_stream_header(const struct http_stream *st, const char *name)
{
	return http_find(st->hdrs, st->nhdrs, name, NULL);
}

/* The request body's size: 0 none, -1 chunked. */
long long
http_stream_body_size(const struct http_stream *st)
{
	return st->body_size;
}

/* Sets the stream's event callbacks. */
void
http_stream_set_cbs(
    struct http_stream *st, const struct http_stream_cbs *cbs, void *arg)
{
	st->cbs = *cbs;
	st->cbarg = arg;
}

/* Reads request body bytes out of held. */
ssize_t
http_stream_read(struct http_stream *st, char *buf, size_t max)
{
	struct http_conn *c = st->c;
	size_t got = 0;
	int r;

	if (st->body_bad)
		return HTTP_STREAM_BAD;
	if (st->body_done)
		return 0;
	if (st->expect && !st->continued && !st->started) {
		st->continued = 1;
		evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	r = http_dec_run(&st->dec, c->held, NULL, buf, max, &got);
	if (c->read_off && evbuffer_get_length(c->held) < HTTP_IN_MAX / 2) {
		c->read_off = 0;
		bufferevent_enable(c->bev, EV_READ);
	}
	if (r < 0) {
		st->body_bad = 1;
		st->must_close = 1;
		return HTTP_STREAM_BAD;
	}
	if (r == 1) {
		st->body_done = 1;
		http_set_timeouts(c, 0);
	}
	if (got > 0)
		return (ssize_t)got;
	if (st->body_done)
		return 0;
	st->want_body = 1;
	return HTTP_STREAM_WAIT;
}

/* Starts the reply: status line, headers, framing. */
void
http_stream_reply_start(struct http_stream *st, int status,
    const struct http_header *hdrs, size_t n, long long length)
{
	struct evbuffer *out = st->c->out;
	size_t i;

	if (st->started || st->state != HTTP_ST_USER)
		return;
	st->started = 1;
	if (st->expect && !st->continued)
		st->must_close = 1; /* the body may never come */
	if (st->want_close)
		st->must_close = 1;
	evbuffer_add_printf(
	    out, "HTTP/1.%d %d %s\r\n", st->minor, status, http_reason(status));
	for (i = 0; i < n; i++)
		evbuffer_add_printf(
		    out, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
	st->nobody = status < 200 || status == 204 || status == 304;
	if (st->nobody)
		;
	else if (length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
	else if (st->minor >= 1) {
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
		st->chunked = 1;
	} else
		st->must_close = 1; /* the close ends the body */
	if (st->must_close)
		evbuffer_add_printf(out, "Connection: close\r\n");
	else if (st->minor == 0)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	evbuffer_add(out, "\r\n", 2);
}

/* Adds reply body bytes; 1 when the caller should wait for on_drain. */
int
http_stream_reply_data(struct http_stream *st, const char *data, size_t len)
{
	struct evbuffer *out = st->c->out;

	if (!st->started || st->state != HTTP_ST_USER || st->nobody || len == 0)
		return 0;
	if (st->chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add(out, data, len);
	if (st->chunked)
		evbuffer_add(out, "\r\n", 2);
	if (evbuffer_get_length(out) < HTTP_OUT_HIGH)
		return 0;
	st->want_drain = 1;
	return 1;
}

/*
 * The body left unread after the reply took longer than request_timeout
 * to come: stop reading it; the connection closes once the reply is out.
 */
static void
http_stream_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct http_stream *st = arg;
	struct http_conn *c = st->c;

	(void)fd;
	(void)what;
	if (st->body_done || st->must_close)
		return;
	log_info("http: fd %d: request body not complete within %d s "
		 "after the reply: closed",
	    (int)bufferevent_getfd(c->bev), c->h->request_timeout);
	c->h->stats.cut++;
	st->must_close = 1;
	bufferevent_disable(c->bev, EV_READ);
	http_stream_settle(st);
}

/* The user is done with a stream: settle its connection. */
static void
http_stream_ended(struct http_stream *st)
{
	struct http *h = st->c->h;
	struct timeval tv = {h->request_timeout, 0};

	st->state = HTTP_ST_ENDED;
	st->want_body = st->want_drain = 0;
	if (!st->body_done && !st->body_bad && st->expect && !st->continued)
		st->must_close = 1;
	if (!st->body_done && !st->must_close && h->request_timeout > 0) {
		st->deadline =
		    evtimer_new(h->base, http_stream_on_deadline, st);
		evtimer_add(st->deadline, &tv);
	}
	http_stream_settle(st);
}

/* Ends the reply. */
void
http_stream_reply_end(struct http_stream *st)
{
	if (st->state != HTTP_ST_USER)
		return;
	if (!st->started)
		http_stream_reply_start(st, 204, NULL, 0, 0);
	if (st->chunked)
		evbuffer_add(st->c->out, "0\r\n\r\n", 5);
	http_stream_ended(st);
}

/* Cuts the reply short: the connection closes once the output is out. */
void
http_stream_reply_abort(struct http_stream *st)
{
	if (st->state != HTTP_ST_USER)
		return;
	st->must_close = 1;
	http_stream_ended(st);
}

/* The whole reply at once, with a JSON body. */
void
http_stream_reply_json(struct http_stream *st, int status,
    const struct http_header *hdrs, size_t n, const char *body, size_t len)
{
	struct http_header all[16];
	size_t i, k = 0;

	for (i = 0; i < n && k < sizeof all / sizeof all[0] - 1; i++)
		all[k++] = hdrs[i];
	all[k].name = "Content-Type";
	all[k++].value = "application/json";
	http_stream_reply_start(st, status, all, k, (long long)len);
	http_stream_reply_data(st, body, len);
	http_stream_reply_end(st);
}

/* ------------------------------------------------------------------ */
/* The server. */

/*
 * The Date header of replies, made once a second rather than by evhttp
 * for every reply (formatting it was a tenth of the cost of a /health
 * reply). One server per process, so one cache.
 */
static struct {
	time_t when;
	char text[64]; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
} http_date;

/* The RFC 7231 IMF-fixdate of now, recomputed when the second changes. */
static const char *
http_date_now(void)
{
	static const char days[7][4] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	if (now == http_date.when && http_date.text[0] != '\0')
		return http_date.text;
	if (gmtime_r(&now, &tm) == NULL)
		return NULL;
	snprintf(http_date.text, sizeof http_date.text,
	    "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
	    tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	http_date.when = now;
	return http_date.text;
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
	h->timeout = p->timeout;
	h->max_head = p->max_headers + HTTP_HEAD_SLACK;
	evhttp_set_max_body_size(h->evh, (ev_ssize_t)p->max_body);
	evhttp_set_max_headers_size(h->evh, (ev_ssize_t)p->max_headers);
	evhttp_set_timeout(h->evh, p->timeout);
	evhttp_set_allowed_methods(h->evh,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
		EVHTTP_REQ_PATCH);
	if (p->stream_prefix != NULL && p->stream_cb != NULL) {
		h->prefix = xstrdup(p->stream_prefix);
		xasprintf(&h->methods, " %s ",
		    p->stream_methods != NULL ? p->stream_methods : "");
		h->scb = p->stream_cb;
		h->sarg = p->stream_arg;
	}
	evhttp_set_bevcb(h->evh, http_on_bev, h);
	evhttp_set_gencb(h->evh, http_on_request, h);
	h->sweep = evtimer_new(base, http_on_sweep, h);
	TAILQ_INSERT_TAIL(&http_servers, h, entry);
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
	/* Each connection's close callback forgets its intake state. */
	evhttp_free(h->evh);
	TAILQ_REMOVE(&http_servers, h, entry);
	free(h->tracks);
	free(h->prefix);
	free(h->methods);
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
	const char *date = http_date_now();

	evhttp_remove_header(hdrs, "Content-Type");
	evhttp_add_header(hdrs, "Content-Type", "application/json");
	/* evhttp adds its own Date only when there is none. */
	if (date != NULL)
		evhttp_add_header(hdrs, "Date", date);
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
