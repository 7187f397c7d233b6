/*
 * bench_load: a small HTTP/1.1 load generator on libevent, for sandpool's
 * benchmarks. N keep-alive connections (TCP or a unix socket) each send one
 * fixed request (method, path, headers, body), wait for the whole response,
 * and send the next, for a duration or a number of requests. It prints
 * requests per second and the latency median, p99 and maximum of the
 * successful (2xx) responses, computed from every sample sorted (no
 * histogram buckets, so the figures are exact), as one human line and one
 * JSON line. -o writes every sample (microseconds, one a line) so that a
 * driver can pool interleaved batches.
 *
 * Latency is from the first byte written to the last byte of the response
 * read, on an open connection; connecting is not part of it. Responses
 * must carry Content-Length or be chunked, as evhttp's are.
 *
 * Owns the event base, the connections and the sample array; it is one
 * process, one thread, so its own cost is one core at most.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define LOAD_MAX_CONNS 4096
#define LOAD_MAX_HEADERS 32
#define LOAD_READ_CHUNK 16384
/* Largest response accepted (headers and body), bytes. */
#define LOAD_MAX_RESPONSE (64UL * 1024 * 1024)
/* Pause before reconnecting after a connection failed, microseconds. */
#define LOAD_RETRY_US 10000
/* -s: the body's placeholder for the request's sequence number. */
#define LOAD_SEQ_MARK "########"
#define LOAD_SEQ_LEN 8
#define LOAD_SEQ_MOD 100000000L
/* Failed connects in a row after which the target is deemed down. */
#define LOAD_MAX_CONNECT_FAILURES 200

/* What a connection is doing. */
enum load_state {
	LOAD_CONNECTING,
	LOAD_WRITING,
	LOAD_READING,
	LOAD_IDLE, /* waiting to reconnect */
	LOAD_DONE
};

struct load_conn {
	struct load *load;
	int fd;
	enum load_state state;
	struct event *rev;   /* readable (persistent while open) */
	struct event *wev;   /* writable: connect done, or room to write */
	struct event *retry; /* reconnect pause */
	size_t woff;	     /* bytes of the request written */
	char *rbuf;	     /* response bytes read so far */
	size_t rlen, rcap;
	char *req;	  /* own copy of the request (-s), or NULL */
	uint64_t t_start; /* ns, first byte of the request written */
	int responses;	  /* on this connection */
};

struct load {
	struct event_base *base;
	struct event *deadline;
	struct event *sigint;
	/* Where to. */
	const char *unix_path;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* What. */
	char *req;
	size_t req_len;
	int head;	    /* HEAD: responses have no body */
	long seq_off;	    /* -s: where the sequence number goes, or -1 */
	const char *expect; /* -e: text a 2xx response must contain */
	/* How much. */
	int nconns;
	long count;	 /* requests to send in all; 0: by duration */
	double duration; /* seconds */
	double warmup;	 /* seconds whose samples are dropped */
	long issued;
	int stopping;
	int verbose;
	int connect_failures; /* in a row */
	/* Results. */
	uint64_t t0, t_warm, t_last;
	long ok, non2xx, unexpected, errors, reconnects, dropped;
	uint64_t *samples; /* ns */
	size_t nsamples, cap;
	struct load_conn *conns;
};

static void load_conn_start(struct load_conn *);
static void load_conn_send(struct load_conn *);

/* Now, in nanoseconds, from a monotonic clock. */
static uint64_t
load_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Prints a message and exits with status 1. */
static void __attribute__((__noreturn__, __format__(printf, 1, 2)))
load_die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench_load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* malloc that exits on failure. */
static void *
load_alloc(size_t n)
{
	void *p = calloc(1, n);

	if (p == NULL)
		load_die("out of memory");
	return p;
}

/* realloc that exits on failure. */
static void *
load_grow(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL)
		load_die("out of memory");
	return p;
}

/* Keeps one latency sample unless it falls in the warm-up. */
static void
load_sample(struct load *l, uint64_t start, uint64_t end)
{
	if (start < l->t_warm) {
		l->dropped++;
		return;
	}
	if (l->nsamples == l->cap) {
		l->cap = l->cap != 0 ? l->cap * 2 : 65536;
		l->samples = load_grow(l->samples, l->cap * sizeof *l->samples);
	}
	l->samples[l->nsamples++] = end - start;
	l->t_last = end;
}

