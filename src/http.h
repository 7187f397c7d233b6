/*
 * http: the inbound HTTP server glue over evhttp: one listening socket,
 * the limits (body, headers, connections, idle and request time), one
 * generic callback, and the one helper every reply goes through.
 */
#ifndef SANDPOOL_HTTP_H
#define SANDPOOL_HTTP_H

#include <stddef.h>

struct event_base;
struct evhttp_request;
struct http;

typedef void (*http_request_cb)(struct evhttp_request *, void *arg);

struct http_params {
	const char *host;    /* bind address (HOST) */
	int port;	     /* PORT */
	size_t max_body;     /* largest request body, bytes */
	size_t max_headers;  /* largest request header block, bytes */
	int timeout;	     /* seconds a connection may stay silent */
	int request_timeout; /* seconds to send a request once begun;
				0 = no limit */
	int max_connections; /* connections served at once (by this
				process); 0 = no limit */
	int fd;		     /* a bound, listening socket to use, or -1 */
};

/* What the server has done to protect itself, for logs and tests. */
struct http_stats {
	int connections;      /* client connections at the last count */
	int paused;	      /* 1 while accepting is paused (at the limit) */
	unsigned long cut;    /* connections closed for a slow request */
	unsigned long pauses; /* times accepting was paused */
};

/*
 * Binds host:port on base (or takes over p->fd when it is >= 0, as forked
 * workers sharing one listener do) and sends every request to cb. Returns NULL
 * with *cause (caller frees) if the address cannot be bound.
 */
struct http *http_new(struct event_base *, const struct http_params *,
    http_request_cb, void *, char **cause);
/* Closes the listening socket; open connections keep being served. */
void http_stop_accepting(struct http *);
/* Frees the server, its connections and their unanswered requests. */
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

#endif
