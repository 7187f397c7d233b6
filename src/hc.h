/*
 * hc: the HTTP client glue. One libcurl multi handle driven by one libevent
 * loop (the hiperfifo pattern), with keep-alive connection reuse, used for
 * dockerd (over its unix socket) and for the runtimes inside sandboxes.
 */
#ifndef SANDPOOL_HC_H
#define SANDPOOL_HC_H

#include <stddef.h>

struct event_base;
struct hc;
struct hc_req;

/* What a finished request gives its callback. All fields are borrowed. */
struct hc_resp {
	long status;		/* HTTP status, 0 on a transport error */
	const char *body;	/* response body, NUL-terminated, never NULL */
	size_t len;		/* body length */
	const char *ctype;	/* Content-Type or NULL */
	const char *error;	/* transport error text, or NULL */
	int timed_out;		/* 1 if the deadline passed */
};

typedef void (*hc_done_cb)(const struct hc_resp *, void *arg);

/* One request. Pointers are borrowed only for the call to hc_request. */
struct hc_opts {
	const char *method;	/* "GET", "POST", ... */
	const char *url;	/* full URL; host ignored with unix_path */
	const char *unix_path;	/* connect to this unix socket, or NULL */
	const char *const *headers; /* NULL-terminated "Name: value" list */
	const char *body;	/* request body, or NULL */
	size_t body_len;
	long timeout_ms;	/* whole-request deadline, 0 = none */
	long connect_timeout_ms; /* 0 = libcurl's default */
	size_t max_response;	/* larger bodies fail the request; 0 = 64 MiB */
};

/* Makes a client on base; max_host_conns caps connections per host. */
struct hc *hc_new(struct event_base *base, long max_host_conns);
/* Cancels every outstanding request (no callbacks) and frees the client. */
void hc_free(struct hc *);

/*
 * Starts a request. cb is called exactly once, from the event loop, never
 * from inside hc_request, unless the request is cancelled first.
 */
struct hc_req *hc_request(struct hc *, const struct hc_opts *, hc_done_cb cb,
    void *arg);
/*
 * A streaming request (long polls such as dockerd's /events): chunk gets
 * each piece of the body as it arrives, from the loop (never inside
 * hc_stream), and done is called once at the end with an empty body. The
 * response size is not capped (a piece is at most 1 MiB); set no
 * timeout_ms. hc_cancel() stops it, also from inside chunk.
 */
typedef void (*hc_chunk_cb)(const char *data, size_t len, void *arg);
struct hc_req *hc_stream(struct hc *, const struct hc_opts *, hc_chunk_cb chunk,
    hc_done_cb done, void *arg);
/* Cancels a request; its callback will not be called. */
void hc_cancel(struct hc_req *);
/* Requests in flight. */
size_t hc_pending(const struct hc *);

#endif
