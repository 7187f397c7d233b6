/*
 * hc: the HTTP client glue. One libcurl multi handle driven by one libevent
 * loop (the hiperfifo pattern), with keep-alive connection reuse, used for
 * dockerd (over its unix socket) and for the runtimes inside sandboxes.
 */
#ifndef SANDPOOL_HC_H
#define SANDPOOL_HC_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct hc;
struct hc_req;

/* What a finished request gives its callback. All fields are borrowed. */
struct hc_resp {
	long status;	   /* HTTP status, 0 on a transport error */
	const char *body;  /* response body, NUL-terminated, never NULL */
	size_t len;	   /* body length */
	const char *ctype; /* Content-Type or NULL */
	const char *error; /* transport error text, or NULL */
	int timed_out;	   /* 1 if the deadline passed */
	int no_connection; /* 1 if it could not connect (nothing was sent) */
};

typedef void (*hc_done_cb)(const struct hc_resp *, void *arg);

/* One response header; both strings borrowed, the value trimmed. */
struct hc_header {
	const char *name;
	const char *value;
};

/* The head of a streamed response (the final one, never a 1xx). */
struct hc_head {
	long status;
	const struct hc_header *headers; /* in the order received */
	size_t nheaders;
};

/*
 * Streaming callbacks. They run from inside libcurl (also from inside
 * hc_resume), so they must not free the client; they may call hc_resume,
 * and hc_cancel on their own request (it then ends without calling back).
 */
typedef void (*hc_head_cb)(const struct hc_head *, void *arg);
/*
 * A piece of the response body. Return 0 when it is consumed, or
 * HC_PAUSE: the piece is kept and offered again after hc_resume.
 */
typedef int (*hc_data_cb)(const char *data, size_t len, void *arg);
/*
 * Fills buf with at most max bytes of the request body and returns how
 * many, 0 at its end, HC_BODY_WAIT when none are there yet (call
 * hc_resume when there are), or HC_BODY_ABORT to fail the request.
 */
typedef ssize_t (*hc_body_cb)(char *buf, size_t max, void *arg);

#define HC_PAUSE 1
#define HC_BODY_WAIT (-1)
#define HC_BODY_ABORT (-2)

/* One request. Pointers are borrowed only for the call to hc_request. */
struct hc_opts {
	const char *method;	    /* "GET", "POST", ... */
	const char *url;	    /* full URL; host ignored with unix_path */
	const char *unix_path;	    /* connect to this unix socket, or NULL */
	const char *const *headers; /* NULL-terminated "Name: value" list */
	const char *body;	    /* request body, or NULL */
	size_t body_len;
	long timeout_ms;	 /* whole-request deadline, 0 = none */
	long connect_timeout_ms; /* 0 = libcurl's default */
	size_t max_response; /* larger bodies fail the request; 0 = 64 MiB */
	/* Streaming (all optional; the buffered API when unset). */
	hc_head_cb on_head;   /* the response head, before any data */
	hc_data_cb on_data;   /* the body piecewise, no buffer, no cap */
	hc_body_cb read_body; /* the request body, instead of body */
	long long body_size;  /* with read_body: bytes, -1 = unknown
				 (sent chunked) */
	void *stream_arg;     /* arg of the three callbacks above */
};

/* Makes a client on base; max_host_conns caps connections per host. */
struct hc *hc_new(struct event_base *base, long max_host_conns);
/* Cancels every outstanding request (no callbacks) and frees the client. */
void hc_free(struct hc *);

/*
 * Starts a request. cb is called exactly once, from the event loop, never
 * from inside hc_request, unless the request is cancelled first.
 */
struct hc_req *hc_request(
    struct hc *, const struct hc_opts *, hc_done_cb cb, void *arg);
/*
 * A buffered streaming request (long polls such as dockerd's /events):
 * chunk gets each piece of the body as it arrives, from the loop after
 * libcurl returned (never inside hc_stream nor inside libcurl, so unlike
 * on_data it may do anything, hc_free included), and done is called once
 * at the end with an empty body. The response size is not capped (a piece
 * is at most 1 MiB); set no timeout_ms and none of the on_head, on_data,
 * read_body options. hc_cancel() stops it, also from inside chunk.
 */
typedef void (*hc_chunk_cb)(const char *data, size_t len, void *arg);
struct hc_req *hc_stream(struct hc *, const struct hc_opts *, hc_chunk_cb chunk,
    hc_done_cb done, void *arg);
/* Cancels a request; its callback will not be called. */
void hc_cancel(struct hc_req *);
/*
 * Resumes a streamed request that on_data paused or whose read_body had
 * nothing: libcurl may call on_data or read_body before this returns.
 */
void hc_resume(struct hc_req *);
/* Requests in flight. */
size_t hc_pending(const struct hc *);

#endif
