/*
 * store_mem: the embedded state store. Records and session mappings in
 * binary trees (tsearch), idle lists per pooled type, port leases in a
 * bitmap, creates in flight in a list (one owner: this process, so nothing
 * is ever reaped). Every operation completes at once; its reply is queued and
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
	size_t warming; /* fill slots reserved */
	TAILQ_ENTRY(store_mem_pool) entry;
};

/* A create in flight. */
struct store_mem_pend {
	char *name;
	char *type;
	enum store_kind kind;
	TAILQ_ENTRY(store_mem_pend) entry;
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
	const char *owner; /* static */
	TAILQ_ENTRY(store_mem_pending) entry;
};
TAILQ_HEAD(store_mem_queue, store_mem_pending);

struct store_mem {
	void *records;	/* tsearch tree of struct sbx *, by name */
	void *sessions; /* tsearch tree of struct store_mem_session * */
	TAILQ_HEAD(, store_mem_pool) pools;
	struct port_map *ports;
	TAILQ_HEAD(, store_mem_pend) pending;
	size_t npending;
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
	struct sbx key = {.container_name = (char *)name};
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
	struct store_mem_session k = {.key = (char *)key}, *s;
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
	TAILQ_FOREACH (p, &m->pools, entry)
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

	TAILQ_FOREACH (n, &p->idle, entry) {
		if (strcmp(n->name, name) == 0) {
			TAILQ_REMOVE(&p->idle, n, entry);
			p->len--;
			free(n->name);
			free(n);
			return;
		}
	}
}

