/*
 * store_mem: the embedded state store. Records and session mappings in
 * binary trees (tsearch), idle lists per pooled type, port leases in a
 * bitmap. Every operation completes at once; its reply is queued and
 * delivered from the event loop, so callers see the same contract as with
 * a remote store.
 */
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "port.h"
#include "sandbox.h"
#include "store.h"
#include "xmalloc.h"

struct store_mem_name {
	char *name;
	TAILQ_ENTRY(store_mem_name) entry;
};
TAILQ_HEAD(store_mem_names, store_mem_name);

struct store_mem_pool {
	char *type;
	struct store_mem_names idle;
	size_t len;
	TAILQ_ENTRY(store_mem_pool) entry;
};

struct store_mem_session {
	char *key;
	char **names;
	size_t n;
};

/* A reply waiting to be delivered from the loop; owns its data. */
struct store_mem_pending {
	store_cb cb;
	void *arg;
	enum store_err err;
	const char *cause;
	struct sbx *rec;
	char **names;
	size_t nnames;
	long value;
	TAILQ_ENTRY(store_mem_pending) entry;
};
TAILQ_HEAD(store_mem_queue, store_mem_pending);

struct store_mem {
	void *records;		/* tsearch tree of struct sbx *, by name */
	void *sessions;		/* tsearch tree of struct store_mem_session * */
	TAILQ_HEAD(, store_mem_pool) pools;
	struct port_map *ports;
	struct store_mem_queue queue;
	struct event *flush;
};

/* Orders records by container name. */
static int
store_mem_rec_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sbx *)a)->container_name,
	    ((const struct sbx *)b)->container_name);
}

/* Orders sessions by key. */
static int
store_mem_sess_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_mem_session *)a)->key,
	    ((const struct store_mem_session *)b)->key);
}

/* Finds a record by name. */
static struct sbx *
store_mem_find(struct store_mem *m, const char *name)
{
	struct sbx key = { .container_name = (char *)name };
	void *n;

	if (name == NULL)
		return NULL;
	n = tfind(&key, &m->records, store_mem_rec_cmp);
	return n != NULL ? *(struct sbx **)n : NULL;
}

/* Finds a session, creating it when create is set. */
static struct store_mem_session *
store_mem_session(struct store_mem *m, const char *key, int create)
{
	struct store_mem_session k = { .key = (char *)key }, *s;
	void *n;

	if (key == NULL)
		return NULL;
	if ((n = tfind(&k, &m->sessions, store_mem_sess_cmp)) != NULL)
		return *(struct store_mem_session **)n;
	if (!create)
		return NULL;
	s = xcalloc(1, sizeof *s);
	s->key = xstrdup(key);
	tsearch(s, &m->sessions, store_mem_sess_cmp);
	return s;
}

/* Frees a session. */
static void
store_mem_session_free(void *p)
{
	struct store_mem_session *s = p;
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->key);
	free(s);
}

/* Adds name to a session (no duplicates). */
static void
store_mem_session_add(struct store_mem *m, const char *key, const char *name)
{
	struct store_mem_session *s = store_mem_session(m, key, 1);
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return;
	s->names = xreallocarray(s->names, s->n + 1, sizeof *s->names);
	s->names[s->n++] = xstrdup(name);
}

/* Removes name from a session; drops the session when it empties. */
static void
store_mem_session_del(struct store_mem *m, const char *key, const char *name)
{
	struct store_mem_session *s = store_mem_session(m, key, 0);
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++) {
		if (strcmp(s->names[i], name) != 0)
			continue;
		free(s->names[i]);
		memmove(&s->names[i], &s->names[i + 1],
		    (s->n - i - 1) * sizeof *s->names);
		s->n--;
		break;
	}
	if (s->n == 0) {
		tdelete(s, &m->sessions, store_mem_sess_cmp);
		store_mem_session_free(s);
	}
}

/* Finds a type's idle list, creating it when create is set. */
static struct store_mem_pool *
store_mem_pool(struct store_mem *m, const char *type, int create)
{
	struct store_mem_pool *p;

	if (type == NULL)
		return NULL;
	TAILQ_FOREACH(p, &m->pools, entry)
		if (strcmp(p->type, type) == 0)
			return p;
	if (!create)
		return NULL;
	p = xcalloc(1, sizeof *p);
	p->type = xstrdup(type);
	TAILQ_INIT(&p->idle);
	TAILQ_INSERT_TAIL(&m->pools, p, entry);
	return p;
}

