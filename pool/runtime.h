/*
 * runtime: the manager's client for the runtime inside a sandbox (our
 * sandpool-agent or an image's own agentscope runtime): one call, and the
 * wait until /fastapi/healthz answers 200. It speaks over the sandbox's
 * unix socket when it has one, else over its published TCP port.
 */
#ifndef SANDPOOL_RUNTIME_H
#define SANDPOOL_RUNTIME_H

#include <stddef.h>

#include "hc.h"

struct event_base;
struct sbx;
struct rt_wait;

/*
 * The URL of path ("/fastapi/...") for a runtime reached over its unix
 * socket (a host name of its own). Caller frees.
 */
char *rt_url(const struct sbx *, const char *path);
/* Calls method path ("/fastapi/...") on the sandbox's runtime. */
struct hc_req *rt_call(struct hc *, const struct sbx *, const char *method,
    const char *path, const char *body, size_t len, long timeout_ms, hc_done_cb,
    void *);

typedef void (*rt_wait_cb)(int ok, const char *error, void *arg);

/*
 * Polls /fastapi/healthz until it answers 200 (ok=1) or deadline_ms passes
 * (ok=0 with the last error). The sandbox is copied. cb exactly once, from
 * the loop, unless cancelled.
 */
struct rt_wait *rt_wait_healthy(struct event_base *, struct hc *,
    const struct sbx *, long deadline_ms, rt_wait_cb, void *);
void rt_wait_cancel(struct rt_wait *);

#endif
