/*
 * pool: sandboxes and warm pools.
 *
 * A sandbox is made by one create operation (struct pool_op): lease a host
 * port, make its directories, create and start the container, wait for its
 * runtime's /healthz, store the record. Any failure undoes every step that
 * was done (container, port, directories) before the caller hears of it.
 * The refill planner keeps POOL_SIZE warm sandboxes per pooled type with
 * at most SANDPOOL_REFILL_CONCURRENCY creates in flight; a claim only pops
 * the store's idle list, so a pool hit makes no engine call.
 *
 * The pool owns the operations it starts; at shutdown it aborts them at
 * their next step (health waits at once), waits for engine calls in flight,
 * and then removes every container carrying this instance's label.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "driver.h"
#include "hc.h"
#include "json.h"
#include "log.h"
#include "pool.h"
#include "runtime.h"
#include "sandbox.h"
#include "sbtype.h"
#include "store.h"
#include "xmalloc.h"

/* Where the agent and its socket directory appear in the container. */
#define POOL_AGENT_PATH "/sandpool/agent"
#define POOL_AGENT_DIR "/run/sandpool"
#define POOL_AGENT_SOCK "agent.sock"
/* Redirect chains longer than this are loops (spec 1.5, get_info). */
#define POOL_MAX_REDIRECTS 10
/* Tries at another port when the engine says a port is taken. */
#define POOL_PORT_RETRIES 3
/* Longest back-off between failed refills of one type, seconds. */
#define POOL_BACKOFF_MAX 30

/* One pooled type. */
struct pool_type {
	const struct sbtype *t;
	int warming;	 /* fills in flight */
	int failures;	 /* consecutive failed fills */
	time_t retry_at; /* no fill before this after failures */
	TAILQ_ENTRY(pool_type) entry;
};

enum pool_op_state {
	OP_BEGIN,     /* reserving a slot (pool fill, instance cap) */
	OP_PORT,      /* leasing a host port */
	OP_CREATE,    /* engine create */
	OP_START,     /* engine start */
	OP_HEALTH,    /* waiting for the runtime */
	OP_COMMIT,    /* writing the record (+ idle list, session) */
	OP_UNDO,      /* removing the container after a failure */
	OP_UNDO_PORT, /* returning the port after a failure */
	OP_ABORT      /* dropping the reservation after a failure */
};

/* One create in flight. */
struct pool_op {
	struct pool *pool;
	enum pool_op_state state;
	const struct sbtype *type;
	struct pool_type *pt; /* set for pool fills */
	struct sbx *rec;      /* the record being built */
	char **env;	      /* request environment overlay */
	int retries;
	int quiet;	/* end without logging a failure */
	int full;	/* the pool was full: no back-off */
	int begun;	/* the store holds a reservation */
	int keep_mount; /* the workspace is not new: never removed */
	char *owner;	/* the reservation's owner */
	enum pool_err err;
	char *cause;
	struct rt_wait *wait;
	pool_cb cb; /* NULL for pool fills */
	void *arg;
	TAILQ_ENTRY(pool_op) entry;
};
TAILQ_HEAD(pool_ops, pool_op);

struct pool_sess;
TAILQ_HEAD(pool_sesses, pool_sess);

struct pool {
	struct event_base *base;
	struct hc *hc;
	struct drv *drv;
	struct store *store;

	/* Copies of the parameters. */
	char *instance_id;
	char *prefix;
	char *agent_path;
	char *run_dir;
	char *mount_root;
	char *publish_host;
	char **ro_mounts;
	const struct sbtypes *types;
	char *default_type;
	int pool_size;
	int refill_concurrency;
	int max_instances;
	int warmup_timeout;
	int keep_workspace;
	int watcher_interval;
	int lease_ttl;
	int shared;
	int heartbeat_timeout;
	int lock_ttl;
	int release_ttl;

	TAILQ_HEAD(, pool_type) pools;
	struct pool_sesses sess; /* reaps and touches in flight */
	int scanning;		 /* a heartbeat scan is in flight */
	int collecting;		 /* a record GC is in flight */
	int watch_locking;	 /* the watcher lock is being taken */
	char watch_token[SBX_TOKEN_LEN + 1];
	double last_gc;
	struct drv_events *events; /* the engine's event stream */
	struct event *events_retry;
	int events_backoff;	/* seconds */
	long long events_since; /* after the last event seen, ns */
	struct pool_ops ops;	/* creates in flight */
	int engine_calls;	/* other engine calls in flight */
	TAILQ_HEAD(, pool_call_ctx) starting; /* starts awaiting health */
	struct event *refill_ev;	      /* deferred planner run */
	struct event *tick;		      /* periodic planner run */
	struct event *reaper;		      /* periodic reap + reconcile */
	int reaper_runs;
	int reaping; /* a reap or reconcile is in flight */
	int started;
	int stopping;
	int cleanup;
	int sweeping;
	pool_done_cb shutdown_cb;
	void *shutdown_arg;
};

static void pool_op_step(struct pool_op *);
static void pool_op_fail(struct pool_op *, enum pool_err, const char *);
static void pool_refill_soon(struct pool *);
static void pool_shutdown_check(struct pool *);
static void pool_sess_drop(struct pool_sess *);
static void pool_watch(struct pool *);
static void pool_on_tick(evutil_socket_t, short, void *);
static void pool_events_open(struct pool *);
static void pool_on_events_retry(evutil_socket_t, short, void *);
static void pool_call_stop_waits(struct pool *);
static void pool_call_drop_waits(struct pool *);

/* nftw visitor removing everything below a directory. */
static int
pool_rm_entry(
    const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		log_warn("pool: remove %s", path);
	return 0;
}

/*
 * Removes a directory tree. Workspaces are small and this runs rarely
 * (release, crash recovery), so it stays on the loop.
 */
