/*
 * http: the inbound HTTP server glue over evhttp: one listening socket,
 * the limits (body, headers, idle timeout), one generic callback, and the
 * one helper every reply goes through.
 */
#ifndef SANDPOOL_HTTP_H
#define SANDPOOL_HTTP_H

#include <stddef.h>

struct event_base;
struct evhttp_request;
struct http;

typedef void (*http_request_cb)(struct evhttp_request *, void *arg);

struct http_params {
	const char *host;   /* bind address (HOST) */
	int port;	    /* PORT */
	size_t max_body;    /* largest request body, bytes */
	size_t max_headers; /* largest request header block, bytes */
	int timeout;	    /* seconds an idle or slow client may take */
	int fd;		    /* a bound, listening socket to use, or -1 */
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
