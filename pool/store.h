/*
 * store: where sandbox records, warm-pool lists, session mappings, port
 * leases and creates in flight live. One vtable, two backends: memory (the
 * embedded default, one process) and Redis (shared by workers and
 * instances; see runtime-sandbox-server-redis(7)). Every operation is
 * asynchronous with one uniform reply so that both backends look the same
 * to the pool layer; each operation is atomic.
 *
 * Creates in flight are "pending" entries owned by an owner (a worker's
 * connection epoch): STORE_BEGIN reserves one (a pool-fill slot, or room
 * under MAX_SANDBOX_INSTANCES), STORE_COMMIT turns it into a record,
 * STORE_ABORT drops it. An owner that stops renewing its lease loses its
 * pending entries to STORE_REAP, which hands back the containers to remove.
 */
#ifndef SANDPOOL_STORE_H
#define SANDPOOL_STORE_H

#include <stddef.h>

struct event_base;
struct sbx;
struct store;

enum store_op {
	STORE_PUT,	     /* rec: insert or replace by container_name */
	STORE_GET,	     /* name -> rec */
	STORE_DEL,	     /* name */
	STORE_LIST,	     /* -> names of every record */
	STORE_POOL_PUSH,     /* type, name: append to the idle list */
	STORE_POOL_CLAIM,    /* type, session, meta, now -> rec, bound */
	STORE_POOL_COUNT,    /* type -> value = idle count */
	STORE_POOL_REMOVE,   /* type, name: drop from the idle list */
	STORE_SESSION_ADD,   /* session, name */
	STORE_SESSION_DEL,   /* session, name (key dropped when empty) */
	STORE_SESSION_GET,   /* session -> names */
	STORE_SESSION_KEYS,  /* -> names = session keys */
	STORE_PORT_LEASE,    /* name (owner), ip -> value = port */
	STORE_PORT_FREE,     /* port, name (owner) */
	STORE_PORT_TAKE,     /* port, name: mark leased (reconcile) */
	STORE_COUNT_ACTIVE,  /* -> value = warm + running records */
	STORE_BEGIN,	     /* name, type, kind, target, max -> owner */
	STORE_COMMIT,	     /* rec, kind, owner: record (+ pool, session) */
	STORE_ABORT,	     /* name, owner: drop the pending entry */
	STORE_REAP,	     /* -> names of dead owners' half-made ones */
	STORE_ORPHANS,	     /* names (containers) -> names to remove */
	STORE_INSTANCES,     /* -> instance ids sharing this store */
	STORE_LOCK,	     /* name (lock key), token, ttl_ms */
	STORE_UNLOCK,	     /* name (lock key), token */
	STORE_IDLE_SESSIONS, /* before -> sessions whose heartbeat < before */
	STORE_GC	     /* before, max -> released/replaced deleted */
};

/* What a pending entry is for. */
enum store_kind {
	STORE_KIND_COLD = 0, /* a create for a caller */
	STORE_KIND_FILL,     /* a pool fill: takes a slot of the pool */
	STORE_KIND_CLAIM     /* a claim between pop and bind (internal) */
};

enum store_err {
	STORE_OK = 0,
	STORE_ENOENT,	/* no such record / empty pool */
	STORE_EFULL,	/* no free port */
	STORE_EUNAVAIL, /* backend unreachable */
	STORE_ELIMIT,	/* MAX_SANDBOX_INSTANCES reached */
	STORE_EFENCED,	/* the pending entry was reaped */
	STORE_ECONFLICT /* state check failed / lock held */
};

struct store_req {
	enum store_op op;
	const char *name;
	const char *type;
	const char *session;
	const char *meta; /* JSON object text */
	const char *ip;
	const struct sbx *rec;
	double now;
	int port;
	enum store_kind kind; /* BEGIN, COMMIT */
	int target;	      /* BEGIN fill: POOL_SIZE */
	int max;	      /* BEGIN: MAX_SANDBOX_INSTANCES, 0 = none */
	const char *owner;    /* COMMIT, ABORT: as BEGIN returned it */
	const char *token;    /* LOCK, UNLOCK */
	long ttl_ms;	      /* LOCK */
	int if_state;	      /* PUT: only if the record is in expect */
	int expect;	      /* PUT: enum sbx_state */
	char *const *names;   /* ORPHANS */
	size_t nnames;
	double before; /* IDLE_SESSIONS, GC: unix seconds */
};

/* Everything is borrowed for the duration of the callback. */
struct store_reply {
	enum store_err err;
	const char *cause;
	const struct sbx *rec;
	char *const *names;
	size_t nnames;
	long value;
	const char *owner; /* BEGIN */
};

typedef void (*store_cb)(const struct store_reply *, void *arg);

struct store_ops {
	const char *name;
	void (*run)(struct store *, const struct store_req *, store_cb, void *);
	void (*free)(struct store *);
	int (*ready)(const struct store *);
};

struct store {
	const struct store_ops *ops;
	struct event_base *base;
	void *priv;
};

/* The memory backend; ports lo <= p < hi. */
struct store *store_mem_new(struct event_base *, int port_lo, int port_hi);

/* How to reach Redis and name things there. Strings are copied. */
struct store_redis_params {
	const char *host;
	int port;
	int db;
	const char *user;	  /* ACL user, or NULL */
	const char *password;	  /* or NULL */
	const char *pool_key;	  /* REDIS_CONTAINER_POOL_KEY */
	const char *port_key;	  /* REDIS_PORT_KEY */
	const char *instance;	  /* SANDPOOL_INSTANCE_ID */
	const char *owner;	  /* this worker: instance, pid, boot epoch */
	const char *publish_host; /* ports are probed here before a lease */
	int port_lo, port_hi;
	long lease_ttl_ms; /* owner lease; renewed every third of it */
	long timeout_ms;   /* per command deadline */
};

/*
 * The Redis backend. Connects (and reconnects with back-off) in the
 * background; while it is away, operations fail with STORE_EUNAVAIL.
 */
struct store *store_redis_new(
    struct event_base *, const struct store_redis_params *);
/* 1 while a Redis backend is connected and ready (memory: always). */
int store_ready(const struct store *);

/*
 * Runs one operation. cb (may be NULL) is called exactly once from the
 * event loop, never from inside store_run.
 */
void store_run(struct store *, const struct store_req *, store_cb, void *);
void store_free(struct store *);
/* Short text for an error code. */
const char *store_strerror(enum store_err);

#endif
