/*
 * driver: container engines behind one vtable. The pool layer sees only
 * these calls; each engine (docker over its unix socket today) maps its
 * own errors to the DRV_E* codes in one function.
 */
#ifndef SANDPOOL_DRIVER_H
#define SANDPOOL_DRIVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hc;
struct drv;

/* Error codes every driver maps its engine's errors to. */
enum drv_err {
	DRV_OK = 0,
	DRV_ENOTFOUND, /* no such container */
	DRV_ENOIMAGE,  /* image missing */
	DRV_ECONFLICT, /* name in use, or state conflict */
	DRV_EPORT,     /* host port already allocated (retry another) */
	DRV_EINVAL,    /* engine refused the request as invalid */
	DRV_EENGINE,   /* engine unreachable or internal error */
	DRV_ETIMEOUT   /* deadline passed */
};

/* A container to create. Pointers are borrowed for the call only. */
struct drv_spec {
	const char *name; /* container name */
	const char *image;
	const char *const *entrypoint; /* NULL-terminated, or NULL */
	const char *const *cmd;	       /* NULL-terminated, or NULL */
	const char *const *env;	       /* NULL-terminated "K=V" */
	const char *const *labels;     /* NULL-terminated key, value, ... */
	const char *const *binds;      /* NULL-terminated "host:ctr:mode" */
	const char *workdir;	       /* or NULL */
	const char *user;	       /* "uid:gid" or NULL */
	const char *network;	       /* "bridge", "none", or NULL */
	int private_port;    /* container TCP port to publish, 0 none */
	int host_port;	     /* host port it is published on */
	const char *host_ip; /* "127.0.0.1" */
	int64_t memory;	     /* bytes, 0 = unlimited */
	int64_t nano_cpus;   /* 0 = unlimited */
	int64_t pids_limit;  /* 0 = unlimited */
	int64_t shm_size;    /* 0 = engine default */
	int privileged;
	int init; /* run an init as PID 1 */
	int readonly_rootfs;
	const char *const *tmpfs;    /* NULL-terminated path, options, ... */
	const char *const *cap_drop; /* NULL-terminated */
	const char *const *cap_add;  /* NULL-terminated */
	const char *const *security_opt; /* NULL-terminated */
	const char *runtime;		 /* OCI runtime or NULL */
};

/* One container as listed or inspected. */
struct drv_ctr {
	char *id;
	char *name;    /* without the leading '/' */
	char *state;   /* "created", "running", "exited", ... */
	char **labels; /* NULL-terminated key, value, ... */
	int host_port; /* first published host port, 0 if none */
	/* Inspect only (NULL from a list): */
	char *image;  /* Config.Image */
	char **env;   /* Config.Env, NULL-terminated "K=V" */
	char **binds; /* HostConfig.Binds, "host:ctr[:mode]" */
};

/* One engine event about a container. Everything is borrowed. */
struct drv_event {
	const char *action;  /* "die", "destroy", "oom", "start", ... */
	const char *id;	     /* container id */
	char *const *attrs;  /* key, value, ..., NULL: labels, name, exitCode */
	long long time_nano; /* when, unix nanoseconds */
};

/* What an operation gives its callback. Everything is borrowed. */
struct drv_reply {
	enum drv_err err;
	const char *msg;	    /* engine's message on error, else NULL */
	const char *id;		    /* create: the new id */
	const struct drv_ctr *ctrs; /* inspect: one; list: nctrs */
	size_t nctrs;
	char *const *names; /* runtimes: the OCI runtimes, nnames */
	size_t nnames;
};

typedef void (*drv_cb)(const struct drv_reply *, void *arg);
typedef void (*drv_event_cb)(const struct drv_event *, void *arg);
/* A stream of events ended (engine restart, EOF, error). */
typedef void (*drv_events_end_cb)(enum drv_err, const char *msg, void *arg);
struct drv_events;

/* How to reach the engine. */
struct drv_params {
	const char *endpoint; /* "unix:///var/run/docker.sock" */
	long timeout_ms;      /* per call deadline */
};

/*
 * Opens a driver for the endpoint's engine on base, sharing the client hc.
 * Returns NULL with *cause (caller frees) when the endpoint is not usable.
 */
struct drv *drv_open(
    struct event_base *, struct hc *, const struct drv_params *, char **cause);
void drv_close(struct drv *);
/* The engine's name ("docker"). */
const char *drv_name(const struct drv *);

/*
 * Every call below calls cb exactly once, from the event loop, never from
 * inside the call itself. Pending operations are dropped without callback
 * by drv_close (which the owner calls only when it is going away too).
 */
void drv_ping(struct drv *, drv_cb, void *);
void drv_create(struct drv *, const struct drv_spec *, drv_cb, void *);
void drv_start(struct drv *, const char *id, drv_cb, void *);
void drv_inspect(struct drv *, const char *id, drv_cb, void *);
void drv_stop(struct drv *, const char *id, int timeout_s, drv_cb, void *);
/* Removes with force (kills a running container) and its anonymous volumes. */
void drv_remove(struct drv *, const char *id, drv_cb, void *);
/* Lists all containers (any state) carrying every "key=value" label. */
void drv_list(struct drv *, const char *const *label_filters, drv_cb, void *);
/* Checks an image exists (DRV_ENOIMAGE if not). */
void drv_image_exists(struct drv *, const char *image, drv_cb, void *);
/* The OCI runtimes the engine can run containers with (names, nnames). */
void drv_runtimes(struct drv *, drv_cb, void *);

/*
 * Streams the engine's container events for containers carrying every
 * "key=value" label filter, with one of actions (NULL-terminated; NULL =
 * all), from since_ns (unix nanoseconds; 0 = from now). ev is called for
 * each, end once when the stream ends, both from the loop, never after
 * drv_events_cancel (which may be called from inside ev). Reconnecting is
 * the caller's business (pass the last time_nano + 1 as since_ns).
 */
struct drv_events *drv_events(struct drv *, const char *const *label_filters,
    const char *const *actions, long long since_ns, drv_event_cb ev,
    drv_events_end_cb end, void *arg);
void drv_events_cancel(struct drv_events *);

/* The label value for key, or NULL. */
const char *drv_ctr_label(const struct drv_ctr *, const char *key);
/* The value of an event attribute, or NULL. */
const char *drv_event_attr(const struct drv_event *, const char *key);
/* Short English text for an error code. */
const char *drv_strerror(enum drv_err);

#endif
