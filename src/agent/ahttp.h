/*
 * ahttp: the agent's small HTTP/1.1 server on libevent bufferevents.
 *
 * It exists because libevent 2.1's evhttp reads a whole request body into
 * memory before the handler sees the request, and aborts the process if a
 * client pipelines a request while a bodiless one is still being handled.
 * Here the handler sees each request as soon as its head is parsed and
 * chooses what happens to the body: buffered up to a limit, streamed to it
 * chunk by chunk (de-chunked), or discarded. Replies are written with a
 * Content-Length, or streamed (a file is sent with sendfile(2)). One
 * request per connection is handled at a time; keep-alive, pipelining,
 * "Expect: 100-continue" and chunked request bodies are supported.
 *
 * A request is answered exactly once, through ahttp_reply() or
 * ahttp_reply_start() ... ahttp_reply_end(). Callbacks are never called
 * from inside the ahttp_* call that arms them.
 */
#ifndef SANDPOOL_AHTTP_H
#define SANDPOOL_AHTTP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct ahttp;
struct ahttp_req;

enum ahttp_method {
	AHTTP_GET,
	AHTTP_HEAD,
	AHTTP_POST,
	AHTTP_PUT,
	AHTTP_DELETE,
	AHTTP_PATCH,
	AHTTP_OPTIONS,
	AHTTP_OTHER
};

/* A request's head was parsed: route it. */
typedef void (*ahttp_req_cb)(struct ahttp_req *, void *arg);
/*
 * The whole body was buffered (error 0), or reading it failed (error is an
 * HTTP status that ahttp has already answered with, or -1 if the
 * connection is gone); after a failure req must not be used.
 */
typedef void (*ahttp_body_cb)(struct ahttp_req *, int error, void *arg);
/* A piece of a streamed body; return -1 to stop (the rest is discarded). */
typedef int (*ahttp_data_cb)(
    struct ahttp_req *, const char *, size_t, void *arg);
/* The connection closed before the reply was sent: req is freed after. */
typedef void (*ahttp_close_cb)(struct ahttp_req *, void *arg);

/* Limits. */
#define AHTTP_MAX_HEAD (64 * 1024)
#define AHTTP_MAX_HEADERS 100
#define AHTTP_MAX_CONNS 1024
/* Seconds an idle or stalled connection is kept. */
#define AHTTP_IDLE_TIMEOUT 300

/* A server on base that hands every parsed request head to cb. */
struct ahttp *ahttp_new(struct event_base *base, ahttp_req_cb cb, void *arg);
/* Serves a listening socket (ahttp closes it). 0 or -1. */
int ahttp_listen_fd(struct ahttp *, int fd);
/* Closes every connection and listener without calling back. */
void ahttp_free(struct ahttp *);

/* The request. */
enum ahttp_method ahttp_req_method(const struct ahttp_req *);
const char *ahttp_req_method_name(const struct ahttp_req *);
/* The request target as sent ("/a/b?x=1"). */
const char *ahttp_req_target(const struct ahttp_req *);
/* The percent-decoded path of the target, without the query. */
const char *ahttp_req_path(const struct ahttp_req *);
/* The raw query string (after '?'), or NULL. */
const char *ahttp_req_query(const struct ahttp_req *);
/* The first header named name (any case), or NULL. */
const char *ahttp_req_header(const struct ahttp_req *, const char *name);
/* 1 if the request announced a body (Content-Length > 0 or chunked). */
int ahttp_req_has_body(const struct ahttp_req *);

/*
 * Reads the whole body (at most max bytes: more is answered with 413)
 * and calls cb. The body is then ahttp_req_body()'s.
 */
void ahttp_req_read_body(
    struct ahttp_req *, size_t max, ahttp_body_cb cb, void *arg);
/* The buffered body (NUL-terminated) and its length. */
const char *ahttp_req_body(const struct ahttp_req *, size_t *len);
/*
 * Streams the body: data_cb for each piece as it arrives, then end_cb
 * (error 0), or end_cb with an error status (already answered) or -1
 * (connection gone, req must not be used) if the body is broken.
 */
void ahttp_req_stream_body(
    struct ahttp_req *, ahttp_data_cb data_cb, ahttp_body_cb end_cb, void *arg);
/*
 * Calls cb if the connection goes away before the reply is complete and
 * the body is no longer being read (a body callback reports that first).
 */
void ahttp_req_set_close_cb(struct ahttp_req *, ahttp_close_cb cb, void *arg);

/* Adds a response header (before the reply starts). */
void ahttp_reply_header(
    struct ahttp_req *, const char *name, const char *value);
/* Answers with a complete body; ctype NULL sends no Content-Type. */
void ahttp_reply(struct ahttp_req *, int code, const char *ctype,
    const void *body, size_t len);
/*
 * Starts a streamed answer of length bytes (-1: unknown, chunked), to be
 * followed by ahttp_reply_add() / ahttp_reply_add_file() and
 * ahttp_reply_end().
 */
void ahttp_reply_start(
    struct ahttp_req *, int code, const char *ctype, int64_t length);
void ahttp_reply_add(struct ahttp_req *, const void *, size_t);
/* Adds len bytes of fd from offset; takes ownership of fd. 0 or -1. */
int ahttp_reply_add_file(
    struct ahttp_req *, int fd, int64_t offset, int64_t len);
/* Ends a streamed answer; req must not be used after. */
void ahttp_reply_end(struct ahttp_req *);
/* The reason phrase of a status code. */
const char *ahttp_reason(int code);

#endif