/* Removes and returns the head of an idle list (caller frees). */
static char *
store_mem_pool_pop(struct store_mem_pool *p)
{
	struct store_mem_name *n = TAILQ_FIRST(&p->idle);
	char *name;

	if (n == NULL)
		return NULL;
	TAILQ_REMOVE(&p->idle, n, entry);
	p->len--;
	name = n->name;
	free(n);
	return name;
}

/* Drops name from an idle list. */
static void
store_mem_pool_remove(struct store_mem_pool *p, const char *name)
{
	struct store_mem_name *n;

	TAILQ_FOREACH(n, &p->idle, entry) {
		if (strcmp(n->name, name) == 0) {
			TAILQ_REMOVE(&p->idle, n, entry);
			p->len--;
			free(n->name);
			free(n);
			return;
		}
	}
}

/* Collects names while walking the record tree. */
struct store_mem_walk {
	char **names;
	size_t n;
	long active;
};

/* twalk_r visitor: gathers record names and counts active ones. */
static void
store_mem_walk_rec(const void *node, VISIT v, void *arg)
{
	const struct sbx *s = *(struct sbx *const *)node;
	struct store_mem_walk *w = arg;

	if (v != postorder && v != leaf)
		return;
	w->names = xreallocarray(w->names, w->n + 1, sizeof *w->names);
	w->names[w->n++] = xstrdup(s->container_name);
	if (s->state == SBX_WARM || s->state == SBX_RUNNING)
		w->active++;
}

/* twalk_r visitor: gathers session keys. */
static void
store_mem_walk_sess(const void *node, VISIT v, void *arg)
{
	const struct store_mem_session *s =
	    *(struct store_mem_session *const *)node;
	struct store_mem_walk *w = arg;

	if (v != postorder && v != leaf)
		return;
	w->names = xreallocarray(w->names, w->n + 1, sizeof *w->names);
	w->names[w->n++] = xstrdup(s->key);
}

/* Delivers every queued reply (those queued meanwhile wait a turn). */
static void
store_mem_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct store_mem *m = arg;
	struct store_mem_queue q = TAILQ_HEAD_INITIALIZER(q);
	struct store_mem_pending *p;
	struct store_reply r;
	size_t i;

	TAILQ_CONCAT(&q, &m->queue, entry);
	while ((p = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, p, entry);
		memset(&r, 0, sizeof r);
		r.err = p->err;
		r.cause = p->cause;
		r.rec = p->rec;
		r.names = p->names;
		r.nnames = p->nnames;
		r.value = p->value;
		if (p->cb != NULL)
			p->cb(&r, p->arg);
		sbx_free(p->rec);
		for (i = 0; i < p->nnames; i++)
			free(p->names[i]);
		free(p->names);
		free(p);
	}
}