/* 1 if one more request may be sent. */
static int
load_may_send(struct load *l)
{
	if (l->stopping)
		return 0;
	return l->count == 0 || l->issued < l->count;
}

/* Stops the loop once every connection is done. */
static void
load_check_end(struct load *l)
{
	int i;

	for (i = 0; i < l->nconns; i++)
		if (l->conns[i].state != LOAD_DONE)
			return;
	event_base_loopexit(l->base, NULL);
}

/* Closes a connection's socket (the connection itself stays). */
static void
load_conn_close(struct load_conn *c)
{
	if (c->rev != NULL) {
		event_free(c->rev);
		c->rev = NULL;
	}
	if (c->wev != NULL) {
		event_free(c->wev);
		c->wev = NULL;
	}
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
	c->rlen = 0;
}

/* Marks a connection finished. */
static void
load_conn_done(struct load_conn *c)
{
	load_conn_close(c);
	c->state = LOAD_DONE;
	load_check_end(c->load);
}

/* A connection failed; it reconnects after a pause, or finishes. */
static void
load_conn_fail(struct load_conn *c, const char *what, int err)
{
	struct load *l = c->load;
	struct timeval tv = {0, LOAD_RETRY_US};

	if (c->state == LOAD_WRITING || c->state == LOAD_READING)
		l->errors++;
	else if (++l->connect_failures >= LOAD_MAX_CONNECT_FAILURES)
		load_die("%s: %s, %d times in a row: giving up", what,
		    err != 0 ? strerror(err) : "connection closed",
		    l->connect_failures);
	if (l->verbose)
		fprintf(stderr, "bench_load: %s: %s\n", what,
		    err != 0 ? strerror(err) : "connection closed");
	load_conn_close(c);
	if (!load_may_send(l)) {
		load_conn_done(c);
		return;
	}
	l->reconnects++;
	c->state = LOAD_IDLE;
	evtimer_add(c->retry, &tv);
}

/* Length of a complete chunked body at p, or 0 if more is needed. */
static size_t
load_chunked_len(const char *p, size_t n)
{
	size_t off = 0, sz;
	char *end;
	const char *nl;

	for (;;) {
		nl = memmem(p + off, n - off, "\r\n", 2);
		if (nl == NULL)
			return 0;
		sz = strtoul(p + off, &end, 16);
		off = (size_t)(nl - p) + 2;
		if (sz == 0) {
			/* No trailers are expected: the final CRLF. */
			if (n - off < 2)
				return 0;
			return off + 2;
		}
		if (n - off < sz + 2)
			return 0;
		off += sz + 2;
	}
}

/*
 * Looks at what was read: -1 if the response is bad, 0 if incomplete, else
 * its total length, with its status and whether the server closes.
 */
static long
load_parse(struct load *l, const char *p, size_t n, int *status, int *closes)
{
	const char *hend, *line, *eol, *v;
	size_t hlen, body = 0, clen;
	int chunked = 0, have_len = 0;

	if ((hend = memmem(p, n, "\r\n\r\n", 4)) == NULL)
		return n > 65536 ? -1 : 0;
	hlen = (size_t)(hend - p) + 4;
	if (n < 12 || strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	*status = atoi(p + 9);
	*closes = strncmp(p, "HTTP/1.0", 8) == 0;
	for (line = (const char *)memchr(p, '\n', hlen) + 1; line < hend;
	     line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(hend + 2 - line));
		if (eol == NULL)
			break;
		if ((v = memchr(line, ':', (size_t)(eol - line))) == NULL)
			continue;
		for (v++; *v == ' ' || *v == '\t'; v++)
			;
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			body = strtoul(v, NULL, 10);
			have_len = 1;
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
		    strncasecmp(v, "chunked", 7) == 0)
			chunked = 1;
		else if (strncasecmp(line, "Connection:", 11) == 0)
			*closes = strncasecmp(v, "close", 5) == 0   ? 1
			    : strncasecmp(v, "keep-alive", 10) == 0 ? 0
								    : *closes;
	}
	if (l->head || *status == 204 || *status == 304 ||
	    (*status >= 100 && *status < 200))
		return (long)hlen;
	if (chunked) {
		clen = load_chunked_len(p + hlen, n - hlen);
		return clen == 0 ? 0 : (long)(hlen + clen);
	}
	if (!have_len)
		return -1; /* until-close bodies are not supported */
	if (hlen + body > LOAD_MAX_RESPONSE)
		return -1;
	return n >= hlen + body ? (long)(hlen + body) : 0;
}

