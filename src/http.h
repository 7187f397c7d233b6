/*
 * http: the inbound HTTP server glue over evhttp: one listening socket,
 * the limits (body, headers, connections, idle and request time), one
 * generic callback, the one helper every reply goes through, and streamed
 * requests: requests under one path prefix (/proxy/) whose bodies and
 * replies are passed through piecewise with bounded memory instead of
 * being buffered by evhttp (the limits but the body's apply to them too).
 */
#ifndef SANDPOOL_HTTP_H
#define SANDPOOL_HTTP_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct evhttp_request;
struct http;
struct http_stream;

typedef void (*http_request_cb)(struct evhttp_request *, void *arg);
/*
 * A streamed request's head is read and its connection is the stream's:
 * the callee must end it with http_stream_reply_end/_abort (or _json),
 * unless on_close comes first. Called from the loop.
 */
typedef void (*http_stream_cb)(struct http_stream *, void *arg);

struct http_params {
	const char *host;	   /* bind address (HOST) */
	int port;		   /* PORT */
	size_t max_body;	   /* largest buffered request body, bytes */
	size_t max_headers;	   /* largest request header block, bytes */
	int timeout;		   /* seconds a connection may stay silent */
	int request_timeout;	   /* seconds to send a request once begun
				      (a stream: its head, and a body left
				      unread after its reply); 0 = no limit */
	int max_connections;	   /* connections served at once (by this
				      process); 0 = no limit */
	int fd;			   /* a bound, listening socket to use, or -1 */
	const char *stream_prefix; /* path prefix of streamed requests, or
				      NULL for none */
	const char *stream_methods; /* methods streamed: "GET PUT ..." */
	http_stream_cb stream_cb;
	void *stream_arg;
};

/* What the server has done to protect itself, for logs and tests. */
struct http_stats {
	int connections;      /* client connections at the last count */
	int paused;	      /* 1 while accepting is paused (at the limit) */
	unsigned long cut;    /* connections closed for a slow request */
	unsigned long pauses; /* times accepting was paused */
};

/* One header of a streamed request or reply; both strings borrowed. */
struct http_header {
	const char *name;
	const char *value;
};

/* Events of a streamed request; each may come many times. */
struct http_stream_cbs {
	void (*on_body)(void *arg);  /* http_stream_read has more to give */
	void (*on_drain)(void *arg); /* the reply's output went low again */
	/*
	 * The client went away (or the server stops): the stream is gone
	 * when this returns and is not to be replied to.
	 */
	void (*on_close)(void *arg);
};

/*
 * Binds host:port on base (or takes over p->fd when it is >= 0, as forked
 * workers sharing one listener do) and sends every request to cb (streamed
 * ones to stream_cb). Returns NULL with *cause (caller frees) if the address
 * cannot be bound.
 */
struct http *http_new(struct event_base *, const struct http_params *,
    http_request_cb, void *, char **cause);
/* Closes the listening socket; open connections keep being served. */
void http_stop_accepting(struct http *);
/*
 * Frees the server, its connections and their unanswered requests
 * (streams get on_close).
 */
void http_free(struct http *);
/* Copies the counters into *st. */
void http_get_stats(const struct http *, struct http_stats *st);

/*
 * Answers req with status and a JSON body (Content-Type application/json).
 * Call it exactly once per request, even after the client went away (that
 * is what frees the request then); req is gone when it returns.
 */
void http_reply_json(
    struct evhttp_request *, int status, const char *body, size_t len);
/* The request body (borrowed, contiguous, not NUL-terminated) and size. */
const char *http_body(struct evhttp_request *, size_t *len);
/* The standard reason phrase of a status ("Not Found"). */
const char *http_reason(int status);

/* The stream's method ("PUT"), borrowed. */
const char *http_stream_method(const struct http_stream *);
/* The request target as sent, in origin form ("/proxy/x/y?q=1"). */
const char *http_stream_target(const struct http_stream *);
/* The request headers in the order sent; *n gets their count. */
const struct http_header *http_stream_headers(
    const struct http_stream *, size_t *n);
/* The first header called name (any case), or NULL. */
const char *http_stream_header(const struct http_stream *, const char *name);
/* The body's size: 0 for none, -1 when unknown (chunked). */
long long http_stream_body_size(const struct http_stream *);
/* Sets the event callbacks (any may be NULL) and their arg. */
void http_stream_set_cbs(
    struct http_stream *, const struct http_stream_cbs *, void *arg);
/*
 * Reads up to max bytes of the request body: returns how many, 0 at its
 * end, HTTP_STREAM_WAIT when none are there yet (on_body follows), or
 * HTTP_STREAM_BAD when its framing is broken (reply; the connection
 * closes after the reply).
 */
ssize_t http_stream_read(struct http_stream *, char *buf, size_t max);
#define HTTP_STREAM_WAIT (-1)
#define HTTP_STREAM_BAD (-2)
/*
 * Starts the reply: status, headers (framing and hop-by-hop ones are the
 * stream's business and must not be given) and the body's length, or -1
 * when unknown (sent chunked, or close-delimited to HTTP/1.0 clients).
 */
void http_stream_reply_start(struct http_stream *, int status,
    const struct http_header *, size_t n, long long length);
/*
 * Adds body bytes to the reply. Returns 1 when the output is full: wait
 * for on_drain before adding more; 0 otherwise.
 */
int http_stream_reply_data(struct http_stream *, const char *, size_t);
/* Ends the reply; the stream is gone when it returns. */
void http_stream_reply_end(struct http_stream *);
/*
 * Cuts a started reply short (the body could not be completed): the
 * client sees the connection close early. The stream is gone.
 */
void http_stream_reply_abort(struct http_stream *);
/*
 * The whole reply at once: status, extra headers and a JSON body. The
 * stream is gone when it returns.
 */
void http_stream_reply_json(struct http_stream *, int status,
    const struct http_header *, size_t n, const char *body, size_t len);

#endif