/* Runs one operation now and queues its reply. */
static void
store_mem_run(struct store *st, const struct store_req *q, store_cb cb,
    void *arg)
{
	struct store_mem *m = st->priv;
	struct store_mem_pending *p = xcalloc(1, sizeof *p);
	struct store_mem_walk w = { 0 };
	struct store_mem_session *sess;
	struct store_mem_pool *pool;
	struct store_mem_name *nn;
	struct sbx *s, *old;
	char *name;
	size_t i;

	p->cb = cb;
	p->arg = arg;
	switch (q->op) {
	case STORE_PUT:
		s = sbx_dup(q->rec);
		if ((old = store_mem_find(m, s->container_name)) != NULL) {
			tdelete(old, &m->records, store_mem_rec_cmp);
			sbx_free(old);
		}
		tsearch(s, &m->records, store_mem_rec_cmp);
		break;
	case STORE_GET:
		if ((s = store_mem_find(m, q->name)) == NULL)
			p->err = STORE_ENOENT;
		else
			p->rec = sbx_dup(s);
		break;
	case STORE_DEL:
		if ((s = store_mem_find(m, q->name)) == NULL)
			p->err = STORE_ENOENT;
		else {
			tdelete(s, &m->records, store_mem_rec_cmp);
			sbx_free(s);
		}
		break;
	case STORE_LIST:
	case STORE_COUNT_ACTIVE:
		twalk_r(m->records, store_mem_walk_rec, &w);
		if (q->op == STORE_LIST) {
			p->names = w.names;
			p->nnames = w.n;
		} else {
			p->value = w.active;
			for (i = 0; i < w.n; i++)
				free(w.names[i]);
			free(w.names);
		}
		break;
	case STORE_POOL_PUSH:
		pool = store_mem_pool(m, q->type, 1);
		nn = xcalloc(1, sizeof *nn);
		nn->name = xstrdup(q->name);
		TAILQ_INSERT_TAIL(&pool->idle, nn, entry);
		pool->len++;
		break;
	case STORE_POOL_CLAIM:
		p->err = STORE_ENOENT;
		pool = store_mem_pool(m, q->type, 0);
		while (pool != NULL && (name = store_mem_pool_pop(pool))) {
			s = store_mem_find(m, name);
			free(name);
			if (s == NULL || s->state != SBX_WARM ||
			    s->session_ctx_id != NULL)
				continue; /* stale entry: skip it */
			/*
			 * The pool hands over meta already checked and the
			 * session taken from it: no second parse here.
			 */
			if (q->meta != NULL)
				xstrset(&s->meta, q->meta);
			if (q->session != NULL)
				xstrset(&s->session_ctx_id, q->session);
			if (s->session_ctx_id != NULL) {
				s->state = SBX_RUNNING;
				s->last_active_at = q->now;
				store_mem_session_add(m, s->session_ctx_id,
				    s->container_name);
			}
			s->updated_at = q->now;
			p->err = STORE_OK;
			p->rec = sbx_dup(s);
			break;
		}
		break;
	case STORE_POOL_COUNT:
		pool = store_mem_pool(m, q->type, 0);
		p->value = pool != NULL ? (long)pool->len : 0;
		break;
	case STORE_POOL_REMOVE:
		if ((pool = store_mem_pool(m, q->type, 0)) != NULL)
			store_mem_pool_remove(pool, q->name);
		break;
	case STORE_SESSION_ADD:
		store_mem_session_add(m, q->session, q->name);
		break;
	case STORE_SESSION_DEL:
		store_mem_session_del(m, q->session, q->name);
		break;
	case STORE_SESSION_GET:
		if ((sess = store_mem_session(m, q->session, 0)) != NULL) {
			p->names = xcalloc(sess->n + 1, sizeof *p->names);
			for (i = 0; i < sess->n; i++)
				p->names[i] = xstrdup(sess->names[i]);
			p->nnames = sess->n;
		}
		break;
	case STORE_SESSION_KEYS:
		twalk_r(m->sessions, store_mem_walk_sess, &w);
		p->names = w.names;
		p->nnames = w.n;
		break;
	case STORE_PORT_LEASE:
		if ((p->value = port_map_lease(m->ports, q->ip)) < 0) {
			p->err = STORE_EFULL;
			p->cause = store_strerror(STORE_EFULL);
		}
		break;
	case STORE_PORT_FREE:
		port_map_release(m->ports, q->port);
		break;
	case STORE_PORT_TAKE:
		port_map_take(m->ports, q->port);
		break;
	}
	if (p->err != STORE_OK && p->cause == NULL)
		p->cause = store_strerror(p->err);
	TAILQ_INSERT_TAIL(&m->queue, p, entry);
	event_active(m->flush, EV_TIMEOUT, 0);
}

/* tdestroy helper for records. */
static void
store_mem_rec_free(void *p)
{
	sbx_free(p);
}

/* Frees the memory store and drops pending replies. */
static void
store_mem_free(struct store *st)
{
	struct store_mem *m = st->priv;
	struct store_mem_pending *p;
	struct store_mem_pool *pool;
	size_t i;

	event_free(m->flush);
	while ((p = TAILQ_FIRST(&m->queue)) != NULL) {
		TAILQ_REMOVE(&m->queue, p, entry);
		sbx_free(p->rec);
		for (i = 0; i < p->nnames; i++)
			free(p->names[i]);
		free(p->names);
		free(p);
	}
	while ((pool = TAILQ_FIRST(&m->pools)) != NULL) {
		char *name;

		TAILQ_REMOVE(&m->pools, pool, entry);
		while ((name = store_mem_pool_pop(pool)) != NULL)
			free(name);
		free(pool->type);
		free(pool);
	}
	tdestroy(m->records, store_mem_rec_free);
	tdestroy(m->sessions, store_mem_session_free);
	port_map_free(m->ports);
	free(m);
	free(st);
}

static const struct store_ops store_mem_ops = {
	.name = "memory",
	.run = store_mem_run,
	.free = store_mem_free,
};

/* Makes the memory store. */
struct store *
store_mem_new(struct event_base *base, int port_lo, int port_hi)
{
	struct store *st = xcalloc(1, sizeof *st);
	struct store_mem *m = xcalloc(1, sizeof *m);

	TAILQ_INIT(&m->pools);
	TAILQ_INIT(&m->queue);
	m->ports = port_map_new(port_lo, port_hi);
	m->flush = event_new(base, -1, 0, store_mem_on_flush, m);
	st->ops = &store_mem_ops;
	st->base = base;
	st->priv = m;
	return st;
}