/* One response is complete: account for it and go on. */
static void
load_conn_response(struct load_conn *c, size_t len, int status, int closes)
{
	struct load *l = c->load;
	uint64_t now = load_now();

	if (status >= 200 && status < 300 && l->expect != NULL &&
	    memmem(c->rbuf, len, l->expect, strlen(l->expect)) == NULL) {
		l->unexpected++;
		if (l->verbose)
			fprintf(stderr, "bench_load: unexpected: %.*s\n",
			    (int)(len < 512 ? len : 512), c->rbuf);
	} else if (status >= 200 && status < 300) {
		l->ok++;
		load_sample(l, c->t_start, now);
	} else
		l->non2xx++;
	c->responses++;
	if (len < c->rlen)
		l->errors++; /* bytes after the response: not pipelined */
	c->rlen = 0;
	if (closes) {
		load_conn_close(c);
		if (!load_may_send(l)) {
			load_conn_done(c);
			return;
		}
		load_conn_start(c);
		return;
	}
	if (!load_may_send(l)) {
		load_conn_done(c);
		return;
	}
	load_conn_send(c);
}

/* The socket is readable: read, and finish the response if complete. */
static void
load_conn_read(struct load_conn *c)
{
	struct load *l = c->load;
	int status = 0, closes = 0;
	size_t room;
	ssize_t n;
	long len;

	for (;;) {
		if (c->rcap - c->rlen < LOAD_READ_CHUNK) {
			c->rcap = c->rcap * 2 + LOAD_READ_CHUNK;
			c->rbuf = load_grow(c->rbuf, c->rcap);
		}
		room = c->rcap - c->rlen;
		n = read(c->fd, c->rbuf + c->rlen, room);
		if (n > 0) {
			c->rlen += (size_t)n;
			if ((size_t)n < room)
				break; /* drained for now */
			continue;
		}
		if (n == 0) {
			load_conn_fail(c, "read", 0);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		load_conn_fail(c, "read", errno);
		return;
	}
	len = load_parse(l, c->rbuf, c->rlen, &status, &closes);
	if (len < 0) {
		load_conn_fail(c, "bad response", EPROTO);
		return;
	}
	if (len > 0)
		load_conn_response(c, (size_t)len, status, closes);
}

/* Writes what is left of the request; then waits for the response. */
static void
load_conn_write(struct load_conn *c)
{
	struct load *l = c->load;
	ssize_t n;

	const char *req = c->req != NULL ? c->req : l->req;

	while (c->woff < l->req_len) {
		n = write(c->fd, req + c->woff, l->req_len - c->woff);
		if (n > 0) {
			c->woff += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			event_add(c->wev, NULL);
			return;
		}
		load_conn_fail(c, "write", n < 0 ? errno : 0);
		return;
	}
	c->state = LOAD_READING;
}

/* Sends the next request on an open connection. */
static void
load_conn_send(struct load_conn *c)
{
	struct load *l = c->load;
	char seq[32];

	if (l->seq_off >= 0) {
		if (c->req == NULL) {
			c->req = load_alloc(l->req_len);
			memcpy(c->req, l->req, l->req_len);
		}
		snprintf(seq, sizeof seq, "%0*ld", LOAD_SEQ_LEN,
		    l->issued % LOAD_SEQ_MOD);
		memcpy(c->req + l->seq_off, seq, LOAD_SEQ_LEN);
	}
	l->issued++;
	c->woff = 0;
	c->rlen = 0;
	c->state = LOAD_WRITING;
	c->t_start = load_now();
	load_conn_write(c);
}

/* Socket events of a connection. */
static void
load_on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	(void)fd;
	switch (c->state) {
	case LOAD_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			load_conn_fail(c, "connect", err);
			return;
		}
		c->load->connect_failures = 0;
		event_add(c->rev, NULL);
		if (!load_may_send(c->load)) {
			load_conn_done(c);
			return;
		}
		load_conn_send(c);
		return;
	case LOAD_WRITING:
		if (what & EV_WRITE)
			load_conn_write(c);
		else
			load_conn_read(c); /* an early answer or a close */
		return;
	case LOAD_READING:
		load_conn_read(c);
		return;
	default:
		/* Idle keep-alive: only a close can arrive. */
		load_conn_read(c);
		return;
	}
}

