/*
 * store: where sandbox records, warm-pool lists, session mappings and port
 * leases live. One vtable, two backends: memory (the embedded default,
 * one process) and, later, Redis (shared by workers and instances). Every
 * operation is asynchronous with one uniform reply so that both backends
 * look the same to the pool layer; each operation is atomic.
 */
#ifndef SANDPOOL_STORE_H
#define SANDPOOL_STORE_H

#include <stddef.h>

struct event_base;
struct sbx;
struct store;

enum store_op {
	STORE_PUT,		/* rec: insert or replace by container_name */
	STORE_GET,		/* name -> rec */
	STORE_DEL,		/* name */
	STORE_LIST,		/* -> names of every record */
	STORE_POOL_PUSH,	/* type, name: append to the idle list */
	STORE_POOL_CLAIM,	/* type, session, meta, now -> rec, bound */
	STORE_POOL_COUNT,	/* type -> value = idle count */
	STORE_POOL_REMOVE,	/* type, name: drop from the idle list */
	STORE_SESSION_ADD,	/* session, name */
	STORE_SESSION_DEL,	/* session, name (key dropped when empty) */
	STORE_SESSION_GET,	/* session -> names */
	STORE_SESSION_KEYS,	/* -> names = session keys */
	STORE_PORT_LEASE,	/* name (owner), ip -> value = port */
	STORE_PORT_FREE,	/* port, name (owner) */
	STORE_PORT_TAKE,	/* port, name: mark leased (reconcile) */
	STORE_COUNT_ACTIVE	/* -> value = warm + running records */
};

enum store_err {
	STORE_OK = 0,
	STORE_ENOENT,		/* no such record / empty pool */
	STORE_EFULL,		/* no free port */
	STORE_EUNAVAIL		/* backend unreachable */
};

struct store_req {
	enum store_op op;
	const char *name;
	const char *type;
	const char *session;
	const char *meta;	/* JSON object text */
	const char *ip;
	const struct sbx *rec;
	double now;
	int port;
};

/* Everything is borrowed for the duration of the callback. */
struct store_reply {
	enum store_err err;
	const char *cause;
	const struct sbx *rec;
	char *const *names;
	size_t nnames;
	long value;
};

typedef void (*store_cb)(const struct store_reply *, void *arg);

struct store_ops {
	const char *name;
	void (*run)(struct store *, const struct store_req *, store_cb,
	    void *);
	void (*free)(struct store *);
};

struct store {
	const struct store_ops *ops;
	struct event_base *base;
	void *priv;
};

/* The memory backend; ports lo <= p < hi. */
struct store *store_mem_new(struct event_base *, int port_lo, int port_hi);

/*
 * Runs one operation. cb (may be NULL) is called exactly once from the
 * event loop, never from inside store_run.
 */
void store_run(struct store *, const struct store_req *, store_cb, void *);
void store_free(struct store *);
/* Short text for an error code. */
const char *store_strerror(enum store_err);

#endif