/* Finds a pending entry by name. */
static struct store_mem_pend *
store_mem_pend_find(struct store_mem *m, const char *name)
{
	struct store_mem_pend *e;

	TAILQ_FOREACH (e, &m->pending, entry)
		if (name != NULL && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* Drops a pending entry and its fill slot. */
static void
store_mem_pend_drop(struct store_mem *m, struct store_mem_pend *e)
{
	struct store_mem_pool *pool;

	if (e->kind == STORE_KIND_FILL &&
	    (pool = store_mem_pool(m, e->type, 0)) != NULL && pool->warming > 0)
		pool->warming--;
	TAILQ_REMOVE(&m->pending, e, entry);
	m->npending--;
	free(e->name);
	free(e->type);
	free(e);
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
		r.owner = p->owner;
		if (p->cb != NULL)
			p->cb(&r, p->arg);
		sbx_free(p->rec);
		for (i = 0; i < p->nnames; i++)
			free(p->names[i]);
		free(p->names);
		free(p);
	}
}

/* Counts records that are warm or running. */
static long
store_mem_active(struct store_mem *m)
{
	struct store_mem_walk w = {0};
	size_t i;

	twalk_r(m->records, store_mem_walk_rec, &w);
	for (i = 0; i < w.n; i++)
		free(w.names[i]);
	free(w.names);
	return w.active;
}

/* STORE_BEGIN: reserves a fill slot or room under the instance cap. */
static void
store_mem_begin(
    struct store_mem *m, const struct store_req *q, struct store_mem_pending *p)
{
	struct store_mem_pool *pool = NULL;
	struct store_mem_pend *e, *x;
	long creating = 0;

	if (q->kind == STORE_KIND_FILL) {
		pool = store_mem_pool(m, q->type, 1);
		if ((long)(pool->len + pool->warming) >= q->target) {
			p->err = STORE_ENOENT;
			p->cause = "the pool is full";
			return;
		}
	}
	if (q->max > 0) {
		TAILQ_FOREACH (x, &m->pending, entry)
			if (x->kind != STORE_KIND_CLAIM)
				creating++;
		if (store_mem_active(m) + creating >= q->max) {
			p->err = STORE_ELIMIT;
			return;
		}
	}
	e = xcalloc(1, sizeof *e);
	e->name = xstrdup(q->name);
	e->type = xstrdup0(q->type);
	e->kind = q->kind;
	TAILQ_INSERT_TAIL(&m->pending, e, entry);
	m->npending++;
	if (pool != NULL)
		pool->warming++;
	p->owner = "memory";
}

/* STORE_COMMIT: the pending create becomes a record (pool, session). */
static void
store_mem_commit(
    struct store_mem *m, const struct store_req *q, struct store_mem_pending *p)
{
	struct store_mem_pend *e;
	struct store_mem_pool *pool;
	struct store_mem_name *nn;
	struct sbx *s, *old;
	int fill;

	if ((e = store_mem_pend_find(m, q->rec->container_name)) == NULL) {
		p->err = STORE_EFENCED;
		return;
	}
	fill = e->kind == STORE_KIND_FILL;
	store_mem_pend_drop(m, e);
	s = sbx_dup(q->rec);
	if ((old = store_mem_find(m, s->container_name)) != NULL) {
		tdelete(old, &m->records, store_mem_rec_cmp);
		sbx_free(old);
	}
	tsearch(s, &m->records, store_mem_rec_cmp);
	if (fill) {
		pool = store_mem_pool(m, s->sandbox_type, 1);
		nn = xcalloc(1, sizeof *nn);
		nn->name = xstrdup(s->container_name);
		TAILQ_INSERT_TAIL(&pool->idle, nn, entry);
		pool->len++;
	}
	if (s->session_ctx_id != NULL)
		store_mem_session_add(m, s->session_ctx_id, s->container_name);
}

/* STORE_IDLE_SESSIONS: sessions whose heartbeat is before q->before. */
static void
store_mem_idle(
    struct store_mem *m, const struct store_req *q, struct store_mem_pending *p)
{
	struct store_mem_walk w = {0};
	struct store_mem_session *sess;
	struct sbx *s;
	double hb;
	size_t i, j;
	int run;

	twalk_r(m->sessions, store_mem_walk_sess, &w);
	p->names = xcalloc(w.n + 1, sizeof *p->names);
	for (i = 0; i < w.n; i++) {
		sess = store_mem_session(m, w.names[i], 0);
		hb = 0;
		run = 0;
		for (j = 0; sess != NULL && j < sess->n; j++) {
			s = store_mem_find(m, sess->names[j]);
			if (s == NULL || s->state != SBX_RUNNING)
				continue;
			run = 1;
			if (s->last_active_at > hb)
				hb = s->last_active_at;
		}
		if (run && hb > 0 && hb < q->before)
			p->names[p->nnames++] = w.names[i];
		else
			free(w.names[i]);
	}
	free(w.names);
}

/* STORE_GC: deletes released/replaced records older than q->before. */
static void
store_mem_gc(
    struct store_mem *m, const struct store_req *q, struct store_mem_pending *p)
{
	struct store_mem_walk w = {0};
	int max = q->max > 0 ? q->max : 200;
	struct sbx *s;
	double t;
	size_t i;

	twalk_r(m->records, store_mem_walk_rec, &w);
	p->names = xcalloc(w.n + 1, sizeof *p->names);
	for (i = 0; i < w.n; i++) {
		s = store_mem_find(m, w.names[i]);
		t = 0;
		if (s != NULL && s->state == SBX_RELEASED)
			t = s->released_at;
		else if (s != NULL &&
		    (s->state == SBX_REPLACED || s->state == SBX_ERROR))
			t = s->updated_at;
		if ((int)p->nnames < max && t > 0 && t < q->before &&
		    store_mem_pend_find(m, w.names[i]) == NULL) {
			tdelete(s, &m->records, store_mem_rec_cmp);
			sbx_free(s);
			p->names[p->nnames++] = w.names[i];
		} else
			free(w.names[i]);
	}
	free(w.names);
}

/* Runs one operation now and queues its reply. */
static void
store_mem_run(
    struct store *st, const struct store_req *q, store_cb cb, void *arg)
{
	struct store_mem *m = st->priv;
	struct store_mem_pending *p = xcalloc(1, sizeof *p);
	struct store_mem_walk w = {0};
	struct store_mem_session *sess;
	struct store_mem_pool *pool;
	struct store_mem_name *nn;
	struct store_mem_pend *e;
	struct sbx *s, *old;
	char *name;
	size_t i;

	p->cb = cb;
	p->arg = arg;
	switch (q->op) {
	case STORE_PUT:
		old = store_mem_find(m, q->rec->container_name);
		if (q->if_state &&
		    (old == NULL || (int)old->state != q->expect)) {
			p->err = old == NULL ? STORE_ENOENT : STORE_ECONFLICT;
			break;
		}
		s = sbx_dup(q->rec);
		if (old != NULL) {
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
			p->value = w.active + (long)m->npending;
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
				store_mem_session_add(
				    m, s->session_ctx_id, s->container_name);
			}
			s->updated_at = q->now;
			p->err = STORE_OK;
			p->rec = sbx_dup(s);
			break;
		}
		break;
	case STORE_POOL_COUNT:
		pool = store_mem_pool(m, q->type, 0);
		p->value = pool != NULL ? (long)(pool->len + pool->warming) : 0;
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
	case STORE_BEGIN:
		store_mem_begin(m, q, p);
		break;
	case STORE_COMMIT:
		store_mem_commit(m, q, p);
		break;
	case STORE_ABORT:
		if ((e = store_mem_pend_find(m, q->name)) != NULL)
			store_mem_pend_drop(m, e);
		break;
	case STORE_ORPHANS:
		p->names = xcalloc(q->nnames + 1, sizeof *p->names);
		for (i = 0; i < q->nnames; i++) {
			s = store_mem_find(m, q->names[i]);
			if (store_mem_pend_find(m, q->names[i]) != NULL ||
			    (s != NULL &&
				(s->state == SBX_WARM ||
				    s->state == SBX_RUNNING)))
				continue;
			if (s != NULL && s->state == SBX_RECYCLED)
				xasprintf(
				    &p->names[p->nnames++], "~%s", q->names[i]);
			else
				p->names[p->nnames++] = xstrdup(q->names[i]);
		}
		break;
	case STORE_IDLE_SESSIONS:
		store_mem_idle(m, q, p);
		break;
	case STORE_GC:
		store_mem_gc(m, q, p);
		break;
	case STORE_REAP:      /* one owner, alive while this runs */
	case STORE_INSTANCES: /* only this one */
	case STORE_LOCK:      /* one process: always granted */
	case STORE_UNLOCK:
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
	while (!TAILQ_EMPTY(&m->pending))
		store_mem_pend_drop(m, TAILQ_FIRST(&m->pending));
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
	TAILQ_INIT(&m->pending);
	m->ports = port_map_new(port_lo, port_hi);
	m->flush = event_new(base, -1, 0, store_mem_on_flush, m);
	st->ops = &store_mem_ops;
	st->base = base;
	st->priv = m;
	return st;
}