static void
pool_rmtree(const char *path)
{
	struct stat st;

	if (path == NULL || lstat(path, &st) != 0)
		return;
	nftw(path, pool_rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* The per-sandbox directories for a session id (caller frees). */
static char *
pool_dir(const char *root, const char *session_id)
{
	char *d;

	if (root == NULL || session_id == NULL)
		return NULL;
	xasprintf(&d, "%s/%s", root, session_id);
	return d;
}

/*
 * Whether a workspace is one the pool made, <DEFAULT_MOUNT_DIR>/<id>, and
 * not a directory a create request named (ALLOW_MOUNT_DIR): only those
 * are ever chowned or removed.
 */
static int
pool_owns_dir(const struct pool *p, const char *dir)
{
	size_t n;

	if (p->mount_root == NULL || dir == NULL)
		return 0;
	n = strlen(p->mount_root);
	return strncmp(dir, p->mount_root, n) == 0 && dir[n] == '/' &&
	    strlen(dir + n + 1) == SBX_ID_LEN &&
	    strspn(dir + n + 1, "0123456789abcdefghijklmnopqrstuvwxyz") ==
	    SBX_ID_LEN;
}

/* Removes what a sandbox had on the host: its run dir and workspace. */
static void
pool_remove_dirs(struct pool *p, const char *run_dir, const char *mount_dir)
{
	pool_rmtree(run_dir);
	if (!p->keep_workspace && pool_owns_dir(p, mount_dir))
		pool_rmtree(mount_dir);
}

/* Finds a pooled type by name. */
static struct pool_type *
pool_find_type(struct pool *p, const char *name)
{
	struct pool_type *pt;

	TAILQ_FOREACH (pt, &p->pools, entry)
		if (strcmp(pt->t->name, name) == 0)
			return pt;
	return NULL;
}

/* Makes the pool. */
struct pool *
pool_new(struct event_base *base, struct hc *hc, struct drv *drv,
    struct store *store, const struct pool_params *pp)
{
	struct pool *p = xcalloc(1, sizeof *p);
	const struct sbtype *t;
	struct pool_type *pt;
	size_t i;

	p->base = base;
	p->hc = hc;
	p->drv = drv;
	p->store = store;
	p->instance_id = xstrdup(pp->instance_id);
	p->prefix = xstrdup(pp->prefix);
	p->agent_path = xstrdup0(pp->agent_path);
	p->run_dir = xstrdup(pp->run_dir);
	p->mount_root = xstrdup0(pp->mount_root);
	p->publish_host =
	    xstrdup(pp->publish_host != NULL ? pp->publish_host : "127.0.0.1");
	p->ro_mounts = xstrv_dup(pp->readonly_mounts);
	p->types = pp->types;
	p->default_type =
	    xstrdup(pp->pool_types != NULL && pp->pool_types[0] != NULL
		    ? pp->pool_types[0]
		    : "base");
	p->pool_size = pp->pool_size;
	p->refill_concurrency =
	    pp->refill_concurrency > 0 ? pp->refill_concurrency : 1;
	p->max_instances = pp->max_instances;
	p->warmup_timeout = pp->warmup_timeout > 0 ? pp->warmup_timeout : 60;
	p->keep_workspace = pp->keep_workspace;
	p->watcher_interval = pp->watcher_interval;
	p->lease_ttl = pp->lease_ttl > 0 ? pp->lease_ttl : 10;
	p->shared = pp->shared;
	p->heartbeat_timeout =
	    pp->heartbeat_timeout > 0 ? pp->heartbeat_timeout : 300;
	p->lock_ttl = pp->lock_ttl > 0 ? pp->lock_ttl : 120;
	p->release_ttl = pp->release_ttl;
	TAILQ_INIT(&p->sess);
	TAILQ_INIT(&p->pools);
	sbx_random_token(p->watch_token);
	p->events_backoff = 1;
	p->events_retry = evtimer_new(base, pool_on_events_retry, p);
	TAILQ_INIT(&p->ops);
	TAILQ_INIT(&p->starting);
	for (i = 0; pp->pool_types != NULL && pp->pool_types[i] != NULL; i++) {
		if ((t = sbtypes_find(p->types, pp->pool_types[i])) == NULL ||
		    pool_find_type(p, t->name) != NULL)
			continue;
		pt = xcalloc(1, sizeof *pt);
		pt->t = t;
		TAILQ_INSERT_TAIL(&p->pools, pt, entry);
	}
	return p;
}

/* Frees the pool; operations still in flight are dropped. */
void
pool_free(struct pool *p)
{
	struct pool_type *pt;
	struct pool_op *op;

	if (p == NULL)
		return;
	if (p->refill_ev != NULL)
		event_free(p->refill_ev);
	if (p->tick != NULL)
		event_free(p->tick);
	if (p->reaper != NULL)
		event_free(p->reaper);
	drv_events_cancel(p->events);
	event_free(p->events_retry);
	while ((op = TAILQ_FIRST(&p->ops)) != NULL) {
		TAILQ_REMOVE(&p->ops, op, entry);
		rt_wait_cancel(op->wait);
		sbx_free(op->rec);
		xstrv_free(op->env);
		free(op->cause);
		free(op->owner);
		free(op);
	}
	pool_call_drop_waits(p);
	while (!TAILQ_EMPTY(&p->sess))
		pool_sess_drop(TAILQ_FIRST(&p->sess));
	while ((pt = TAILQ_FIRST(&p->pools)) != NULL) {
		TAILQ_REMOVE(&p->pools, pt, entry);
		free(pt);
	}
	free(p->instance_id);
	free(p->prefix);
	free(p->agent_path);
	free(p->run_dir);
	free(p->mount_root);
	free(p->publish_host);
	xstrv_free(p->ro_mounts);
	free(p->default_type);
	free(p);
}

/* The default type. */
const char *
pool_default_type(const struct pool *p)
{
	return p->default_type;
}

/*
 * Deferred replies. Every public call answers through here, so that no
 * callback runs inside the call that started it.
 */
struct pool_deferred {
	pool_cb cb;
	void *arg;
	enum pool_err err;
	char *cause;
	char *name;
	struct sbx *rec;
	int flag;
	char *status;
	char **names;
	size_t nnames;
	int has_status;
};

/* Delivers a deferred reply. */
static void
pool_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct pool_deferred *d = arg;
	struct pool_reply r;

	(void)fd;
	(void)what;
	memset(&r, 0, sizeof r);
	r.err = d->err;
	r.cause = d->cause;
	r.name = d->name;
	r.rec = d->rec;
	r.flag = d->flag;
	r.status = d->status;
	r.names = d->names;
	r.nnames = d->nnames;
	d->cb(&r, d->arg);
	free(d->cause);
	free(d->name);
	sbx_free(d->rec);
	free(d->status);
	xstrv_free(d->names);
	free(d);
}

/* Queues a reply for the next loop turn (copies everything). */
static void
pool_reply_later(
    struct pool *p, pool_cb cb, void *arg, const struct pool_reply *r)
{
	struct pool_deferred *d = xcalloc(1, sizeof *d);
	struct timeval tv = {0, 0};
	size_t i;

	d->cb = cb;
	d->arg = arg;
	d->err = r->err;
	d->cause = xstrdup0(r->cause);
	d->name = xstrdup0(r->name);
	d->rec = r->rec != NULL ? sbx_dup(r->rec) : NULL;
	d->flag = r->flag;
	d->status = xstrdup0(r->status);
	d->names = xcalloc(r->nnames + 1, sizeof *d->names);
	for (i = 0; i < r->nnames; i++)
		d->names[i] = xstrdup(r->names[i]);
	d->nnames = r->nnames;
	if (event_base_once(
		p->base, -1, EV_TIMEOUT, pool_on_deferred, d, &tv) != 0)
		fatalx("pool: event_base_once failed");
}

/* Queues an error reply. */
static void
pool_error_later(
    struct pool *p, pool_cb cb, void *arg, enum pool_err err, const char *cause)
{
	struct pool_reply r = {.err = err, .cause = cause};

	pool_reply_later(p, cb, arg, &r);
}

/* ---- Identity lookup, following redirects ------------------------------ */

typedef void (*pool_lookup_cb)(struct pool *, const struct sbx *, enum pool_err,
    const char *cause, void *arg);

struct pool_lookup {
	struct pool *pool;
	char *identity; /* as the client gave it */
	char *current;	/* name being looked up */
	int tried_prefix;
	int depth;
	int follow;
	pool_lookup_cb cb;
	void *arg;
};

static void pool_lookup_next(struct pool_lookup *);

/* A record (or none) came back from the store. */
static void
pool_lookup_on_get(const struct store_reply *r, void *arg)
{
	struct pool_lookup *l = arg;
	char *cause;

	if (r->err == STORE_ENOENT && !l->tried_prefix && l->depth == 0 &&
	    strncmp(l->current, l->pool->prefix, strlen(l->pool->prefix))) {
		/* A bare session_id: retry with the prefix (spec). */
		l->tried_prefix = 1;
		free(l->current);
		xasprintf(&l->current, "%s%s", l->pool->prefix, l->identity);
		pool_lookup_next(l);
		return;
	}
	if (r->err != STORE_OK) {
		if (r->err == STORE_ENOENT)
			xasprintf(&cause, "No container found with id: %s.",
			    l->identity);
		else
			cause = xstrdup(r->cause);
		l->cb(l->pool, NULL,
		    r->err == STORE_ENOENT ? POOL_ENOTFOUND : POOL_EUNAVAIL,
		    cause, l->arg);
		free(cause);
		goto out;
	}
	if (l->follow && r->rec->state == SBX_REPLACED &&
	    r->rec->redirect_to != NULL &&
	    strcmp(r->rec->redirect_to, r->rec->container_name) != 0) {
		if (++l->depth > POOL_MAX_REDIRECTS) {
			xasprintf(&cause,
			    "Redirect loop detected for container %s",
			    l->identity);
			l->cb(l->pool, NULL, POOL_EINVAL, cause, l->arg);
			free(cause);
			goto out;
		}
		xstrset(&l->current, r->rec->redirect_to);
		pool_lookup_next(l);
		return;
	}
	l->cb(l->pool, r->rec, POOL_OK, NULL, l->arg);
out:
	free(l->identity);
	free(l->current);
	free(l);
}

/* Asks the store for the current name. */
static void
pool_lookup_next(struct pool_lookup *l)
{
	struct store_req q = {.op = STORE_GET, .name = l->current};

	store_run(l->pool->store, &q, pool_lookup_on_get, l);
}

/* Resolves an identity to its record; cb from the loop. */
static void
pool_lookup(struct pool *p, const char *identity, int follow, pool_lookup_cb cb,
    void *arg)
{
	struct pool_lookup *l = xcalloc(1, sizeof *l);

	l->pool = p;
	l->identity = xstrdup(identity);
	l->current = xstrdup(identity);
	l->follow = follow;
	l->cb = cb;
	l->arg = arg;
	pool_lookup_next(l);
}

/* ---- Create ------------------------------------------------------------ */

/* Frees an operation that is off the list. */
static void
pool_op_free(struct pool_op *op)
{
	rt_wait_cancel(op->wait);
	sbx_free(op->rec);
	xstrv_free(op->env);
	free(op->cause);
	free(op->owner);
	free(op);
}

/* Ends an operation: answers its caller, frees it, replans. */
static void
pool_op_done(struct pool_op *op)
{
	struct pool *p = op->pool;
	struct pool_reply r;

	TAILQ_REMOVE(&p->ops, op, entry);
	if (op->pt != NULL) {
		op->pt->warming--;
		if (op->err == POOL_OK) {
			op->pt->failures = 0;
		} else if (op->err != POOL_ESHUTDOWN && !op->full) {
			int wait = 1
			    << (op->pt->failures < 5 ? op->pt->failures : 5);

			op->pt->failures++;
			op->pt->retry_at = time(NULL) +
			    (wait > POOL_BACKOFF_MAX ? POOL_BACKOFF_MAX : wait);
		}
	}
	if (op->cb != NULL) {
		memset(&r, 0, sizeof r);
		r.err = op->err;
		r.cause = op->cause;
		if (op->err == POOL_OK) {
			r.name = op->rec->container_name;
			r.rec = op->rec;
		}
		op->cb(&r, op->arg);
	}
	pool_op_free(op);
	if (p->stopping)
		pool_shutdown_check(p);
	else
		pool_refill_soon(p);
}

/* Engine replies during undo. */
static void
pool_op_on_undo(const struct drv_reply *r, void *arg)
{
	struct pool_op *op = arg;

	if (r->err != DRV_OK && r->err != DRV_ENOTFOUND)
		log_warnx("pool: %s: remove after failed create: %s",
		    op->rec->container_name,
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	free(op->rec->container_id);
	op->rec->container_id = NULL;
	pool_op_step(op);
}

/* Store replies during undo. */
static void
pool_op_on_undo_port(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;

	(void)r;
	if (op->state == OP_UNDO_PORT) {
		op->rec->port = 0;
		op->state = OP_ABORT;
	} else
		op->begun = 0;
	pool_op_step(op);
}

/*
 * Fails an operation: records the error, then undoes what was done
 * (container, port, directories) before answering.
 */
static void
pool_op_fail(struct pool_op *op, enum pool_err err, const char *cause)
{
	if (op->err == POOL_OK) {
		op->err = err;
		free(op->cause);
		op->cause = xstrdup(cause);
		if (err != POOL_ESHUTDOWN && !op->quiet)
			log_warnx("pool: %s: create failed: %s",
			    op->rec->container_name, cause);
	}
	rt_wait_cancel(op->wait);
	op->wait = NULL;
	op->state = OP_UNDO;
	pool_op_step(op);
}

/* Which image-building command to suggest for a missing image. */
static const char *
pool_builder_hint(const struct sbtype *t)
{
	if (strncmp(t->name, "filesystem", 10) == 0)
		return "runtime-sandbox-builder filesystem";
	if (strncmp(t->name, "base", 4) == 0)
		return "runtime-sandbox-builder base";
	return "runtime-sandbox-builder (base, filesystem or busybox), or "
	       "load the image locally (no registry is used)";
}

/* Turns an engine error into the operation's failure. */
static void
pool_op_engine_error(
    struct pool_op *op, const char *what, const struct drv_reply *r)
{
	const char *hint;
	char *cause;

	if (r->err == DRV_ENOIMAGE) {
		hint = pool_builder_hint(op->type);
		xasprintf(&cause,
		    "image '%s' for type '%s' is missing; build "
		    "it with: %s",
		    op->rec->version, op->type->name, hint);
	} else
		xasprintf(&cause, "%s: %s%s%s", what, drv_strerror(r->err),
		    r->msg != NULL ? ": " : "", r->msg != NULL ? r->msg : "");
	pool_op_fail(op, POOL_EENGINE, cause);
	free(cause);
}

/* The reservation answered. */
static void
pool_op_on_begin(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;
	struct pool *p = op->pool;
	char *cause;

	switch (r->err) {
	case STORE_OK:
		op->begun = 1;
		op->owner = xstrdup0(r->owner);
		op->state = OP_PORT;
		pool_op_step(op);
		return;
	case STORE_ENOENT: /* the pool is full: nothing to do */
		op->quiet = op->full = 1;
		pool_op_fail(op, POOL_EFULL, "the pool is full");
		return;
	case STORE_ELIMIT:
		xasprintf(&cause, "MAX_SANDBOX_INSTANCES (%d) reached",
		    p->max_instances);
		op->quiet = op->pt != NULL;
		pool_op_fail(op, POOL_EFULL, cause);
		free(cause);
		return;
	default:
		pool_op_fail(op, POOL_EUNAVAIL, r->cause);
		return;
	}
}

/* The port lease answered. */
static void
pool_op_on_port(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;
	char *cause;

	if (r->err != STORE_OK) {
		xasprintf(&cause,
		    "Not enough free ports available in the "
		    "specified range (%s)",
		    r->cause);
		pool_op_fail(op,
		    r->err == STORE_EFULL ? POOL_EFULL : POOL_EUNAVAIL, cause);
		free(cause);
		return;
	}
	op->rec->port = (int)r->value;
	free(op->rec->url);
	xasprintf(&op->rec->url, "http://localhost:%d", op->rec->port);
	op->state = OP_CREATE;
	pool_op_step(op);
}

/* The engine created the container. */
static void
pool_op_on_create(const struct drv_reply *r, void *arg)
{
	struct pool_op *op = arg;

	if (r->err != DRV_OK) {
		pool_op_engine_error(op, "create", r);
		return;
	}
	xstrset(&op->rec->container_id, r->id);
	op->state = OP_START;
	pool_op_step(op);
}

/* A port the engine refused is returned; the op retries at another. */
static void
pool_op_on_port_retry(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;

	(void)r;
	op->rec->port = 0;
	op->state = OP_PORT;
	pool_op_step(op);
}

/* The container of a port retry is gone; return its port. */
static void
pool_op_on_retry_removed(const struct drv_reply *r, void *arg)
{
	struct pool_op *op = arg;
	struct store_req q = {.op = STORE_PORT_FREE,
	    .port = op->rec->port,
	    .name = op->rec->container_name};

	(void)r;
	free(op->rec->container_id);
	op->rec->container_id = NULL;
	/* Next-fit leasing moves past the refused port. */
	store_run(op->pool->store, &q, pool_op_on_port_retry, op);
}

/* The engine started the container. */
static void
pool_op_on_start(const struct drv_reply *r, void *arg)
{
	struct pool_op *op = arg;

	if (r->err == DRV_EPORT && op->retries < POOL_PORT_RETRIES &&
	    !op->pool->stopping) {
		op->retries++;
		log_info("pool: %s: port %d is taken, trying another",
		    op->rec->container_name, op->rec->port);
		drv_remove(op->pool->drv, op->rec->container_id,
		    pool_op_on_retry_removed, op);
		return;
	}
	if (r->err != DRV_OK) {
		pool_op_engine_error(op, "start", r);
		return;
	}
	op->state = OP_HEALTH;
	pool_op_step(op);
}

/* The runtime answered healthz, or never did. */
static void
pool_op_on_health(int ok, const char *error, void *arg)
{
	struct pool_op *op = arg;
	char *cause;

	op->wait = NULL;
	if (!ok) {
		xasprintf(&cause,
		    "runtime did not become healthy within "
		    "%d s: %s",
		    op->pool->warmup_timeout, error);
		pool_op_fail(op, POOL_ERUNTIME, cause);
		free(cause);
		return;
	}
	op->state = OP_COMMIT;
	pool_op_step(op);
}

/* The record was committed (pushed to the pool, bound to its session). */
static void
pool_op_on_commit(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;

	if (r->err != STORE_OK) {
		if (r->err == STORE_EFENCED)
			op->begun = 0; /* the reaper took it over */
		pool_op_fail(op, POOL_EUNAVAIL, r->cause);
		return;
	}
	op->begun = 0;
	pool_op_done(op);
}

/* Builds the engine's view of the sandbox and asks for it. */
static void
pool_op_create(struct pool_op *op)
{
	struct pool *p = op->pool;
	const struct sbtype *t = op->type;
	struct sbx *s = op->rec;
	static const char *const nnp[] = {"no-new-privileges", NULL};
	const char *labels[16], *entry[2], *cmd[1];
	char **env, **binds, port_s[16], *b;
	size_t ne = 0, nb = 0, i, j, n;
	struct drv_spec spec;

	n = 0;
	for (i = 0; t->env != NULL && t->env[i] != NULL; i++)
		n++;
	for (i = 0; op->env != NULL && op->env[i] != NULL; i++)
		n++;
	env = xcalloc(n + 8, sizeof *env);
	xasprintf(&env[ne++], "SECRET_TOKEN=%s", s->runtime_token);
	xasprintf(&env[ne++], "NGINX_TIMEOUT=%d", s->timeout);
	if (t->inject_agent) {
		xasprintf(
		    &env[ne++], "SANDPOOL_AGENT_PORT=%d", t->runtime_port);
		xasprintf(&env[ne++], "SANDPOOL_AGENT_SOCKET=%s/%s",
		    POOL_AGENT_DIR, POOL_AGENT_SOCK);
	}
	for (i = 0; t->env != NULL && t->env[i] != NULL; i++)
		env[ne++] = xstrdup(t->env[i]);
	for (i = 0; op->env != NULL && op->env[i] != NULL; i++)
		env[ne++] = xstrdup(op->env[i]);

	binds = xcalloc(8 + 2 * 16, sizeof *binds);
	if (t->inject_agent) {
		xasprintf(
		    &binds[nb++], "%s:%s:ro", p->agent_path, POOL_AGENT_PATH);
		xasprintf(&binds[nb++], "%s:%s:rw", s->run_dir, POOL_AGENT_DIR);
	}
	if (s->mount_dir != NULL)
		xasprintf(&binds[nb++], "%s:/workspace:rw", s->mount_dir);
	for (j = 0; p->ro_mounts[j] != NULL && p->ro_mounts[j + 1] != NULL &&
	     nb < 8 + 2 * 16 - 1;
	     j += 2) {
		xasprintf(&b, "%s:%s:ro", p->ro_mounts[j], p->ro_mounts[j + 1]);
		binds[nb++] = b;
	}

	snprintf(port_s, sizeof port_s, "%d", s->port);
	i = 0;
	labels[i++] = "sandpool.owner";
	labels[i++] = "sandpool";
	labels[i++] = "sandpool.instance";
	labels[i++] = p->instance_id;
	labels[i++] = "sandpool.type";
	labels[i++] = t->name;
	labels[i++] = "sandpool.name";
	labels[i++] = s->container_name;
	labels[i++] = "sandpool.session_id";
	labels[i++] = s->session_id;
	labels[i++] = "sandpool.port";
	labels[i++] = port_s;
	labels[i] = NULL;

	memset(&spec, 0, sizeof spec);
	spec.name = s->container_name;
	spec.image = s->version;
	if (t->inject_agent) {
		entry[0] = POOL_AGENT_PATH;
		entry[1] = NULL;
		cmd[0] = NULL;
		spec.entrypoint = entry;
		spec.cmd = cmd; /* empty: the image's CMD is not the agent's */
	} else if (t->cmd != NULL)
		spec.cmd = (const char *const *)t->cmd;
	spec.env = (const char *const *)env;
	spec.labels = labels;
	spec.binds = (const char *const *)binds;
	spec.workdir = s->mount_dir != NULL ? "/workspace" : NULL;
	spec.network = t->network;
	if (s->port > 0) {
		spec.private_port = t->runtime_port;
		spec.host_port = s->port;
		spec.host_ip = p->publish_host;
	}
	spec.memory = t->memory;
	spec.nano_cpus = t->nano_cpus;
	spec.pids_limit = t->pids_limit;
	spec.shm_size = t->shm_size;
	spec.privileged = t->privileged;
	spec.runtime = t->runtime;
	spec.user = t->user;
	spec.init = t->init;
	spec.readonly_rootfs = t->read_only;
	spec.tmpfs = (const char *const *)t->tmpfs;
	/* A privileged container has every capability: nothing to drop. */
	if (!t->privileged) {
		spec.cap_drop = (const char *const *)t->cap_drop;
		spec.cap_add = (const char *const *)t->cap_add;
		if (t->no_new_privileges)
			spec.security_opt = nnp;
	}
	drv_create(p->drv, &spec, pool_op_on_create, op);
	for (i = 0; i < ne; i++) {
		explicit_bzero(env[i], strlen(env[i]));
		free(env[i]);
	}
	free(env);
	xstrv_free(binds);
}

/*
 * Gives a directory to the type's runtime user ("uid" or "uid:gid"), so
 * that an agent that is not root can make its socket and write its
 * workspace.
 */
static int
pool_chown_user(const char *path, const char *user, char **cause)
{
	const char *colon;
	uid_t uid;
	gid_t gid = (gid_t)-1;

	if (user == NULL)
		return 0;
	uid = (uid_t)strtoul(user, NULL, 10);
	if ((colon = strchr(user, ':')) != NULL)
		gid = (gid_t)strtoul(colon + 1, NULL, 10);
	if (chown(path, uid, gid) != 0) {
		xasprintf(
		    cause, "chown %s to %s: %s", path, user, strerror(errno));
		return -1;
	}
	return 0;
}

/* Makes the sandbox's host directories. */
static int
pool_op_mkdirs(struct pool_op *op, char **cause)
{
	struct sbx *s = op->rec;
	const char *user = op->type->user;

	if (op->type->inject_agent &&
	    (mkdir(s->run_dir, 0700) != 0 ||
		pool_chown_user(s->run_dir, user, cause) != 0)) {
		if (*cause == NULL)
			xasprintf(
			    cause, "mkdir %s: %s", s->run_dir, strerror(errno));
		return -1;
	}
	if (s->mount_dir != NULL && mkdir(s->mount_dir, 0755) != 0 &&
	    errno != EEXIST) {
		xasprintf(cause, "mkdir %s: %s", s->mount_dir, strerror(errno));
		return -1;
	}
	/* A directory the request named is the caller's: never chowned. */
	if (s->mount_dir != NULL && pool_owns_dir(op->pool, s->mount_dir) &&
	    pool_chown_user(s->mount_dir, user, cause) != 0)
		return -1;
	return 0;
}

/* Runs the operation's current step. */
static void
pool_op_step(struct pool_op *op)
{
	struct pool *p = op->pool;
	struct store_req q;
	char *cause;

	if (p->stopping && op->err == POOL_OK && op->state < OP_COMMIT) {
		pool_op_fail(op, POOL_ESHUTDOWN, "server is shutting down");
		return;
	}
	memset(&q, 0, sizeof q);
	switch (op->state) {
	case OP_BEGIN:
		q.op = STORE_BEGIN;
		q.name = op->rec->container_name;
		q.type = op->type->name;
		q.kind = op->pt != NULL ? STORE_KIND_FILL : STORE_KIND_COLD;
		q.target = p->pool_size;
		q.max = p->max_instances;
		store_run(p->store, &q, pool_op_on_begin, op);
		return;
	case OP_PORT:
		if (strcmp(op->type->network, "none") == 0 ||
		    op->type->runtime_port <= 0) {
			xstrset(&op->rec->url, "");
			op->state = OP_CREATE;
			pool_op_step(op);
			return;
		}
		q.op = STORE_PORT_LEASE;
		q.name = op->rec->container_name;
		q.ip = p->publish_host;
		store_run(p->store, &q, pool_op_on_port, op);
		return;
	case OP_CREATE:
		cause = NULL;
		if (op->retries == 0 && pool_op_mkdirs(op, &cause) != 0) {
			pool_op_fail(op, POOL_EENGINE, cause);
			free(cause);
			return;
		}
		pool_op_create(op);
		return;
	case OP_START:
		drv_start(p->drv, op->rec->container_id, pool_op_on_start, op);
		return;
	case OP_HEALTH:
		op->wait = rt_wait_healthy(p->base, p->hc, op->rec,
		    (long)p->warmup_timeout * 1000, pool_op_on_health, op);
		return;
	case OP_COMMIT:
		op->rec->updated_at = sbx_now();
		if (op->rec->session_ctx_id != NULL) {
			op->rec->state = SBX_RUNNING;
			op->rec->last_active_at = op->rec->updated_at;
		} else
			op->rec->state = SBX_WARM;
		q.op = STORE_COMMIT;
		q.rec = op->rec;
		q.kind = op->pt != NULL ? STORE_KIND_FILL : STORE_KIND_COLD;
		q.owner = op->owner;
		store_run(p->store, &q, pool_op_on_commit, op);
		return;
	case OP_UNDO:
		if (op->rec->container_id != NULL) {
			drv_remove(
			    p->drv, op->rec->container_id, pool_op_on_undo, op);
			return;
		}
		op->state = OP_UNDO_PORT;
		pool_op_step(op);
		return;
	case OP_UNDO_PORT:
		if (op->rec->port > 0) {
			q.op = STORE_PORT_FREE;
			q.port = op->rec->port;
			q.name = op->rec->container_name;
			store_run(p->store, &q, pool_op_on_undo_port, op);
			return;
		}
		op->state = OP_ABORT;
		pool_op_step(op);
		return;
	case OP_ABORT:
		if (op->begun) {
			q.op = STORE_ABORT;
			q.name = op->rec->container_name;
			q.owner = op->owner;
			store_run(p->store, &q, pool_op_on_undo_port, op);
			return;
		}
		if (!op->quiet)
			pool_remove_dirs(p,
			    op->type->inject_agent ? op->rec->run_dir : NULL,
			    op->keep_mount ? NULL : op->rec->mount_dir);
		pool_op_done(op);
		return;
	}
}

/*
 * Starts creating a sandbox of type t; mount (or NULL) is an existing
 * workspace to use instead of a new one: a directory a create request
 * named (ALLOW_MOUNT_DIR, checked by the caller) or a reaped session's
 * (restore). Such a workspace is never removed by this operation, not even
 * when it fails; NULL makes <DEFAULT_MOUNT_DIR>/<id>.
 */
static void
pool_op_start_in(struct pool *p, const struct sbtype *t, struct pool_type *pt,
    const char *meta, const char *const *env, const char *mount, pool_cb cb,
    void *arg)
{
	struct pool_op *op = xcalloc(1, sizeof *op);
	char id[SBX_ID_LEN + 1], tok[SBX_TOKEN_LEN + 1];
	struct sbx *s;

	op->pool = p;
	op->type = t;
	op->pt = pt;
	op->cb = cb;
	op->arg = arg;
	op->env = env != NULL ? xstrv_dup(env) : NULL;
	op->state = OP_BEGIN;
	op->rec = s = sbx_new();
	sbx_random_id(id);
	sbx_random_token(tok);
	s->session_id = xstrdup(id);
	xasprintf(&s->container_name, "%s%s", p->prefix, id);
	s->runtime_token = xstrdup(tok);
	s->version = xstrdup(t->image);
	s->sandbox_type = xstrdup(t->name);
	s->timeout = t->timeout;
	s->instance = xstrdup(p->instance_id);
	s->url = xstrdup("");
	s->mount_dir =
	    mount != NULL ? xstrdup(mount) : pool_dir(p->mount_root, id);
	op->keep_mount = mount != NULL;
	s->run_dir = pool_dir(p->run_dir, id);
	if (t->inject_agent)
		xasprintf(&s->sock_path, "%s/%s", s->run_dir, POOL_AGENT_SOCK);
	if (meta != NULL)
		sbx_set_meta(s, meta);
	if (pt != NULL)
		pt->warming++;
	TAILQ_INSERT_TAIL(&p->ops, op, entry);
	pool_op_step(op);
}

/* Starts creating a sandbox of type t with a new workspace. */
static void
pool_op_start(struct pool *p, const struct sbtype *t, struct pool_type *pt,
    const char *meta, const char *const *env, pool_cb cb, void *arg)
{
	pool_op_start_in(p, t, pt, meta, env, NULL, cb, arg);
}

/* ---- Refill planner ---------------------------------------------------- */

/* Counts pool fills in flight. */
static int
pool_fills(struct pool *p)
{
	struct pool_type *pt;
	int n = 0;

	TAILQ_FOREACH (pt, &p->pools, entry)
		n += pt->warming;
	return n;
}

struct pool_refill_ctx {
	struct pool *pool;
	struct pool_type *pt;
};

/* The idle count of one type is known: start the fills it lacks. */
static void
pool_refill_on_idle(const struct store_reply *r, void *arg)
{
	struct pool_refill_ctx *c = arg;
	struct pool *p = c->pool;
	struct pool_type *pt = c->pt;
	long need;

	free(c);
	if (r->err != STORE_OK || p->stopping)
		return;
	/* value counts idle and reserved slots of every worker. */
	need = p->pool_size - r->value;
	while (need-- > 0 && pool_fills(p) < p->refill_concurrency)
		pool_op_start(p, pt->t, pt, NULL, NULL, NULL, NULL);
}

/* Runs the planner: asks each pooled type's idle count. */
static void
pool_on_refill(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct pool_refill_ctx *c;
	struct pool_type *pt;
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	if (p->stopping || !p->started || p->pool_size <= 0)
		return;
	TAILQ_FOREACH (pt, &p->pools, entry) {
		if (pt->retry_at > now || !pt->t->supported)
			continue;
		if (pool_fills(p) >= p->refill_concurrency)
			break;
		c = xcalloc(1, sizeof *c);
		c->pool = p;
		c->pt = pt;
		store_run(p->store,
		    &(struct store_req){
			.op = STORE_POOL_COUNT, .type = pt->t->name},
		    pool_refill_on_idle, c);
	}
}

/* Schedules a planner run on the next loop turn. */
static void
pool_refill_soon(struct pool *p)
{
	if (p->refill_ev != NULL && !p->stopping && p->watcher_interval > 0)
		event_active(p->refill_ev, EV_TIMEOUT, 0);
}

/* ---- Sweep: remove this instance's containers -------------------------- */

struct pool_sweep {
	struct pool *pool;
	int pending;
	int removed;
	pool_done_cb cb;
	void *arg;
};

static void pool_release_forced(struct pool *, const char *name, const char *id,
    const char *sid, pool_cb, void *);

/* Ends a sweep when its last removal answered. */
static void
pool_sweep_check(struct pool_sweep *sw)
{
	if (sw->pending > 0)
		return;
	if (sw->removed > 0)
		log_info("pool: removed %d container(s) of instance %s",
		    sw->removed, sw->pool->instance_id);
	sw->cb(0, NULL, sw->arg);
	free(sw);
}

/* One container of the sweep is released and gone. */
static void
pool_sweep_on_release(const struct pool_reply *r, void *arg)
{
	struct pool_sweep *sw = arg;

	if (r->err == POOL_OK)
		sw->removed++;
	else
		log_warnx("pool: sweep: %s",
		    r->cause != NULL ? r->cause : "release failed");
	sw->pending--;
	pool_sweep_check(sw);
}

/* 1 if sid looks like a session_id (so it can name a directory). */
static int
pool_sid_ok(const char *sid)
{
	return sid != NULL && strlen(sid) == SBX_ID_LEN &&
	    strspn(sid, "0123456789abcdefghijklmnopqrstuvwxyz") == SBX_ID_LEN;
}

/*
 * The engine listed this instance's containers: release each one through
 * the store (so that shared state says released, no pool hands it out and
 * its port comes back), removing those without a live record directly.
 */
static void
pool_sweep_on_list(const struct drv_reply *r, void *arg)
{
	struct pool_sweep *sw = arg;
	struct pool *p = sw->pool;
	const char *sid, *name;
	size_t i;

	p->engine_calls--;
	if (r->err != DRV_OK) {
		char *cause;

		xasprintf(&cause, "cannot list containers: %s",
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
		sw->cb(-1, cause, sw->arg);
		free(cause);
		free(sw);
		return;
	}
	for (i = 0; i < r->nctrs; i++) {
		sid = drv_ctr_label(&r->ctrs[i], "sandpool.session_id");
		name = drv_ctr_label(&r->ctrs[i], "sandpool.name");
		if (name == NULL)
			name = r->ctrs[i].name;
		sw->pending++;
		pool_release_forced(p, name, r->ctrs[i].id,
		    pool_sid_ok(sid) ? sid : NULL, pool_sweep_on_release, sw);
	}
	sw->pending--; /* the list itself */
	pool_sweep_check(sw);
}

/* Removes every container labelled with this instance. */
static void
pool_sweep(struct pool *p, pool_done_cb cb, void *arg)
{
	struct pool_sweep *sw = xcalloc(1, sizeof *sw);
	char *inst;
	const char *filters[3];

	sw->pool = p;
	sw->cb = cb;
	sw->arg = arg;
	sw->pending = 1;
	xasprintf(&inst, "sandpool.instance=%s", p->instance_id);
	filters[0] = "sandpool.owner=sandpool";
	filters[1] = inst;
	filters[2] = NULL;
	p->engine_calls++;
	drv_list(p->drv, filters, pool_sweep_on_list, sw);
	free(inst);
}

/* ---- Reaper and reconciler --------------------------------------------- */

/* Runs of the reaper between two reconciles. */
#define POOL_RECONCILE_EVERY 2

/* One removal of the reaper or reconciler answered. */
static void
pool_reap_on_remove(const struct drv_reply *r, void *arg)
{
	struct pool *p = arg;

	p->engine_calls--;
	if (r->err != DRV_OK && r->err != DRV_ENOTFOUND)
		log_warnx("pool: reaper: remove: %s",
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (p->stopping)
		pool_shutdown_check(p);
}

/*
 * Removes a container (by id or name), its run dir and, with workspace,
 * its workspace (a reaped session's workspace outlives its container).
 */
static void
pool_reap_remove(
    struct pool *p, const char *ref, const char *name, int workspace)
{
	size_t n = strlen(p->prefix);
	char *run, *ws;

	if (name != NULL && strncmp(name, p->prefix, n) == 0 &&
	    pool_sid_ok(name + n)) {
		run = pool_dir(p->run_dir, name + n);
		ws = workspace ? pool_dir(p->mount_root, name + n) : NULL;
		pool_remove_dirs(p, run, ws);
		free(run);
		free(ws);
	}
	p->engine_calls++;
	drv_remove(p->drv, ref, pool_reap_on_remove, p);
}

struct pool_reconcile {
	struct pool *pool;
	char **instances;
	size_t ninstances;
	char **names; /* containers of those instances */
	char **ids;
	int *running;
	size_t n;
};

/* A sandbox being adopted after a store loss. */
struct pool_adopt {
	struct pool *pool;
	struct sbx *rec;
	char *owner; /* of the pool slot */
	int pooled;  /* never claimed, of a pooled type: back to its pool */
	int steps;
};

/* One step of an adoption answered; the last one frees it. */
static void
pool_adopt_step_done(struct pool_adopt *a)
{
	struct pool *p = a->pool;

	if (--a->steps > 0)
		return;
	sbx_free(a->rec);
	free(a->owner);
	free(a);
	p->engine_calls--;
	if (p->stopping)
		pool_shutdown_check(p);
}

/* A store step of an adoption answered. */
static void
pool_adopt_on_store(const struct store_reply *r, void *arg)
{
	struct pool_adopt *a = arg;

	if (r->err != STORE_OK)
		log_warnx(
		    "pool: adopt %s: %s", a->rec->container_name, r->cause);
	pool_adopt_step_done(a);
}

/* The value of "K=..." in a "K=V" list, or NULL. */
static const char *
pool_env_value(char *const *env, const char *key)
{
	size_t n = strlen(key);

	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, key, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

/* The host side of the bind mounted at ctr ("host:ctr[:mode]"). */
static char *
pool_bind_source(char *const *binds, const char *ctr)
{
	const char *c;
	size_t n = strlen(ctr);

	for (; binds != NULL && *binds != NULL; binds++) {
		if ((c = strchr(*binds, ':')) == NULL)
			continue;
		if (strncmp(c + 1, ctr, n) == 0 &&
		    (c[1 + n] == '\0' || c[1 + n] == ':'))
			return xstrndup(*binds, (size_t)(c - *binds));
	}
	return NULL;
}

/* Writes the rebuilt record (and takes its port back). */
static void
pool_adopt_put(struct pool_adopt *a)
{
	struct pool *p = a->pool;
	struct sbx *s = a->rec;
	struct store_req q;

	log_warnx("pool: reconcile: %s had no record (the store lost its "
		  "data?); rebuilt it from the container%s",
	    s->container_name,
	    a->pooled ? ", back in its pool" : ", without its session");
	memset(&q, 0, sizeof q);
	if (a->pooled) {
		q.op = STORE_COMMIT;
		q.kind = STORE_KIND_FILL;
		q.owner = a->owner;
	} else
		q.op = STORE_PUT;
	q.rec = s;
	a->steps++;
	store_run(p->store, &q, pool_adopt_on_store, a);
	if (s->port > 0) {
		memset(&q, 0, sizeof q);
		q.op = STORE_PORT_TAKE;
		q.port = s->port;
		q.name = s->container_name;
		a->steps++;
		store_run(p->store, &q, pool_adopt_on_store, a);
	}
}

/* The pool slot for an adopted sandbox answered. */
static void
pool_adopt_on_begin(const struct store_reply *r, void *arg)
{
	struct pool_adopt *a = arg;
	struct pool *p = a->pool;

	if (r->err == STORE_OK) {
		a->owner = xstrdup0(r->owner);
		pool_adopt_put(a);
	} else if (r->err == STORE_ENOENT || r->err == STORE_ELIMIT) {
		/* The pool was refilled meanwhile: this one is surplus. */
		log_info("pool: reconcile: %s had no record and its pool is "
			 "full; removing it",
		    a->rec->container_name);
		pool_reap_remove(
		    p, a->rec->container_id, a->rec->container_name, 1);
	}
	pool_adopt_step_done(a);
}

/*
 * The engine described a running container whose record the store lost:
 * rebuild the record from its labels, environment and mounts. It comes
 * back warm without a session (its session mapping is lost with the
 * store; whoever holds its name can still use and release it), and goes
 * back to its pool only if it was never claimed (no marker).
 */
static void
pool_adopt_on_inspect(const struct drv_reply *r, void *arg)
{
	struct pool_adopt *a = arg;
	struct pool *p = a->pool;
	const struct drv_ctr *c = r->nctrs > 0 ? &r->ctrs[0] : NULL;
	struct store_req q;
	const char *v;
	struct sbx *s;

	if (r->err != DRV_OK || c == NULL ||
	    drv_ctr_label(c, "sandpool.name") == NULL ||
	    pool_env_value(c->env, "SECRET_TOKEN") == NULL) {
		pool_adopt_step_done(a);
		return;
	}
	a->rec = s = sbx_new();
	s->container_id = xstrdup(c->id);
	s->container_name = xstrdup(drv_ctr_label(c, "sandpool.name"));
	s->session_id = xstrdup0(drv_ctr_label(c, "sandpool.session_id"));
	s->sandbox_type = xstrdup0(drv_ctr_label(c, "sandpool.type"));
	s->instance = xstrdup0(drv_ctr_label(c, "sandpool.instance"));
	s->version = xstrdup0(c->image);
	s->runtime_token = xstrdup(pool_env_value(c->env, "SECRET_TOKEN"));
	v = pool_env_value(c->env, "NGINX_TIMEOUT");
	s->timeout = v != NULL ? atoi(v) : 60;
	v = drv_ctr_label(c, "sandpool.port");
	s->port = v != NULL ? atoi(v) : 0;
	if (s->port > 0)
		xasprintf(&s->url, "http://localhost:%d", s->port);
	else
		s->url = xstrdup("");
	s->mount_dir = pool_bind_source(c->binds, "/workspace");
	s->run_dir = pool_bind_source(c->binds, POOL_AGENT_DIR);
	if (s->run_dir != NULL)
		xasprintf(&s->sock_path, "%s/%s", s->run_dir, POOL_AGENT_SOCK);
	s->state = SBX_WARM;
	s->updated_at = sbx_now();
	a->pooled = s->run_dir != NULL && !sbx_was_claimed(s->run_dir) &&
	    s->sandbox_type != NULL &&
	    pool_find_type(p, s->sandbox_type) != NULL;
	if (a->pooled) {
		/* Back to its pool only if the pool has room (atomic). */
		memset(&q, 0, sizeof q);
		q.op = STORE_BEGIN;
		q.name = s->container_name;
		q.type = s->sandbox_type;
		q.kind = STORE_KIND_FILL;
		q.target = p->pool_size;
		a->steps++;
		store_run(p->store, &q, pool_adopt_on_begin, a);
	} else
		pool_adopt_put(a);
	pool_adopt_step_done(a);
}

/* Rebuilds the record of a running container the store lost. */
static void
pool_adopt(struct pool *p, const char *id)
{
	struct pool_adopt *a = xcalloc(1, sizeof *a);

	a->pool = p;
	a->steps = 1;
	p->engine_calls++;
	drv_inspect(p->drv, id, pool_adopt_on_inspect, a);
}

/* Frees a reconcile pass and lets the next one start. */
static void
pool_reconcile_end(struct pool_reconcile *rc)
{
	size_t i;

	rc->pool->reaping = 0;
	for (i = 0; i < rc->ninstances; i++)
		free(rc->instances[i]);
	free(rc->instances);
	for (i = 0; i < rc->n; i++) {
		free(rc->names[i]);
		free(rc->ids[i]);
	}
	free(rc->names);
	free(rc->ids);
	free(rc->running);
	free(rc);
}

/* The store said which of the listed containers are orphans. */
static void
pool_reconcile_on_orphans(const struct store_reply *r, void *arg)
{
	struct pool_reconcile *rc = arg;
	struct pool *p = rc->pool;
	size_t i, j;
	int keep;

	for (i = 0; r->err == STORE_OK && i < r->nnames && !p->stopping; i++) {
		keep = r->names[i][0] == '~' || r->names[i][0] == '?';
		for (j = 0; j < rc->n; j++)
			if (strcmp(rc->names[j], r->names[i] + keep) == 0)
				break;
		if (j == rc->n)
			continue;
		if (r->names[i][0] == '?' && rc->running[j]) {
			/* The store lost its record: rebuild it from labels. */
			pool_adopt(p, rc->ids[j]);
			continue;
		}
		if (r->names[i][0] == '?')
			keep = 0; /* never started: nothing worth keeping */
		log_info("pool: reconcile: removing orphan %s", rc->names[j]);
		pool_reap_remove(p, rc->ids[j], rc->names[j], !keep);
	}
	pool_reconcile_end(rc);
}

/* The engine listed sandpool's containers: ask which are orphans. */
static void
pool_reconcile_on_list(const struct drv_reply *r, void *arg)
{
	struct pool_reconcile *rc = arg;
	struct pool *p = rc->pool;
	struct store_req q = {.op = STORE_ORPHANS};
	const char *inst, *name;
	size_t i, j;

	p->engine_calls--;
	if (r->err != DRV_OK || p->stopping) {
		if (p->stopping)
			pool_shutdown_check(p);
		pool_reconcile_end(rc);
		return;
	}
	rc->names = xcalloc(r->nctrs + 1, sizeof *rc->names);
	rc->ids = xcalloc(r->nctrs + 1, sizeof *rc->ids);
	rc->running = xcalloc(r->nctrs + 1, sizeof *rc->running);
	for (i = 0; i < r->nctrs; i++) {
		inst = drv_ctr_label(&r->ctrs[i], "sandpool.instance");
		if (inst == NULL)
			continue;
		for (j = 0; j < rc->ninstances; j++)
			if (strcmp(rc->instances[j], inst) == 0)
				break;
		if (j == rc->ninstances && strcmp(inst, p->instance_id) != 0)
			continue; /* another deployment's: not ours to judge */
		name = drv_ctr_label(&r->ctrs[i], "sandpool.name");
		rc->names[rc->n] =
		    xstrdup(name != NULL ? name : r->ctrs[i].name);
		rc->running[rc->n] = strcmp(r->ctrs[i].state, "running") == 0;
		rc->ids[rc->n++] = xstrdup(r->ctrs[i].id);
	}
	if (rc->n == 0) {
		pool_reconcile_end(rc);
		return;
	}
	q.names = rc->names;
	q.nnames = rc->n;
	store_run(p->store, &q, pool_reconcile_on_orphans, rc);
}

/* The instances sharing the store are known: list their containers. */
static void
pool_reconcile_on_instances(const struct store_reply *r, void *arg)
{
	struct pool_reconcile *rc = arg;
	struct pool *p = rc->pool;
	const char *filters[2] = {"sandpool.owner=sandpool", NULL};
	size_t i;

	if (r->err != STORE_OK || p->stopping) {
		pool_reconcile_end(rc);
		return;
	}
	rc->instances = xcalloc(r->nnames + 1, sizeof *rc->instances);
	for (i = 0; i < r->nnames; i++)
		rc->instances[i] = xstrdup(r->names[i]);
	rc->ninstances = r->nnames;
	p->engine_calls++;
	drv_list(p->drv, filters, pool_reconcile_on_list, rc);
}

/*
 * The store handed back what dead owners left half-made: remove those
 * containers; then, every few runs, reconcile the engine with the store.
 */
static void
pool_reap_on_reply(const struct store_reply *r, void *arg)
{
	struct pool *p = arg;
	struct pool_reconcile *rc;
	size_t i;

	for (i = 0; r->err == STORE_OK && i < r->nnames && !p->stopping; i++) {
		log_info("pool: reaper: %s was left half-made by a dead "
			 "worker; removing it",
		    r->names[i]);
		pool_reap_remove(p, r->names[i], r->names[i], 1);
	}
	if (r->err != STORE_OK || p->stopping ||
	    ++p->reaper_runs % POOL_RECONCILE_EVERY != 0) {
		p->reaping = 0;
		return;
	}
	rc = xcalloc(1, sizeof *rc);
	rc->pool = p;
	store_run(p->store, &(struct store_req){.op = STORE_INSTANCES},
	    pool_reconcile_on_instances, rc);
}

/* Reaper timer: reap dead owners' leftovers. */
static void
pool_on_reaper(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;

	(void)fd;
	(void)what;
	if (p->stopping || p->reaping || !store_ready(p->store))
		return;
	p->reaping = 1;
	store_run(p->store, &(struct store_req){.op = STORE_REAP},
	    pool_reap_on_reply, p);
}

struct pool_start_ctx {
	struct pool *pool;
	pool_done_cb cb;
	void *arg;
};

/* Leftovers are gone: start pre-warming. */
static void
pool_start_on_sweep(int err, const char *cause, void *arg)
{
	struct pool_start_ctx *c = arg;
	struct pool *p = c->pool;
	struct timeval tv;

	if (err == 0 && !p->stopping) {
		p->started = 1;
		tv.tv_sec = p->lease_ttl / 2;
		tv.tv_usec = (p->lease_ttl % 2) * 500000;
		p->reaper =
		    event_new(p->base, -1, EV_PERSIST, pool_on_reaper, p);
		event_add(p->reaper, &tv);
		pool_events_open(p);
		p->refill_ev = event_new(p->base, -1, 0, pool_on_refill, p);
		if (p->watcher_interval > 0) {
			tv.tv_sec = p->watcher_interval;
			tv.tv_usec = 0;
			p->tick =
			    event_new(p->base, -1, EV_PERSIST, pool_on_tick, p);
			event_add(p->tick, &tv);
		}
		pool_refill_soon(p);
	}
	c->cb(err, cause, c->arg);
	free(c);
}

/* The watcher's period: refill, heartbeat scan, record GC. */
static void
pool_on_tick(evutil_socket_t fd, short what, void *arg)
{
	pool_on_refill(fd, what, arg);
	pool_watch(arg);
}

/* Starts without a sweep (shared store). */
static void
pool_on_start_shared(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pool_start_on_sweep(0, NULL, arg);
}

/* Removes leftovers, then starts the pools. */
void
pool_start(struct pool *p, pool_done_cb cb, void *arg)
{
	struct pool_start_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	if (p->shared) {
		/*
		 * Other workers and instances may be serving this instance's
		 * containers: nothing is swept; the reaper and reconciler
		 * remove what is really left over.
		 */
		struct timeval tv = {0, 0};

		event_base_once(
		    p->base, -1, EV_TIMEOUT, pool_on_start_shared, c, &tv);
		return;
	}
	pool_sweep(p, pool_start_on_sweep, c);
}

/* ---- Shutdown ---------------------------------------------------------- */

/* The final sweep is done. */
static void
pool_shutdown_on_sweep(int err, const char *cause, void *arg)
{
	struct pool *p = arg;

	if (err != 0)
		log_warnx("pool: cleanup: %s", cause);
	p->shutdown_cb(err, cause, p->shutdown_arg);
}

/* Finishes shutdown once nothing is in flight. */
static void
pool_shutdown_check(struct pool *p)
{
	if (!TAILQ_EMPTY(&p->ops) || !TAILQ_EMPTY(&p->sess) ||
	    p->engine_calls > 0 || p->sweeping || p->shutdown_cb == NULL)
		return;
	p->sweeping = 1;
	if (p->cleanup)
		pool_sweep(p, pool_shutdown_on_sweep, p);
	else
		pool_shutdown_on_sweep(0, NULL, p);
}

/* Deferred start of the shutdown check. */
static void
pool_on_shutdown(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pool_shutdown_check(arg);
}

/* Stops the pools; with cleanup, removes this instance's containers. */
void
pool_shutdown(struct pool *p, int cleanup, pool_done_cb cb, void *arg)
{
	struct timeval tv = {0, 0};
	struct pool_op *op, *next;

	p->stopping = 1;
	p->cleanup = cleanup;
	p->shutdown_cb = cb;
	p->shutdown_arg = arg;
	if (p->tick != NULL)
		event_del(p->tick);
	if (p->reaper != NULL)
		event_del(p->reaper);
	drv_events_cancel(p->events);
	p->events = NULL;
	event_del(p->events_retry);
	/* Health waits end now; other steps end at their next boundary. */
	for (op = TAILQ_FIRST(&p->ops); op != NULL; op = next) {
		next = TAILQ_NEXT(op, entry);
		if (op->state == OP_HEALTH && op->wait != NULL)
			pool_op_fail(
			    op, POOL_ESHUTDOWN, "server is shutting down");
	}
	pool_call_stop_waits(p);
	event_base_once(p->base, -1, EV_TIMEOUT, pool_on_shutdown, p, &tv);
}

/* ---- Claims and cold creates ------------------------------------------- */

/* Resolves a type name; NULL with *cause when unknown. */
static const struct sbtype *
pool_type_of(struct pool *p, const char *name, char **cause)
{
	const struct sbtype *t;

	if (name == NULL)
		name = p->default_type;
	if ((t = sbtypes_find(p->types, name)) == NULL) {
		xasprintf(cause, "'%s' is not a valid SandboxType", name);
		return NULL;
	}
	if (!t->supported) {
		xasprintf(cause,
		    "sandbox type '%s' cannot be served by "
		    "sandpool (no image for it)",
		    name);
		return NULL;
	}
	return t;
}

/* Creates a sandbox. */
void
pool_create(struct pool *p, const char *type, const char *meta,
    const char *const *env, const char *mount_dir, pool_cb cb, void *arg)
{
	const struct sbtype *t;
	char *cause;

	if (p->stopping) {
		pool_error_later(
		    p, cb, arg, POOL_ESHUTDOWN, "server is shutting down");
		return;
	}
	if ((t = pool_type_of(p, type, &cause)) == NULL) {
		pool_error_later(p, cb, arg, POOL_EINVAL, cause);
		free(cause);
		return;
	}
	/* mount_dir was checked by the caller (ALLOW_MOUNT_DIR's roots). */
	pool_op_start_in(p, t, NULL, meta, env, mount_dir, cb, arg);
}

struct pool_claim_ctx {
	struct pool *pool;
	const struct sbtype *t;
	char *meta;
	pool_cb cb;
	void *arg;
};

/* The store answered a claim: a hit is handed out, a miss goes cold. */
static void
pool_claim_on_reply(const struct store_reply *r, void *arg)
{
	struct pool_claim_ctx *c = arg;
	struct pool *p = c->pool;
	struct pool_reply pr;

	if (r->err == STORE_OK) {
		memset(&pr, 0, sizeof pr);
		pr.name = r->rec->container_name;
		pr.rec = r->rec;
		c->cb(&pr, c->arg);
		pool_refill_soon(p);
	} else if (r->err == STORE_ENOENT && !p->stopping) {
		log_debug("pool: %s: pool empty, creating cold", c->t->name);
		pool_op_start(p, c->t, NULL, c->meta, NULL, c->cb, c->arg);
		pool_refill_soon(p);
	} else {
		memset(&pr, 0, sizeof pr);
		pr.err = p->stopping ? POOL_ESHUTDOWN : POOL_EUNAVAIL;
		pr.cause = p->stopping ? "server is shutting down" : r->cause;
		c->cb(&pr, c->arg);
	}
	free(c->meta);
	free(c);
}

/* Hands out a warm sandbox, or creates one. */
void
pool_create_from_pool(
    struct pool *p, const char *type, const char *meta, pool_cb cb, void *arg)
{
	struct pool_claim_ctx *c;
	const struct sbtype *t;
	struct store_req q;
	struct sbx *m;
	char *cause;

	if (p->stopping) {
		pool_error_later(
		    p, cb, arg, POOL_ESHUTDOWN, "server is shutting down");
		return;
	}
	if ((t = pool_type_of(p, type, &cause)) == NULL) {
		pool_error_later(p, cb, arg, POOL_EINVAL, cause);
		free(cause);
		return;
	}
	if (pool_find_type(p, t->name) == NULL || p->pool_size <= 0) {
		pool_op_start(p, t, NULL, meta, NULL, cb, arg);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->pool = p;
	c->t = t;
	c->meta = xstrdup0(meta);
	c->cb = cb;
	c->arg = arg;
	m = sbx_new();
	sbx_set_meta(m, meta);
	memset(&q, 0, sizeof q);
	q.op = STORE_POOL_CLAIM;
	q.type = t->name;
	q.session = m->session_ctx_id;
	q.meta = m->meta; /* checked: an object's text, "{}" at worst */
	q.now = sbx_now();
	store_run(p->store, &q, pool_claim_on_reply, c);
	sbx_free(m);
}

/* ---- Release ----------------------------------------------------------- */

struct pool_release_ctx {
	struct pool *pool;
	struct sbx *rec;
	char *force_id;	 /* sweep: container to remove without record */
	char *force_sid; /* and its session_id, for its directories */
	int steps;	 /* store/engine replies still awaited */
	pool_cb cb;
	void *arg;
};

/* One step of a release finished; the last one answers. */
static void
pool_release_step_done(struct pool_release_ctx *c)
{
	struct pool_reply r;

	if (--c->steps > 0)
		return;
	pool_remove_dirs(c->pool, c->rec->run_dir, c->rec->mount_dir);
	memset(&r, 0, sizeof r);
	r.flag = 1;
	c->cb(&r, c->arg);
	c->pool->engine_calls--;
	sbx_free(c->rec);
	if (c->pool->stopping)
		pool_shutdown_check(c->pool);
	free(c->force_id);
	free(c->force_sid);
	free(c);
}

/* A store step of a release answered. */
static void
pool_release_on_store(const struct store_reply *r, void *arg)
{
	(void)r;
	pool_release_step_done(arg);
}

/* The engine removed the container: return its port. */
static void
pool_release_on_remove(const struct drv_reply *r, void *arg)
{
	struct pool_release_ctx *c = arg;
	struct store_req q = {.op = STORE_PORT_FREE};

	if (r->err != DRV_OK && r->err != DRV_ENOTFOUND)
		log_warnx("pool: %s: remove: %s", c->rec->container_name,
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (c->rec->port > 0) {
		q.port = c->rec->port;
		q.name = c->rec->container_name;
		c->steps++;
		store_run(c->pool->store, &q, pool_release_on_store, c);
	}
	pool_release_step_done(c);
}

/* The record to release is known. */
static void
pool_release_on_lookup(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_release_ctx *c = arg;
	struct store_req q;
	struct sbx *s;

	if (err == POOL_ENOTFOUND || (err != POOL_OK && c->force_id != NULL) ||
	    (err == POOL_OK &&
		(rec->state == SBX_RELEASED || rec->state == SBX_REPLACED ||
		    (rec->state == SBX_RECYCLED && c->force_id != NULL)))) {
		struct pool_reply r = {.flag = 1};

		if (c->force_id != NULL) {
			/* A container without a live record: remove it. */
			char *run = pool_dir(p->run_dir, c->force_sid);
			char *ws = pool_dir(p->mount_root, c->force_sid);

			c->rec = sbx_new();
			c->rec->container_name = xstrdup(c->force_id);
			c->rec->run_dir = run;
			c->rec->mount_dir = ws;
			c->steps = 1;
			drv_remove(
			    p->drv, c->force_id, pool_release_on_remove, c);
			return;
		}
		c->cb(&r, c->arg);
		p->engine_calls--;
		free(c);
		return;
	}
	if (err != POOL_OK) {
		struct pool_reply r = {.err = err, .cause = cause};

		c->cb(&r, c->arg);
		p->engine_calls--;
		free(c->force_id);
		free(c->force_sid);
		free(c);
		return;
	}
	c->rec = s = sbx_dup(rec);
	if (s->state == SBX_RECYCLED) {
		/* Reaped: container and port are gone; the workspace goes. */
		s->port = 0;
		free(s->container_id);
		s->container_id = NULL;
	}
	c->steps = 1; /* the engine removal */
	memset(&q, 0, sizeof q);
	if (s->session_ctx_id != NULL) {
		q.op = STORE_SESSION_DEL;
		q.session = s->session_ctx_id;
		q.name = s->container_name;
		c->steps++;
		store_run(p->store, &q, pool_release_on_store, c);
	} else if (s->state == SBX_WARM) {
		q.op = STORE_POOL_REMOVE;
		q.type = s->sandbox_type;
		q.name = s->container_name;
		c->steps++;
		store_run(p->store, &q, pool_release_on_store, c);
	}
	/* The record says released before the engine is touched (spec). */
	{
		struct sbx *m = sbx_dup(s);

		m->state = SBX_RELEASED;
		m->released_at = m->updated_at = sbx_now();
		free(m->recycle_reason);
		m->recycle_reason = NULL;
		m->recycled_at = 0;
		sbx_clear_session(m);
		memset(&q, 0, sizeof q);
		q.op = STORE_PUT;
		q.rec = m;
		c->steps++;
		store_run(p->store, &q, pool_release_on_store, c);
		sbx_free(m);
	}
	if (s->container_id != NULL)
		drv_remove(p->drv, s->container_id, pool_release_on_remove, c);
	else {
		struct drv_reply dr = {.err = DRV_ENOTFOUND};

		pool_release_on_remove(&dr, c);
	}
}

/* Releases a sandbox. */
void
pool_release(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	struct pool_release_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	p->engine_calls++;
	pool_lookup(p, identity, 1, pool_release_on_lookup, c);
}

/*
 * Releases the sandbox named name through the store; if it has no live
 * record, removes the container id (and the directories of sid) anyway.
 */
static void
pool_release_forced(struct pool *p, const char *name, const char *id,
    const char *sid, pool_cb cb, void *arg)
{
	struct pool_release_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	c->force_id = xstrdup(id);
	c->force_sid = xstrdup0(sid);
	p->engine_calls++;
	pool_lookup(p, name, 0, pool_release_on_lookup, c);
}

/* ---- Lifecycle: heartbeats, reaping, restore, GC (spec 3.7) ------------ */

enum pool_sess_kind { POOL_SESS_REAP, POOL_SESS_TOUCH };

enum pool_sess_step {
	SESS_LOCK,   /* taking heartbeat_lock:<session> */
	SESS_NAMES,  /* reading the session's names */
	SESS_LOAD,   /* reading the records one by one */
	SESS_WORK,   /* reaping / heartbeating / restoring them */
	SESS_UNLOCK, /* giving the lock back */
	SESS_DONE
};

/* One reap (watcher) or touch (API) of a session. */
struct pool_sess {
	struct pool *pool;
	enum pool_sess_kind kind;
	enum pool_sess_step step;
	char *session;
	char *lock_key;
	char token[SBX_TOKEN_LEN + 1];
	int locked;
	int restoring; /* touch: restore under the lock */
	char **names;
	size_t n, i;
	struct sbx **recs; /* index-aligned with names; NULL if none */
	int running, recycled;
	double hb;
	int tries; /* touch: lock attempts */
	struct event *retry;
	/* touch */
	char *identity;
	struct sbx *rec; /* the touched record (answer) */
	enum pool_err err;
	char *cause;
	pool_cb cb;
	void *arg;
	TAILQ_ENTRY(pool_sess) entry;
};

static void pool_sess_step(struct pool_sess *);

/* Frees the names and records read so far. */
static void
pool_sess_clear(struct pool_sess *ss)
{
	size_t i;

	for (i = 0; i < ss->n; i++) {
		free(ss->names[i]);
		sbx_free(ss->recs[i]);
	}
	free(ss->names);
	free(ss->recs);
	ss->names = NULL;
	ss->recs = NULL;
	ss->n = ss->i = 0;
	ss->running = ss->recycled = 0;
	ss->hb = 0;
}

/* Frees a session operation that is off the list. */
static void
pool_sess_free(struct pool_sess *ss)
{
	pool_sess_clear(ss);
	if (ss->retry != NULL)
		event_free(ss->retry);
	free(ss->session);
	free(ss->lock_key);
	free(ss->identity);
	sbx_free(ss->rec);
	free(ss->cause);
	free(ss);
}

/* Ends a session operation: answers a touch, frees, checks shutdown. */
static void
pool_sess_end(struct pool_sess *ss)
{
	struct pool *p = ss->pool;
	struct pool_reply r;

	TAILQ_REMOVE(&p->sess, ss, entry);
	if (ss->kind == POOL_SESS_TOUCH) {
		memset(&r, 0, sizeof r);
		r.err = ss->err;
		r.cause = ss->cause;
		if (ss->err == POOL_OK) {
			r.rec = ss->rec;
			r.name =
			    ss->rec != NULL ? ss->rec->container_name : NULL;
		}
		ss->cb(&r, ss->arg);
	}
	pool_sess_free(ss);
	if (p->stopping)
		pool_shutdown_check(p);
}

/* Drops a session operation without answering (the pool is going). */
static void
pool_sess_drop(struct pool_sess *ss)
{
	TAILQ_REMOVE(&ss->pool->sess, ss, entry);
	pool_sess_free(ss);
}

/* Records an error for the caller of a touch (the first one wins). */
static void
pool_sess_error(struct pool_sess *ss, enum pool_err err, const char *cause)
{
	if (ss->err != POOL_OK)
		return;
	ss->err = err;
	free(ss->cause);
	ss->cause = xstrdup0(cause);
}

/* Goes to the unlock step (or ends when no lock is held). */
static void
pool_sess_finish(struct pool_sess *ss)
{
	ss->step = ss->locked ? SESS_UNLOCK : SESS_DONE;
	pool_sess_step(ss);
}

/* Generic store answer: move on (errors are logged, not fatal). */
static void
pool_sess_on_store(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;

	if (r->err != STORE_OK && r->err != STORE_ECONFLICT &&
	    r->err != STORE_ENOENT)
		log_warnx("pool: session %s: %s", ss->session, r->cause);
	pool_sess_step(ss);
}

/* The lock answered. */
static void
pool_sess_on_lock(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	struct timeval tv = {0, 200000};

	if (r->err == STORE_OK) {
		ss->locked = 1;
		ss->step = SESS_NAMES;
		pool_sess_step(ss);
		return;
	}
	if (ss->kind == POOL_SESS_TOUCH && r->err == STORE_ECONFLICT &&
	    ++ss->tries < ss->pool->warmup_timeout * 5 && !ss->pool->stopping) {
		/* Someone else reaps or restores this session: wait. */
		evtimer_add(ss->retry, &tv);
		return;
	}
	if (r->err != STORE_ECONFLICT)
		pool_sess_error(ss, POOL_EUNAVAIL, r->cause);
	else
		pool_sess_error(ss, POOL_EUNAVAIL,
		    "the session is being restored elsewhere; try again");
	ss->step = SESS_DONE;
	pool_sess_step(ss);
}

/* Retry timer of a touch waiting for the session lock. */
static void
pool_sess_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct pool_sess *ss = arg;

	(void)fd;
	(void)what;
	ss->step = SESS_LOCK;
	pool_sess_step(ss);
}

/* The session's names came back. */
static void
pool_sess_on_names(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	size_t i, extra;

	if (r->err != STORE_OK && r->err != STORE_ENOENT) {
		pool_sess_error(ss, POOL_EUNAVAIL, r->cause);
		pool_sess_finish(ss);
		return;
	}
	pool_sess_clear(ss);
	/* A touched record missing from its list is heartbeated too. */
	extra = ss->rec != NULL ? 1 : 0;
	for (i = 0; extra && i < r->nnames; i++)
		if (strcmp(r->names[i], ss->rec->container_name) == 0)
			extra = 0;
	ss->names = xcalloc(r->nnames + extra + 1, sizeof *ss->names);
	ss->recs = xcalloc(r->nnames + extra + 1, sizeof *ss->recs);
	for (i = 0; i < r->nnames; i++)
		ss->names[ss->n++] = xstrdup(r->names[i]);
	if (extra)
		ss->names[ss->n++] = xstrdup(ss->rec->container_name);
	ss->step = SESS_LOAD;
	pool_sess_step(ss);
}

/* One record of the session came back. */
static void
pool_sess_on_load(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	const struct sbx *s = r->rec;

	if (r->err != STORE_OK && r->err != STORE_ENOENT) {
		pool_sess_error(ss, POOL_EUNAVAIL, r->cause);
		pool_sess_finish(ss);
		return;
	}
	if (r->err == STORE_OK) {
		ss->recs[ss->i] = sbx_dup(s);
		if (s->state == SBX_RUNNING) {
			ss->running++;
			if (s->last_active_at > ss->hb)
				ss->hb = s->last_active_at;
		} else if (s->state == SBX_RECYCLED)
			ss->recycled++;
	}
	ss->i++;
	pool_sess_step(ss);
}

/* Reap: the container of a recycled sandbox is gone: free its port. */
static void
pool_sess_on_reaped(const struct drv_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	struct sbx *s = ss->recs[ss->i];
	struct store_req q = {.op = STORE_PORT_FREE};

	ss->pool->engine_calls--;
	if (r->err != DRV_OK && r->err != DRV_ENOTFOUND)
		log_warnx("pool: reap: %s: remove: %s", s->container_name,
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	/* The workspace stays until release; the agent dir goes. */
	pool_rmtree(s->run_dir);
	ss->i++;
	if (s->port > 0) {
		q.port = s->port;
		q.name = s->container_name;
		store_run(ss->pool->store, &q, pool_sess_on_store, ss);
		return;
	}
	pool_sess_step(ss);
}

/* Reap: the record says recycled (or changed meanwhile). */
static void
pool_sess_on_recycled(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	struct sbx *s = ss->recs[ss->i];

	if (r->err != STORE_OK || s->container_id == NULL) {
		/* Touched or released meanwhile: leave it. */
		ss->recs[ss->i] = NULL;
		sbx_free(s);
		ss->i++;
		pool_sess_step(ss);
		return;
	}
	log_info("pool: session %s: %s idle for more than %d s; reaped",
	    ss->session, s->container_name, ss->pool->heartbeat_timeout);
	ss->pool->engine_calls++;
	drv_remove(ss->pool->drv, s->container_id, pool_sess_on_reaped, ss);
}

/* Restore: the old record is now a redirect stub. */
static void
pool_sess_on_replaced(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;

	(void)r;
	ss->i++;
	pool_sess_step(ss);
}

/* Restore: the old name left the session; make the old record a stub. */
static void
pool_sess_on_unmapped(const struct store_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	struct sbx *s = ss->recs[ss->i];
	struct store_req q = {.op = STORE_PUT};

	(void)r;
	s->state = SBX_REPLACED;
	s->updated_at = sbx_now();
	q.rec = s;
	q.if_state = 1;
	q.expect = SBX_RECYCLED;
	store_run(ss->pool->store, &q, pool_sess_on_replaced, ss);
}

/* Restore: the replacement is running and bound to the session. */
static void
pool_sess_on_restored(const struct pool_reply *r, void *arg)
{
	struct pool_sess *ss = arg;
	struct sbx *s = ss->recs[ss->i];
	struct store_req q = {.op = STORE_SESSION_DEL};

	if (r->err != POOL_OK) {
		log_warnx("pool: session %s: restore of %s failed: %s",
		    ss->session, s->container_name, r->cause);
		pool_sess_error(ss, r->err, r->cause);
		pool_sess_finish(ss);
		return;
	}
	log_info("pool: session %s: %s restored as %s (same workspace)",
	    ss->session, s->container_name, r->name);
	xstrset(&s->redirect_to, r->name);
	q.session = ss->session;
	q.name = s->container_name;
	store_run(ss->pool->store, &q, pool_sess_on_unmapped, ss);
}

/* Touch: the record that answers is the identity's, redirects followed. */
static void
pool_sess_on_final(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_sess *ss = arg;

	(void)p;
	if (err != POOL_OK)
		pool_sess_error(ss, err, cause);
	else {
		sbx_free(ss->rec);
		ss->rec = sbx_dup(rec);
	}
	ss->step = SESS_DONE;
	pool_sess_step(ss);
}

/* The work of one loaded record; 0 if there is nothing to do for it. */
static int
pool_sess_work_one(struct pool_sess *ss)
{
	struct pool *p = ss->pool;
	struct sbx *s = ss->recs[ss->i];
	struct store_req q = {.op = STORE_PUT};
	const struct sbtype *t;

	if (s == NULL)
		return 0;
	if (ss->kind == POOL_SESS_REAP) {
		if (s->state != SBX_RUNNING)
			return 0;
		s->state = SBX_RECYCLED;
		s->recycled_at = s->updated_at = sbx_now();
		xstrset(&s->recycle_reason, "heartbeat_timeout");
		q.rec = s;
		q.if_state = 1;
		q.expect = SBX_RUNNING;
		store_run(p->store, &q, pool_sess_on_recycled, ss);
		return 1;
	}
	if (ss->restoring) {
		if (s->state != SBX_RECYCLED)
			return 0;
		t = sbtypes_find(p->types,
		    s->sandbox_type != NULL ? s->sandbox_type
					    : p->default_type);
		if (t == NULL)
			t = sbtypes_find(p->types, p->default_type);
		if (t == NULL || !t->supported) {
			pool_sess_error(ss, POOL_EINVAL,
			    "cannot restore: unknown sandbox type");
			return 0;
		}
		pool_op_start_in(p, t, NULL, s->meta, NULL, s->mount_dir,
		    pool_sess_on_restored, ss);
		return 1;
	}
	/* Heartbeat. */
	if (s->state != SBX_RUNNING)
		return 0;
	s->last_active_at = s->updated_at = sbx_now();
	if (ss->rec != NULL &&
	    strcmp(ss->rec->container_name, s->container_name) == 0) {
		ss->rec->last_active_at = s->last_active_at;
		ss->rec->updated_at = s->updated_at;
	}
	q.rec = s;
	q.if_state = 1;
	q.expect = SBX_RUNNING;
	ss->i++;
	store_run(p->store, &q, pool_sess_on_store, ss);
	return 1;
}

/* Runs the session operation's current step. */
static void
pool_sess_step(struct pool_sess *ss)
{
	struct pool *p = ss->pool;
	struct store_req q;

	memset(&q, 0, sizeof q);
	switch (ss->step) {
	case SESS_LOCK:
		q.op = STORE_LOCK;
		q.name = ss->lock_key;
		q.token = ss->token;
		q.ttl_ms = (long)p->lock_ttl * 1000;
		store_run(p->store, &q, pool_sess_on_lock, ss);
		return;
	case SESS_NAMES:
		q.op = STORE_SESSION_GET;
		q.session = ss->session;
		store_run(p->store, &q, pool_sess_on_names, ss);
		return;
	case SESS_LOAD:
		if (ss->i < ss->n) {
			q.op = STORE_GET;
			q.name = ss->names[ss->i];
			store_run(p->store, &q, pool_sess_on_load, ss);
			return;
		}
		ss->i = 0;
		if (ss->kind == POOL_SESS_REAP &&
		    (ss->running == 0 ||
			sbx_now() - ss->hb <= p->heartbeat_timeout)) {
			pool_sess_finish(ss); /* touched meanwhile */
			return;
		}
		if (ss->kind == POOL_SESS_TOUCH && ss->recycled > 0 &&
		    !ss->locked) {
			/* Restore under the session lock; reload there. */
			ss->restoring = 1;
			ss->step = SESS_LOCK;
			pool_sess_step(ss);
			return;
		}
		ss->step = SESS_WORK;
		pool_sess_step(ss);
		return;
	case SESS_WORK:
		while (ss->i < ss->n && !p->stopping && ss->err == POOL_OK) {
			if (pool_sess_work_one(ss))
				return;
			ss->i++;
		}
		if (ss->restoring && ss->err == POOL_OK) {
			/* Heartbeat the restored session, then answer. */
			ss->restoring = 0;
			ss->step = SESS_NAMES;
			pool_sess_step(ss);
			return;
		}
		pool_sess_finish(ss);
		return;
	case SESS_UNLOCK:
		ss->locked = 0;
		ss->step = SESS_DONE;
		q.op = STORE_UNLOCK;
		q.name = ss->lock_key;
		q.token = ss->token;
		store_run(p->store, &q, pool_sess_on_store, ss);
		return;
	case SESS_DONE:
		if (ss->kind == POOL_SESS_TOUCH && ss->err == POOL_OK &&
		    ss->identity != NULL) {
			char *id = ss->identity;

			/* Once: the answer follows the redirects made. */
			ss->identity = NULL;
			pool_lookup(p, id, 1, pool_sess_on_final, ss);
			free(id);
			return;
		}
		pool_sess_end(ss);
		return;
	}
}

/* Makes a session operation (not started). */
static struct pool_sess *
pool_sess_new(struct pool *p, enum pool_sess_kind kind, const char *session)
{
	struct pool_sess *ss = xcalloc(1, sizeof *ss);

	ss->pool = p;
	ss->kind = kind;
	ss->session = xstrdup(session);
	xasprintf(&ss->lock_key, "heartbeat_lock:%s", session);
	sbx_random_token(ss->token);
	ss->retry = evtimer_new(p->base, pool_sess_on_retry, ss);
	TAILQ_INSERT_TAIL(&p->sess, ss, entry);
	return ss;
}

/* 1 if a reap of session is already under way in this process. */
static int
pool_sess_busy(struct pool *p, const char *session)
{
	struct pool_sess *ss;

	TAILQ_FOREACH (ss, &p->sess, entry)
		if (ss->kind == POOL_SESS_REAP &&
		    strcmp(ss->session, session) == 0)
			return 1;
	return 0;
}

/* The store named the sessions idle for too long: reap each. */
static void
pool_scan_on_idle(const struct store_reply *r, void *arg)
{
	struct pool *p = arg;
	struct pool_sess *ss;
	size_t i;

	p->scanning = 0;
	for (i = 0; r->err == STORE_OK && i < r->nnames && !p->stopping; i++) {
		if (pool_sess_busy(p, r->names[i]))
			continue;
		ss = pool_sess_new(p, POOL_SESS_REAP, r->names[i]);
		ss->step = SESS_LOCK;
		pool_sess_step(ss);
	}
}

/* Record GC answered. */
static void
pool_gc_on_reply(const struct store_reply *r, void *arg)
{
	struct pool *p = arg;

	p->collecting = 0;
	if (r->err == STORE_OK && r->nnames > 0)
		log_debug("pool: gc: deleted %zu released/replaced records",
		    r->nnames);
}

/* The scan and GC of one watcher pass. */
static void
pool_watch_run(struct pool *p)
{
	struct store_req q;
	double now = sbx_now();
	double every;

	if (!p->scanning) {
		memset(&q, 0, sizeof q);
		q.op = STORE_IDLE_SESSIONS;
		q.before = now - p->heartbeat_timeout;
		p->scanning = 1;
		store_run(p->store, &q, pool_scan_on_idle, p);
	}
	/* GC at most every min(60, TTL/2) s; one pass deletes <= 200. */
	every = p->release_ttl / 2.0 < 60 ? p->release_ttl / 2.0 : 60;
	if (p->release_ttl > 0 && !p->collecting && now - p->last_gc >= every) {
		p->last_gc = now;
		memset(&q, 0, sizeof q);
		q.op = STORE_GC;
		q.before = now - p->release_ttl;
		q.max = 200;
		p->collecting = 1;
		store_run(p->store, &q, pool_gc_on_reply, p);
	}
}

/* The watcher lock answered: this worker runs this pass, or not. */
static void
pool_watch_on_lock(const struct store_reply *r, void *arg)
{
	struct pool *p = arg;

	p->watch_locking = 0;
	if (r->err == STORE_OK && !p->stopping)
		pool_watch_run(p);
}

/*
 * One watcher pass after the refill planner: heartbeat scan and GC. With
 * a shared store one worker of all the workers and instances runs each
 * pass: the one that takes sandpool:watcher, a lock that expires by
 * itself just before the next pass.
 */
static void
pool_watch(struct pool *p)
{
	struct store_req q;
	long ttl = (long)p->watcher_interval * 1000 - 100;

	if (p->stopping || !p->started || !store_ready(p->store) ||
	    p->watch_locking || p->scanning)
		return;
	memset(&q, 0, sizeof q);
	q.op = STORE_LOCK;
	q.name = "sandpool:watcher";
	q.token = p->watch_token;
	q.ttl_ms = ttl < 500 ? 500 : ttl;
	p->watch_locking = 1;
	store_run(p->store, &q, pool_watch_on_lock, p);
}

/* ---- Engine events: sandboxes that died behind our back ---------------- */

/* Longest wait before the event stream is opened again, seconds. */
#define POOL_EVENTS_BACKOFF_MAX 30

/* One container death being looked into. */
struct pool_died {
	struct pool *pool;
	char *id; /* container id of the event */
	char *exit_code;
	int destroyed;	 /* destroy, not die */
	int checked;	 /* the engine confirmed it is not running */
	struct sbx *rec; /* the record as it was */
	struct sbx *upd; /* as it is marked */
	int steps;
};

/* Frees a death once its last step answered. */
static void
pool_died_step_done(struct pool_died *d)
{
	struct pool *p = d->pool;

	if (--d->steps > 0)
		return;
	p->engine_calls--;
	sbx_free(d->rec);
	sbx_free(d->upd);
	free(d->id);
	free(d->exit_code);
	free(d);
	if (p->stopping)
		pool_shutdown_check(p);
	else
		pool_refill_soon(p);
}

/* A store step of the clean-up answered. */
static void
pool_died_on_store(const struct store_reply *r, void *arg)
{
	(void)r;
	pool_died_step_done(arg);
}

/* The dead container is removed. */
static void
pool_died_on_remove(const struct drv_reply *r, void *arg)
{
	(void)r;
	pool_died_step_done(arg);
}

/* The record is marked: free what the sandbox held. */
static void
pool_died_on_marked(const struct store_reply *r, void *arg)
{
	struct pool_died *d = arg;
	struct pool *p = d->pool;
	struct sbx *s = d->rec;
	struct store_req q;

	if (r->err != STORE_OK) {
		/* Released, reaped or marked by someone else meanwhile. */
		pool_died_step_done(d);
		return;
	}
	log_warnx("pool: %s: container died (exit code %s) without being "
		  "released; record marked %s",
	    s->container_name, d->exit_code != NULL ? d->exit_code : "?",
	    sbx_state_name(d->upd->state));
	if (s->state == SBX_WARM && s->session_ctx_id == NULL) {
		memset(&q, 0, sizeof q);
		q.op = STORE_POOL_REMOVE;
		q.type = s->sandbox_type;
		q.name = s->container_name;
		d->steps++;
		store_run(p->store, &q, pool_died_on_store, d);
	}
	if (s->port > 0) {
		memset(&q, 0, sizeof q);
		q.op = STORE_PORT_FREE;
		q.port = s->port;
		q.name = s->container_name;
		d->steps++;
		store_run(p->store, &q, pool_died_on_store, d);
	}
	/* A recycled one keeps its workspace for the restore. */
	pool_remove_dirs(
	    p, s->run_dir, d->upd->state != SBX_RECYCLED ? s->mount_dir : NULL);
	d->steps++;
	drv_remove(p->drv, d->id, pool_died_on_remove, d);
	pool_died_step_done(d);
}

static void pool_died_on_get(const struct store_reply *, void *);

/* The engine says whether the "dead" container runs (started again). */
static void
pool_died_on_inspect(const struct drv_reply *r, void *arg)
{
	struct pool_died *d = arg;
	struct store_reply sr;

	if (r->err == DRV_OK && r->nctrs > 0 &&
	    strcmp(r->ctrs[0].state, "running") == 0) {
		pool_died_step_done(d);
		return;
	}
	/* Dead indeed: go on with the record read before. */
	memset(&sr, 0, sizeof sr);
	sr.rec = d->rec;
	d->rec = NULL;
	pool_died_on_get(&sr, d);
	sbx_free((struct sbx *)sr.rec);
}

/* The record of the dead container came back. */
static void
pool_died_on_get(const struct store_reply *r, void *arg)
{
	struct pool_died *d = arg;
	struct pool *p = d->pool;
	const struct sbx *s = r->rec;
	struct store_req q = {.op = STORE_PUT};

	if (r->err != STORE_OK ||
	    (s->state != SBX_WARM && s->state != SBX_RUNNING) ||
	    s->container_id == NULL || strcmp(s->container_id, d->id) != 0 ||
	    (s->stopped && !d->destroyed)) {
		/* Ours to tear down, already handled, or not ours at all. */
		pool_died_step_done(d);
		return;
	}
	d->rec = sbx_dup(s);
	if (!d->destroyed && !d->checked) {
		/* A die may be old news: the container may run again. */
		d->checked = 1;
		drv_inspect(p->drv, d->id, pool_died_on_inspect, d);
		return;
	}
	d->upd = sbx_dup(s);
	d->upd->updated_at = sbx_now();
	xstrset(&d->upd->recycle_reason, "container_died");
	if (s->state == SBX_RUNNING && s->session_ctx_id != NULL) {
		/* Like a reap: the next touch restores the session. */
		d->upd->state = SBX_RECYCLED;
		d->upd->recycled_at = d->upd->updated_at;
	} else
		d->upd->state = SBX_ERROR;
	q.rec = d->upd;
	q.if_state = 1;
	q.expect = s->state;
	store_run(p->store, &q, pool_died_on_marked, d);
}

/* One engine event. */
static void
pool_on_event(const struct drv_event *e, void *arg)
{
	struct pool *p = arg;
	struct pool_died *d;
	const char *name;
	struct store_req q = {.op = STORE_GET};

	if (e->time_nano >= p->events_since)
		p->events_since = e->time_nano + 1;
	p->events_backoff = 1;
	if (strcmp(e->action, "oom") == 0) {
		log_info("pool: %s: out of memory",
		    drv_event_attr(e, "name") != NULL
			? drv_event_attr(e, "name")
			: e->id);
		return;
	}
	if (p->stopping ||
	    (strcmp(e->action, "die") != 0 &&
		strcmp(e->action, "destroy") != 0))
		return;
	if ((name = drv_event_attr(e, "sandpool.name")) == NULL)
		return;
	d = xcalloc(1, sizeof *d);
	d->pool = p;
	d->id = xstrdup(e->id);
	d->exit_code = xstrdup0(drv_event_attr(e, "exitCode"));
	d->destroyed = strcmp(e->action, "destroy") == 0;
	d->steps = 1;
	p->engine_calls++;
	q.name = name;
	store_run(p->store, &q, pool_died_on_get, d);
}

static void pool_events_open(struct pool *);

/* Reconnect timer of the event stream. */
static void
pool_on_events_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pool_events_open(arg);
}

/* The event stream ended: open it again (from the last event seen). */
static void
pool_on_events_end(enum drv_err err, const char *msg, void *arg)
{
	struct pool *p = arg;
	struct timeval tv;

	p->events = NULL;
	if (p->stopping)
		return;
	log_warnx("pool: docker events: %s; reconnecting in %d s",
	    msg != NULL ? msg : drv_strerror(err), p->events_backoff);
	tv.tv_sec = p->events_backoff;
	tv.tv_usec = 0;
	evtimer_add(p->events_retry, &tv);
	p->events_backoff *= 2;
	if (p->events_backoff > POOL_EVENTS_BACKOFF_MAX)
		p->events_backoff = POOL_EVENTS_BACKOFF_MAX;
}

/* Subscribes to the deaths of sandpool's containers. */
static void
pool_events_open(struct pool *p)
{
	static const char *const labels[] = {"sandpool.owner=sandpool", NULL};
	static const char *const actions[] = {"die", "destroy", "oom", NULL};

	if (p->stopping || p->events != NULL)
		return;
	p->events = drv_events(p->drv, labels, actions, p->events_since,
	    pool_on_event, pool_on_events_end, p);
}

/* ---- Lookups ----------------------------------------------------------- */

struct pool_call_ctx {
	struct pool *pool;
	struct sbx *rec;
	int kind;
	pool_cb cb;
	void *arg;
	struct rt_wait *wait;		  /* start: the runtime's health wait */
	TAILQ_ENTRY(pool_call_ctx) entry; /* on pool.starting while waiting */
};

/* Answers a lookup with the record. */
static void
pool_info_on_lookup(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool_reply r;

	(void)p;
	memset(&r, 0, sizeof r);
	r.err = err;
	r.cause = cause;
	r.rec = rec;
	if (rec != NULL)
		r.name = rec->container_name;
	c->cb(&r, c->arg);
	free(c);
}

/* The record of an identity. */
void
pool_get_info(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	pool_lookup(p, identity, 1, pool_info_on_lookup, c);
}

/* The heartbeat was written: answer with the record. */
static void
pool_touch_on_put(const struct store_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool_reply pr;

	(void)r;
	memset(&pr, 0, sizeof pr);
	pr.rec = c->rec;
	pr.name = c->rec->container_name;
	c->cb(&pr, c->arg);
	sbx_free(c->rec);
	free(c);
}

/*
 * The record to touch is known. Without a session only it is
 * heartbeated; with one, every running sandbox of the session is, and a
 * reaped session is restored first (pool_sess).
 */
static void
pool_touch_on_lookup(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct store_req q = {.op = STORE_PUT};
	struct pool_sess *ss;

	if (err == POOL_OK && rec->session_ctx_id != NULL &&
	    (rec->state == SBX_RUNNING || rec->state == SBX_RECYCLED) &&
	    !p->stopping) {
		ss = pool_sess_new(p, POOL_SESS_TOUCH, rec->session_ctx_id);
		ss->identity = xstrdup(rec->container_name);
		ss->rec = sbx_dup(rec);
		ss->cb = c->cb;
		ss->arg = c->arg;
		ss->step = SESS_NAMES;
		free(c);
		pool_sess_step(ss);
		return;
	}
	if (err != POOL_OK || rec->state != SBX_RUNNING) {
		pool_info_on_lookup(p, rec, err, cause, arg);
		return;
	}
	c->rec = sbx_dup(rec);
	c->rec->last_active_at = c->rec->updated_at = sbx_now();
	q.rec = c->rec;
	q.if_state = 1;
	q.expect = SBX_RUNNING;
	store_run(p->store, &q, pool_touch_on_put, c);
}

/* The record of an identity, with its heartbeat refreshed. */
void
pool_touch(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
	pool_lookup(p, identity, 1, pool_touch_on_lookup, c);
}

/* A list of names came back from the store. */
static void
pool_names_on_reply(const struct store_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool_reply pr;

	memset(&pr, 0, sizeof pr);
	if (r->err != STORE_OK && r->err != STORE_ENOENT) {
		pr.err = POOL_EUNAVAIL;
		pr.cause = r->cause;
	}
	pr.names = r->names;
	pr.nnames = r->nnames;
	c->cb(&pr, c->arg);
	free(c);
}

/* The names bound to a session. */
void
pool_session_mapping(struct pool *p, const char *session, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);
	struct store_req q = {.op = STORE_SESSION_GET, .session = session};

	c->cb = cb;
	c->arg = arg;
	store_run(p->store, &q, pool_names_on_reply, c);
}

/* Every session key. */
void
pool_session_keys(struct pool *p, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);
	struct store_req q = {.op = STORE_SESSION_KEYS};

	c->cb = cb;
	c->arg = arg;
	store_run(p->store, &q, pool_names_on_reply, c);
}

/* ---- Engine start / stop / status -------------------------------------- */

enum { POOL_CALL_START, POOL_CALL_STOP, POOL_CALL_STATUS };

/* Answers an engine call and frees it. */
static void
pool_call_finish(struct pool_call_ctx *c, struct pool_reply *pr)
{
	c->pool->engine_calls--;
	c->cb(pr, c->arg);
	sbx_free(c->rec);
	if (c->pool->stopping)
		pool_shutdown_check(c->pool);
	free(c);
}

/* A started sandbox's runtime answered healthz (or never did). */
static void
pool_call_on_health(int ok, const char *error, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool_reply pr;

	c->wait = NULL;
	TAILQ_REMOVE(&c->pool->starting, c, entry);
	if (!ok)
		log_info("pool: %s: started, but its runtime is not healthy: "
			 "%s",
		    c->rec->container_name, error != NULL ? error : "-");
	memset(&pr, 0, sizeof pr);
	pr.flag = ok;
	pool_call_finish(c, &pr);
}

/* Shutdown: starts still waiting for their runtime answer false. */
static void
pool_call_stop_waits(struct pool *p)
{
	struct pool_call_ctx *c;

	while ((c = TAILQ_FIRST(&p->starting)) != NULL) {
		rt_wait_cancel(c->wait);
		pool_call_on_health(0, "server is shutting down", c);
	}
}

/* pool_free: starts still waiting end without an answer. */
static void
pool_call_drop_waits(struct pool *p)
{
	struct pool_call_ctx *c;

	while ((c = TAILQ_FIRST(&p->starting)) != NULL) {
		TAILQ_REMOVE(&p->starting, c, entry);
		rt_wait_cancel(c->wait);
		sbx_free(c->rec);
		free(c);
	}
}

/* 1 if the sandbox's runtime is sandpool-agent, which start restarts. */
static int
pool_call_agent_served(struct pool *p, const struct sbx *rec)
{
	const struct sbtype *t;

	if (rec->sandbox_type == NULL ||
	    (t = sbtypes_find(p->types, rec->sandbox_type)) == NULL)
		return 0;
	return t->inject_agent;
}

/* The engine reported the container's state: answer. */
static void
pool_call_on_inspect(const struct drv_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool *p = c->pool;
	struct pool_reply pr;
	const char *st = NULL;

	memset(&pr, 0, sizeof pr);
	if (r->err == DRV_OK && r->nctrs > 0)
		st = r->ctrs[0].state;
	switch (c->kind) {
	case POOL_CALL_START:
		pr.flag = st != NULL && strcmp(st, "running") == 0;
		if (pr.flag && !p->stopping && c->rec->container_id != NULL &&
		    pool_call_agent_served(p, c->rec)) {
			/*
			 * The agent makes its socket only after the start:
			 * answer once the runtime is healthy again.
			 */
			TAILQ_INSERT_TAIL(&p->starting, c, entry);
			c->wait = rt_wait_healthy(p->base, p->hc, c->rec,
			    (long)p->warmup_timeout * 1000, pool_call_on_health,
			    c);
			return;
		}
		break;
	case POOL_CALL_STOP:
		pr.flag = st != NULL && strcmp(st, "exited") == 0;
		break;
	default:
		pr.status = st;
		break;
	}
	pool_call_finish(c, &pr);
}

static void pool_call_on_marked(const struct store_reply *, void *);

/* Start or stop answered: read the state back. */
static void
pool_call_on_action(const struct drv_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;

	struct store_req q = {.op = STORE_PUT};

	if (r->err != DRV_OK)
		log_info("pool: %s: %s: %s", c->rec->container_name,
		    c->kind == POOL_CALL_START ? "start" : "stop",
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	if (c->kind == POOL_CALL_START && r->err == DRV_OK && c->rec->stopped) {
		/* Running again: a death is a death again. */
		c->rec->stopped = 0;
		q.rec = c->rec;
		q.if_state = 1;
		q.expect = c->rec->state;
		store_run(c->pool->store, &q, pool_call_on_marked, c);
		return;
	}
	drv_inspect(
	    c->pool->drv, c->rec->container_id, pool_call_on_inspect, c);
}

/* The record says whether the container is stopped on purpose. */
static void
pool_call_on_marked(const struct store_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool *p = c->pool;

	(void)r;
	if (c->kind == POOL_CALL_STOP)
		drv_stop(
		    p->drv, c->rec->container_id, 1, pool_call_on_action, c);
	else
		drv_inspect(
		    p->drv, c->rec->container_id, pool_call_on_inspect, c);
}

/* The record is known: act on its container. */
static void
pool_call_on_lookup(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_call_ctx *c = arg;

	(void)cause;
	if (err != POOL_OK || rec->container_id == NULL) {
		struct drv_reply dr = {.err = DRV_ENOTFOUND};

		if (c->kind == POOL_CALL_STATUS && err == POOL_ENOTFOUND &&
		    c->rec != NULL) {
			/* Not ours by name: ask the engine directly (spec). */
			drv_inspect(p->drv, c->rec->container_name,
			    pool_call_on_inspect, c);
			return;
		}
		pool_call_on_inspect(&dr, c);
		return;
	}
	sbx_free(c->rec);
	c->rec = sbx_dup(rec);
	switch (c->kind) {
	case POOL_CALL_START:
		drv_start(p->drv, rec->container_id, pool_call_on_action, c);
		break;
	case POOL_CALL_STOP: {
		/* Say it first, so that its death is not taken for a crash. */
		struct store_req q = {.op = STORE_PUT};

		c->rec->stopped = 1;
		q.rec = c->rec;
		q.if_state = 1;
		q.expect = c->rec->state;
		store_run(p->store, &q, pool_call_on_marked, c);
		break;
	}
	default:
		drv_inspect(p->drv, rec->container_id, pool_call_on_inspect, c);
		break;
	}
}

/* Starts one engine call on a sandbox. */
static void
pool_call(struct pool *p, const char *identity, int kind, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->kind = kind;
	c->cb = cb;
	c->arg = arg;
	/* Remember the identity for a direct engine lookup. */
	c->rec = sbx_new();
	c->rec->container_name = xstrdup(identity);
	p->engine_calls++;
	pool_lookup(p, identity, 1, pool_call_on_lookup, c);
}

/* Engine start of a sandbox. */
void
pool_start_sandbox(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	pool_call(p, identity, POOL_CALL_START, cb, arg);
}

/* Engine stop of a sandbox. */
void
pool_stop_sandbox(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	pool_call(p, identity, POOL_CALL_STOP, cb, arg);
}

/* Engine state of a sandbox. */
void
pool_status(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	pool_call(p, identity, POOL_CALL_STATUS, cb, arg);
}