/* Opens a connection's socket and starts connecting. */
static void
load_conn_start(struct load_conn *c)
{
	struct load *l = c->load;
	int fd, one = 1;

	fd = socket(
	    l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		load_die("socket: %s", strerror(errno));
	if (l->addr.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, load_on_sock, c);
	c->wev = event_new(l->base, fd, EV_WRITE, load_on_sock, c);
	c->state = LOAD_CONNECTING;
	if (connect(fd, (struct sockaddr *)&l->addr, l->addrlen) == 0 ||
	    errno == EINPROGRESS || errno == EAGAIN) {
		event_add(c->wev, NULL);
		return;
	}
	load_conn_fail(c, "connect", errno);
}

/* The reconnect pause is over. */
static void
load_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;

	(void)fd;
	(void)what;
	if (!load_may_send(c->load)) {
		load_conn_done(c);
		return;
	}
	load_conn_start(c);
}

/* The duration is over (or SIGINT): no new requests. */
static void
load_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;
	int i;

	(void)fd;
	(void)what;
	l->stopping = 1;
	for (i = 0; i < l->nconns; i++) {
		struct load_conn *c = &l->conns[i];

		/* Requests in flight finish; the others end now. */
		if (c->state == LOAD_IDLE || c->state == LOAD_CONNECTING) {
			evtimer_del(c->retry);
			load_conn_done(c);
		}
	}
	load_check_end(l);
}

/* The warm-up is over: samples count from now on. */
static void
load_on_warm(evutil_socket_t fd, short what, void *arg)
{
	struct load *l = arg;

	(void)fd;
	(void)what;
	l->t_warm = load_now();
}

/* Orders samples. */
static int
load_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sample at percentile p of the sorted samples, microseconds. */
static double
load_pct(const struct load *l, double p)
{
	size_t i;

	if (l->nsamples == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(l->nsamples - 1) + 0.5);
	if (i >= l->nsamples)
		i = l->nsamples - 1;
	return (double)l->samples[i] / 1000.0;
}

/* Resolves host:port into l->addr. */
static void
load_resolve(struct load *l, const char *host, const char *port)
{
	struct addrinfo hints, *res;
	int rc;

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		load_die("%s:%s: %s", host, port, gai_strerror(rc));
	memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
	l->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
}

/* Splits a target into where to connect and the request path. */
static const char *
load_target(struct load *l, const char *target, char **hostp)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&l->addr;
	const char *p, *path;
	char *host, *port;

	if (l->unix_path != NULL) {
		if (strlen(l->unix_path) >= sizeof sun->sun_path)
			load_die("%s: socket path too long", l->unix_path);
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, l->unix_path);
		l->addrlen = sizeof *sun;
		*hostp = strdup("localhost");
		if (strncmp(target, "http://", 7) == 0 &&
		    (path = strchr(target + 7, '/')) != NULL)
			return path;
		return target;
	}
	if (strncmp(target, "http://", 7) != 0)
		load_die(
		    "%s: the target must be http://host:port/path", target);
	p = target + 7;
	if ((path = strchr(p, '/')) == NULL)
		path = p + strlen(p);
	host = strndup(p, (size_t)(path - p));
	*hostp = strdup(host);
	if (*path == '\0')
		path = "/";
	if ((port = strrchr(host, ':')) != NULL)
		*port++ = '\0';
	load_resolve(l, host, port != NULL ? port : "80");
	free(host);
	return path;
}

/* Builds the request bytes. */
static void
load_build(struct load *l, const char *method, const char *path,
    const char *host, const char **hdrs, int nhdrs, const char *body,
    size_t body_len, int seq)
{
	const char *mark;

	size_t cap =
	    256 + strlen(method) + strlen(path) + strlen(host) + body_len;
	char *r;
	int i, n, has_ctype = 0;

	for (i = 0; i < nhdrs; i++) {
		cap += strlen(hdrs[i]) + 2;
		if (strncasecmp(hdrs[i], "Content-Type:", 13) == 0)
			has_ctype = 1;
	}
	r = load_alloc(cap);
	n = snprintf(
	    r, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host);
	for (i = 0; i < nhdrs; i++)
		n += snprintf(r + n, cap - (size_t)n, "%s\r\n", hdrs[i]);
	if (body != NULL) {
		if (!has_ctype)
			n += snprintf(r + n, cap - (size_t)n,
			    "Content-Type: application/json\r\n");
		n += snprintf(r + n, cap - (size_t)n, "Content-Length: %zu\r\n",
		    body_len);
	}
	n += snprintf(r + n, cap - (size_t)n, "\r\n");
	if (body != NULL) {
		if (seq &&
		    (mark = memmem(
			 body, body_len, LOAD_SEQ_MARK, LOAD_SEQ_LEN)) != NULL)
			l->seq_off = n + (mark - body);
		else if (seq)
			load_die("-s: the body has no %s", LOAD_SEQ_MARK);
		memcpy(r + n, body, body_len);
		n += (int)body_len;
	}
	if (seq && body == NULL)
		load_die("-s needs a body");
	l->req = r;
	l->req_len = (size_t)n;
	l->head = strcasecmp(method, "HEAD") == 0;
}

