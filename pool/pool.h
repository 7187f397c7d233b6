/*
 * pool: sandboxes and warm pools. Keeps POOL_SIZE started, healthy
 * sandboxes per pooled type (refilled with bounded concurrency), hands
 * them out without touching the engine, creates cold ones on a miss,
 * releases, and removes what this instance owns at start-up (leftovers of
 * a crash) and at shutdown. State lives in the store; containers in the
 * driver's engine.
 */
#ifndef SANDPOOL_POOL_H
#define SANDPOOL_POOL_H

#include <stddef.h>

struct event_base;
struct hc;
struct drv;
struct store;
struct sbtypes;
struct sbx;
struct pool;

struct pool_params {
	const char *instance_id;	    /* label sandpool.instance */
	const char *prefix;		    /* CONTAINER_PREFIX_KEY */
	const char *agent_path;		    /* host path of sandpool-agent */
	const char *run_dir;		    /* per-sandbox dirs live here */
	const char *mount_root;		    /* DEFAULT_MOUNT_DIR, or NULL */
	const char *publish_host;	    /* host IP runtime ports bind on */
	const char *const *readonly_mounts; /* host, ctr, ... NULL-ended */
	const struct sbtypes *types;
	const char *const *pool_types; /* DEFAULT_SANDBOX_TYPE */
	int pool_size;
	int refill_concurrency;
	int max_instances;  /* 0 = unlimited */
	int warmup_timeout; /* seconds */
	int keep_workspace;
	int watcher_interval;  /* seconds; 0 = no refill */
	int lease_ttl;	       /* seconds: reaper and reconcile pace */
	int heartbeat_timeout; /* seconds idle before a reap */
	int lock_ttl;	       /* HEARTBEAT_LOCK_TTL, seconds */
	int release_ttl;       /* RELEASED_KEY_TTL; 0 = keep */
	int shared;	       /* the store is shared (Redis) */
};

enum pool_err {
	POOL_OK = 0,
	POOL_ENOTFOUND, /* "No container found with id: X." */
	POOL_EINVAL,	/* bad argument (type, environment, ...) */
	POOL_EFULL,	/* MAX_SANDBOX_INSTANCES or ports exhausted */
	POOL_EENGINE,	/* container engine failed */
	POOL_ERUNTIME,	/* runtime never became healthy */
	POOL_EUNAVAIL,	/* state store unreachable */
	POOL_ESHUTDOWN	/* server is stopping */
};

/* Everything borrowed for the duration of the callback. */
struct pool_reply {
	enum pool_err err;
	const char *cause;     /* message when err != POOL_OK */
	const char *name;      /* create: the container name */
	const struct sbx *rec; /* get_info / touch: the record */
	int flag;	       /* release/start/stop: the boolean */
	const char *status;    /* get_status: engine state or NULL */
	char *const *names;    /* session mapping / keys */
	size_t nnames;
};

typedef void (*pool_cb)(const struct pool_reply *, void *arg);
typedef void (*pool_done_cb)(int err, const char *cause, void *arg);

struct pool *pool_new(struct event_base *, struct hc *, struct drv *,
    struct store *, const struct pool_params *);
void pool_free(struct pool *);

/*
 * With a private store, removes this instance's leftover containers (and
 * their workspaces and run dirs); then starts pre-warming, the reaper of
 * dead workers' half-made sandboxes and the reconciler. cb once started.
 */
void pool_start(struct pool *, pool_done_cb, void *);
/*
 * Stops refilling and waits for creates in flight; with cleanup, removes
 * every container of this instance. cb when done.
 */
void pool_shutdown(struct pool *, int cleanup, pool_done_cb, void *);

/* All calls below: cb exactly once, from the loop, never from inside. */

/* A warm sandbox of type (NULL = first pooled type) bound to meta. */
void pool_create_from_pool(
    struct pool *, const char *type, const char *meta, pool_cb, void *);
/*
 * A new sandbox. env: NULL-terminated "K=V" overlaid on the type's;
 * mount_dir: an existing directory the caller checked (ALLOW_MOUNT_DIR),
 * used as the workspace and never removed; NULL = <DEFAULT_MOUNT_DIR>/<id>.
 */
void pool_create(struct pool *, const char *type, const char *meta,
    const char *const *env, const char *mount_dir, pool_cb, void *);
/* Releases; flag = 1 (also for an unknown identity). */
void pool_release(struct pool *, const char *identity, pool_cb, void *);
/* The record, following redirects; POOL_ENOTFOUND if unknown. */
void pool_get_info(struct pool *, const char *identity, pool_cb, void *);
/*
 * As get_info, and refreshes the heartbeat of the session's running
 * sandboxes; a session that was reaped is restored first (a new sandbox
 * of the same type on the same workspace; the old identity redirects).
 */
void pool_touch(struct pool *, const char *identity, pool_cb, void *);
void pool_session_mapping(struct pool *, const char *session, pool_cb, void *);
void pool_session_keys(struct pool *, pool_cb, void *);
/* Engine start / stop (flag = the container reached running / exited). */
void pool_start_sandbox(struct pool *, const char *identity, pool_cb, void *);
void pool_stop_sandbox(struct pool *, const char *identity, pool_cb, void *);
/* Engine state string, or status NULL when unknown. */
void pool_status(struct pool *, const char *identity, pool_cb, void *);

/* The default (first pooled) type name. */
const char *pool_default_type(const struct pool *);

#endif
