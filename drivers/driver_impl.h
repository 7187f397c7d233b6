/*
 * driver_impl: what an engine implements, private to drivers/. driver.c
 * picks an engine by the endpoint's scheme and calls it through struct
 * drv_ops; it also owns the deferred-failure events that every engine
 * uses to call back "from the loop" when a call fails before reaching the
 * engine (bad id, bad spec).
 */
#ifndef SANDPOOL_DRIVER_IMPL_H
#define SANDPOOL_DRIVER_IMPL_H

#include <sys/queue.h>

#include "driver.h"

struct drv_later;

/*
 * One engine. Every call gets the driver and must call cb exactly once,
 * from the loop (hc requests and drv_fail_later() both guarantee that),
 * unless close() runs first. A remote transport (ssh) or another
 * Docker-compatible engine (podman) fills the same table, reusing
 * docker's request and reply code where it can.
 */
struct drv_ops {
	const char *name;
	/* Sets drv->eng from the address after the scheme; -1 + *cause. */
	int (*open)(struct drv *, const char *address, char **cause);
	/* Cancels pending calls (no callbacks) and frees drv->eng. */
	void (*close)(struct drv *);
	void (*ping)(struct drv *, drv_cb, void *);
	void (*create)(struct drv *, const struct drv_spec *, drv_cb, void *);
	void (*start)(struct drv *, const char *, drv_cb, void *);
	void (*inspect)(struct drv *, const char *, drv_cb, void *);
	void (*stop)(struct drv *, const char *, int, drv_cb, void *);
	void (*remove)(struct drv *, const char *, drv_cb, void *);
	void (*list)(struct drv *, const char *const *, drv_cb, void *);
	void (*image_exists)(struct drv *, const char *, drv_cb, void *);
	void (*runtimes)(struct drv *, drv_cb, void *);
	struct drv_events *(*events)(struct drv *, const char *const *,
	    const char *const *, long long, drv_event_cb, drv_events_end_cb,
	    void *);
	void (*events_cancel)(struct drv_events *);
};

struct drv {
	const struct drv_ops *ops;
	void *eng; /* the engine's own state */
	struct event_base *base;
	struct hc *hc;		       /* shared, not owned */
	long timeout_ms;	       /* per call deadline */
	TAILQ_HEAD(, drv_later) later; /* deferred failures */
};

/* An event stream; the engine keeps its own state in eng. */
struct drv_events {
	struct drv *drv;
	void *eng;
};

extern const struct drv_ops docker_ops;

/* Calls cb with err and msg (copied) from a zero-delay event. */
void drv_fail_later(
    struct drv *, drv_cb, void *, enum drv_err, const char *msg);

#endif