/* Reads a whole file (for -B). */
static char *
load_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n;

	if (f == NULL)
		load_die("%s: %s", path, strerror(errno));
	*len = 0;
	do {
		if (cap - *len < 4096)
			buf = load_grow(buf, cap = cap * 2 + 4096);
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
	} while (n > 0);
	fclose(f);
	return buf;
}

/* Prints the usage. */
static void
load_usage(FILE *f)
{
	fprintf(f,
	    "usage: bench_load [-c conns] [-d seconds | -n count] [-w warmup]\n"
	    "                  [-m method] [-H 'Name: value']... [-b body | "
	    "-B file]\n"
	    "                  [-e text] [-s] [-u unix-socket] [-o "
	    "samples-file] "
	    "[-v] target\n"
	    "target: http://host:port/path, or /path with -u\n"
	    "-s: the first " LOAD_SEQ_MARK
	    " in the body becomes each request's "
	    "number\n"
	    "-e: a 2xx response without text counts as unexpected\n"
	    "Prints rps and latency p50/p99/max of the 2xx responses; exits 2 "
	    "if any\nrequest failed, was answered other than 2xx, or was "
	    "unexpected.\n");
}

int
main(int argc, char *argv[])
{
	const char *method = "GET", *body = NULL, *out = NULL, *path;
	const char *hdrs[LOAD_MAX_HEADERS];
	struct timeval tv;
	struct load l;
	char *host, *end;
	size_t body_len = 0, i;
	double secs;
	FILE *f;
	int ch, nhdrs = 0, c, seq = 0;

	memset(&l, 0, sizeof l);
	l.nconns = 1;
	l.duration = 5;
	l.seq_off = -1;
	while ((ch = getopt(argc, argv, "b:B:c:d:e:hH:m:n:o:su:vw:")) != -1) {
		switch (ch) {
		case 'b':
			body = optarg;
			body_len = strlen(optarg);
			break;
		case 'B':
			body = load_read_file(optarg, &body_len);
			break;
		case 'e':
			l.expect = optarg;
			break;
		case 'c':
			l.nconns = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || l.nconns < 1 ||
			    l.nconns > LOAD_MAX_CONNS)
				load_die("-c: 1 to %d", LOAD_MAX_CONNS);
			break;
		case 'd':
			l.duration = strtod(optarg, &end);
			if (*end != '\0' || l.duration <= 0)
				load_die("-d: seconds > 0");
			break;
		case 'H':
			if (nhdrs == LOAD_MAX_HEADERS)
				load_die("-H: at most %d", LOAD_MAX_HEADERS);
			if (strchr(optarg, ':') == NULL ||
			    strpbrk(optarg, "\r\n") != NULL)
				load_die("-H: 'Name: value'");
			hdrs[nhdrs++] = optarg;
			break;
		case 'm':
			method = optarg;
			break;
		case 'n':
			l.count = strtol(optarg, &end, 10);
			if (*end != '\0' || l.count < 1)
				load_die("-n: a count > 0");
			break;
		case 'o':
			out = optarg;
			break;
		case 's':
			seq = 1;
			break;
		case 'u':
			l.unix_path = optarg;
			break;
		case 'v':
			l.verbose = 1;
			break;
		case 'w':
			l.warmup = strtod(optarg, &end);
			if (*end != '\0' || l.warmup < 0)
				load_die("-w: seconds >= 0");
			break;
		case 'h':
			load_usage(stdout);
			return 0;
		default:
			load_usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1) {
		load_usage(stderr);
		return 1;
	}
	if (l.count > 0 && l.nconns > l.count)
		l.nconns = (int)l.count;
	path = load_target(&l, argv[optind], &host);
	load_build(&l, method, path, host, hdrs, nhdrs, body, body_len, seq);
	free(host);
	signal(SIGPIPE, SIG_IGN);

	if ((l.base = event_base_new()) == NULL)
		load_die("event_base_new failed");
	l.conns = load_alloc((size_t)l.nconns * sizeof *l.conns);
	l.t0 = load_now();
	l.t_warm = l.warmup > 0 ? UINT64_MAX : l.t0;
	if (l.warmup > 0) {
		tv.tv_sec = (time_t)l.warmup;
		tv.tv_usec =
		    (suseconds_t)((l.warmup - (double)tv.tv_sec) * 1e6);
		event_base_once(l.base, -1, EV_TIMEOUT, load_on_warm, &l, &tv);
	}
	if (l.count == 0) {
		secs = l.warmup + l.duration;
		tv.tv_sec = (time_t)secs;
		tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
		l.deadline = evtimer_new(l.base, load_on_stop, &l);
		evtimer_add(l.deadline, &tv);
	}
	l.sigint = evsignal_new(l.base, SIGINT, load_on_stop, &l);
	evsignal_add(l.sigint, NULL);
	for (c = 0; c < l.nconns; c++) {
		l.conns[c].load = &l;
		l.conns[c].fd = -1;
		l.conns[c].retry =
		    evtimer_new(l.base, load_on_retry, &l.conns[c]);
		load_conn_start(&l.conns[c]);
	}
	event_base_dispatch(l.base);

	/* Throughput over the measured window: warm-up end to last reply. */
	if (l.t_warm == UINT64_MAX)
		l.t_warm = l.t0; /* ended inside the warm-up */
	secs = l.t_last > l.t_warm ? (double)(l.t_last - l.t_warm) / 1e9 : 0;
	qsort(l.samples, l.nsamples, sizeof *l.samples, load_cmp);
	{
		double sum = 0;

		for (i = 0; i < l.nsamples; i++)
			sum += (double)l.samples[i];
		printf("bench_load: %ld ok, %ld non-2xx, %ld unexpected, %ld "
		       "errors in %.3f s "
		       "over %d connection%s: %.0f req/s; latency us: p50 %.1f "
		       "p99 %.1f max %.1f mean %.1f\n",
		    l.ok, l.non2xx, l.unexpected, l.errors, secs, l.nconns,
		    l.nconns == 1 ? "" : "s",
		    secs > 0 ? (double)l.nsamples / secs : 0, load_pct(&l, 50),
		    load_pct(&l, 99),
		    l.nsamples ? (double)l.samples[l.nsamples - 1] / 1000.0 : 0,
		    l.nsamples ? sum / (double)l.nsamples / 1000.0 : 0);
		printf("{\"ok\":%ld,\"non2xx\":%ld,\"unexpected\":%ld,"
		       "\"errors\":%ld,"
		       "\"reconnects\":%ld,\"samples\":%zu,\"seconds\":%.6f,"
		       "\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		       "\"max_us\":%.1f,\"mean_us\":%.1f,\"conns\":%d}\n",
		    l.ok, l.non2xx, l.unexpected, l.errors, l.reconnects,
		    l.nsamples, secs, secs > 0 ? (double)l.nsamples / secs : 0,
		    load_pct(&l, 50), load_pct(&l, 99),
		    l.nsamples ? (double)l.samples[l.nsamples - 1] / 1000.0 : 0,
		    l.nsamples ? sum / (double)l.nsamples / 1000.0 : 0,
		    l.nconns);
	}
	if (out != NULL) {
		if ((f = fopen(out, "w")) == NULL)
			load_die("%s: %s", out, strerror(errno));
		for (i = 0; i < l.nsamples; i++)
			fprintf(f, "%.1f\n", (double)l.samples[i] / 1000.0);
		if (fclose(f) != 0)
			load_die("%s: %s", out, strerror(errno));
	}
	for (c = 0; c < l.nconns; c++) {
		load_conn_close(&l.conns[c]);
		event_free(l.conns[c].retry);
		free(l.conns[c].rbuf);
		free(l.conns[c].req);
	}
	if (l.deadline != NULL)
		event_free(l.deadline);
	event_free(l.sigint);
	event_base_free(l.base);
	free(l.conns);
	free(l.samples);
	free(l.req);
	return l.errors > 0 || l.non2xx > 0 || l.unexpected > 0 || l.ok == 0
	    ? 2
	    : 0;
}
