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
	int warming;		/* fills in flight */
	int failures;		/* consecutive failed fills */
	time_t retry_at;	/* no fill before this after failures */
	TAILQ_ENTRY(pool_type) entry;
};

enum pool_op_state {
	OP_COUNT,	/* checking MAX_SANDBOX_INSTANCES */
	OP_PORT,	/* leasing a host port */
	OP_CREATE,	/* engine create */
	OP_START,	/* engine start */
	OP_HEALTH,	/* waiting for the runtime */
	OP_STORE,	/* writing the record */
	OP_SESSION,	/* binding the session */
	OP_PUSH,	/* adding to the idle list */
	OP_UNDO,	/* removing the container after a failure */
	OP_UNDO_PORT	/* returning the port after a failure */
};

/* One create in flight. */
struct pool_op {
	struct pool *pool;
	enum pool_op_state state;
	const struct sbtype *type;
	struct pool_type *pt;	/* set for pool fills */
	struct sbx *rec;	/* the record being built */
	char **env;		/* request environment overlay */
	int retries;
	enum pool_err err;
	char *cause;
	struct rt_wait *wait;
	pool_cb cb;		/* NULL for pool fills */
	void *arg;
	TAILQ_ENTRY(pool_op) entry;
};
TAILQ_HEAD(pool_ops, pool_op);

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

	TAILQ_HEAD(, pool_type) pools;
	struct pool_ops ops;	/* creates in flight */
	int engine_calls;	/* other engine calls in flight */
	struct event *refill_ev;	/* deferred planner run */
	struct event *tick;	/* periodic planner run */
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

/* Copies a NULL-terminated string vector. */
static char **
pool_strv_dup(const char *const *v)
{
	size_t n = 0, i;
	char **d;

	while (v != NULL && v[n] != NULL)
		n++;
	d = xcalloc(n + 1, sizeof *d);
	for (i = 0; i < n; i++)
		d[i] = xstrdup(v[i]);
	return d;
}

/* Frees a NULL-terminated string vector. */
static void
pool_strv_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* nftw visitor removing everything below a directory. */
static int
pool_rm_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
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

	if (root == NULL)
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

	TAILQ_FOREACH(pt, &p->pools, entry)
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
	p->publish_host = xstrdup(pp->publish_host != NULL ?
	    pp->publish_host : "127.0.0.1");
	p->ro_mounts = pool_strv_dup(pp->readonly_mounts);
	p->types = pp->types;
	p->default_type = xstrdup(pp->pool_types != NULL &&
	    pp->pool_types[0] != NULL ? pp->pool_types[0] : "base");
	p->pool_size = pp->pool_size;
	p->refill_concurrency = pp->refill_concurrency > 0 ?
	    pp->refill_concurrency : 1;
	p->max_instances = pp->max_instances;
	p->warmup_timeout = pp->warmup_timeout > 0 ? pp->warmup_timeout : 60;
	p->keep_workspace = pp->keep_workspace;
	p->watcher_interval = pp->watcher_interval;
	TAILQ_INIT(&p->pools);
	TAILQ_INIT(&p->ops);
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
	while ((op = TAILQ_FIRST(&p->ops)) != NULL) {
		TAILQ_REMOVE(&p->ops, op, entry);
		rt_wait_cancel(op->wait);
		sbx_free(op->rec);
		pool_strv_free(op->env);
		free(op->cause);
		free(op);
	}
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
	pool_strv_free(p->ro_mounts);
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
	pool_strv_free(d->names);
	free(d);
}

/* Queues a reply for the next loop turn (copies everything). */
static void
pool_reply_later(struct pool *p, pool_cb cb, void *arg,
    const struct pool_reply *r)
{
	struct pool_deferred *d = xcalloc(1, sizeof *d);
	struct timeval tv = { 0, 0 };
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
	if (event_base_once(p->base, -1, EV_TIMEOUT, pool_on_deferred, d,
	    &tv) != 0)
		fatalx("pool: event_base_once failed");
}

/* Queues an error reply. */
static void
pool_error_later(struct pool *p, pool_cb cb, void *arg, enum pool_err err,
    const char *cause)
{
	struct pool_reply r = { .err = err, .cause = cause };

	pool_reply_later(p, cb, arg, &r);
}

/* ---- Identity lookup, following redirects ------------------------------ */

typedef void (*pool_lookup_cb)(struct pool *, const struct sbx *,
    enum pool_err, const char *cause, void *arg);

struct pool_lookup {
	struct pool *pool;
	char *identity;		/* as the client gave it */
	char *current;		/* name being looked up */
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
		l->cb(l->pool, NULL, r->err == STORE_ENOENT ? POOL_ENOTFOUND :
		    POOL_EUNAVAIL, cause, l->arg);
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
	struct store_req q = { .op = STORE_GET, .name = l->current };

	store_run(l->pool->store, &q, pool_lookup_on_get, l);
}

/* Resolves an identity to its record; cb from the loop. */
static void
pool_lookup(struct pool *p, const char *identity, int follow,
    pool_lookup_cb cb, void *arg)
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
	pool_strv_free(op->env);
	free(op->cause);
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
		} else if (op->err != POOL_ESHUTDOWN) {
			int wait = 1 << (op->pt->failures < 5 ?
			    op->pt->failures : 5);

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
		    op->rec->container_name, r->msg != NULL ? r->msg :
		    drv_strerror(r->err));
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
	op->rec->port = 0;
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
		if (err != POOL_ESHUTDOWN)
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
pool_op_engine_error(struct pool_op *op, const char *what,
    const struct drv_reply *r)
{
	const char *hint;
	char *cause;

	if (r->err == DRV_ENOIMAGE) {
		hint = pool_builder_hint(op->type);
		xasprintf(&cause, "image '%s' for type '%s' is missing; build "
		    "it with: %s", op->rec->version, op->type->name, hint);
	} else
		xasprintf(&cause, "%s: %s%s%s", what, drv_strerror(r->err),
		    r->msg != NULL ? ": " : "", r->msg != NULL ? r->msg : "");
	pool_op_fail(op, POOL_EENGINE, cause);
	free(cause);
}

/* The instance limit check answered. */
static void
pool_op_on_count(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;
	struct pool *p = op->pool;
	long inflight = 0;
	struct pool_op *o;
	char *cause;

	if (r->err != STORE_OK) {
		pool_op_fail(op, POOL_EUNAVAIL, r->cause);
		return;
	}
	TAILQ_FOREACH(o, &p->ops, entry)
		if (o != op && o->state > OP_COUNT && o->state < OP_UNDO)
			inflight++;
	if (r->value + inflight >= p->max_instances) {
		xasprintf(&cause, "MAX_SANDBOX_INSTANCES (%d) reached",
		    p->max_instances);
		pool_op_fail(op, POOL_EFULL, cause);
		free(cause);
		return;
	}
	op->state = OP_PORT;
	pool_op_step(op);
}

/* The port lease answered. */
static void
pool_op_on_port(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;
	char *cause;

	if (r->err != STORE_OK) {
		xasprintf(&cause, "Not enough free ports available in the "
		    "specified range (%s)", r->cause);
		pool_op_fail(op, r->err == STORE_EFULL ? POOL_EFULL :
		    POOL_EUNAVAIL, cause);
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
	struct store_req q = { .op = STORE_PORT_FREE, .port = op->rec->port,
		.name = op->rec->container_name };

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
		xasprintf(&cause, "runtime did not become healthy within "
		    "%d s: %s", op->pool->warmup_timeout, error);
		pool_op_fail(op, POOL_ERUNTIME, cause);
		free(cause);
		return;
	}
	op->state = OP_STORE;
	pool_op_step(op);
}

/* A store write of the create finished. */
static void
pool_op_on_store(const struct store_reply *r, void *arg)
{
	struct pool_op *op = arg;

	if (r->err != STORE_OK) {
		pool_op_fail(op, POOL_EUNAVAIL, r->cause);
		return;
	}
	switch (op->state) {
	case OP_STORE:
		if (op->pt != NULL)
			op->state = OP_PUSH;
		else if (op->rec->session_ctx_id != NULL)
			op->state = OP_SESSION;
		else {
			pool_op_done(op);
			return;
		}
		pool_op_step(op);
		return;
	default:
		pool_op_done(op);
		return;
	}
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
		xasprintf(&env[ne++], "SANDPOOL_AGENT_PORT=%d",
		    t->runtime_port);
		xasprintf(&env[ne++], "SANDPOOL_AGENT_SOCKET=%s/%s",
		    POOL_AGENT_DIR, POOL_AGENT_SOCK);
	}
	for (i = 0; t->env != NULL && t->env[i] != NULL; i++)
		env[ne++] = xstrdup(t->env[i]);
	for (i = 0; op->env != NULL && op->env[i] != NULL; i++)
		env[ne++] = xstrdup(op->env[i]);

	binds = xcalloc(8 + 2 * 16, sizeof *binds);
	if (t->inject_agent) {
		xasprintf(&binds[nb++], "%s:%s:ro", p->agent_path,
		    POOL_AGENT_PATH);
		xasprintf(&binds[nb++], "%s:%s:rw", s->run_dir,
		    POOL_AGENT_DIR);
	}
	if (s->mount_dir != NULL)
		xasprintf(&binds[nb++], "%s:/workspace:rw", s->mount_dir);
	for (j = 0; p->ro_mounts[j] != NULL && p->ro_mounts[j + 1] != NULL &&
	    nb < 8 + 2 * 16 - 1; j += 2) {
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
	pool_strv_free(binds);
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
		xasprintf(cause, "mkdir %s: %s", s->mount_dir,
		    strerror(errno));
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

	if (p->stopping && op->err == POOL_OK && op->state < OP_STORE) {
		pool_op_fail(op, POOL_ESHUTDOWN, "server is shutting down");
		return;
	}
	memset(&q, 0, sizeof q);
	switch (op->state) {
	case OP_COUNT:
		if (p->max_instances <= 0) {
			op->state = OP_PORT;
			pool_op_step(op);
			return;
		}
		q.op = STORE_COUNT_ACTIVE;
		store_run(p->store, &q, pool_op_on_count, op);
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
	case OP_STORE:
		op->rec->updated_at = sbx_now();
		if (op->rec->session_ctx_id != NULL) {
			op->rec->state = SBX_RUNNING;
			op->rec->last_active_at = op->rec->updated_at;
		} else
			op->rec->state = SBX_WARM;
		q.op = STORE_PUT;
		q.rec = op->rec;
		store_run(p->store, &q, pool_op_on_store, op);
		return;
	case OP_SESSION:
		q.op = STORE_SESSION_ADD;
		q.session = op->rec->session_ctx_id;
		q.name = op->rec->container_name;
		store_run(p->store, &q, pool_op_on_store, op);
		return;
	case OP_PUSH:
		q.op = STORE_POOL_PUSH;
		q.type = op->type->name;
		q.name = op->rec->container_name;
		store_run(p->store, &q, pool_op_on_store, op);
		return;
	case OP_UNDO:
		if (op->rec->container_id != NULL) {
			drv_remove(p->drv, op->rec->container_id,
			    pool_op_on_undo, op);
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
		pool_remove_dirs(p, op->type->inject_agent ? op->rec->run_dir :
		    NULL, op->rec->mount_dir);
		pool_op_done(op);
		return;
	}
}

/*
 * Starts creating a sandbox of type t whose workspace is mount_dir (a
 * directory the caller checked), or <DEFAULT_MOUNT_DIR>/<id> if NULL.
 */
static void
pool_op_start_in(struct pool *p, const struct sbtype *t, struct pool_type *pt,
    const char *meta, const char *const *env, const char *mount_dir, pool_cb cb,
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
	op->env = env != NULL ? pool_strv_dup(env) : NULL;
	op->state = OP_COUNT;
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
	s->mount_dir = mount_dir != NULL ? xstrdup(mount_dir)
					 : pool_dir(p->mount_root, id);
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

/* Starts creating a sandbox of type t in its own workspace. */
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

	TAILQ_FOREACH(pt, &p->pools, entry)
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
	need = p->pool_size - r->value - pt->warming;
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
	TAILQ_FOREACH(pt, &p->pools, entry) {
		if (pt->retry_at > now || !pt->t->supported)
			continue;
		if (pool_fills(p) >= p->refill_concurrency)
			break;
		c = xcalloc(1, sizeof *c);
		c->pool = p;
		c->pt = pt;
		store_run(p->store, &(struct store_req){ .op = STORE_POOL_COUNT,
		    .type = pt->t->name }, pool_refill_on_idle, c);
	}
}

/* Schedules a planner run on the next loop turn. */
static void
pool_refill_soon(struct pool *p)
{
	if (p->refill_ev != NULL && !p->stopping && p->watcher_interval > 0)
		event_active(p->refill_ev, EV_TIMEOUT, 0);
}

/* ---- Start-up: remove this instance's leftovers ------------------------ */

struct pool_sweep {
	struct pool *pool;
	int pending;
	int removed;
	pool_done_cb cb;
	void *arg;
};

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

/* One leftover container is gone. */
static void
pool_sweep_on_remove(const struct drv_reply *r, void *arg)
{
	struct pool_sweep *sw = arg;

	sw->pool->engine_calls--;
	if (r->err == DRV_OK)
		sw->removed++;
	else if (r->err != DRV_ENOTFOUND)
		log_warnx("pool: sweep: remove: %s", r->msg != NULL ? r->msg :
		    drv_strerror(r->err));
	sw->pending--;
	pool_sweep_check(sw);
}

/* The engine listed this instance's containers: remove them all. */
static void
pool_sweep_on_list(const struct drv_reply *r, void *arg)
{
	struct pool_sweep *sw = arg;
	struct pool *p = sw->pool;
	const char *sid;
	char *run, *ws;
	size_t i;

	p->engine_calls--;
	if (r->err != DRV_OK) {
		char *cause;

		xasprintf(&cause, "cannot list containers: %s", r->msg != NULL ?
		    r->msg : drv_strerror(r->err));
		sw->cb(-1, cause, sw->arg);
		free(cause);
		free(sw);
		return;
	}
	for (i = 0; i < r->nctrs; i++) {
		sid = drv_ctr_label(&r->ctrs[i], "sandpool.session_id");
		if (sid != NULL && strlen(sid) == SBX_ID_LEN &&
		    strspn(sid, "0123456789abcdefghijklmnopqrstuvwxyz") ==
		    SBX_ID_LEN) {
			run = pool_dir(p->run_dir, sid);
			ws = pool_dir(p->mount_root, sid);
			pool_remove_dirs(p, run, ws);
			free(run);
			free(ws);
		}
		sw->pending++;
		p->engine_calls++;
		drv_remove(p->drv, r->ctrs[i].id, pool_sweep_on_remove, sw);
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
		p->refill_ev = event_new(p->base, -1, 0, pool_on_refill, p);
		if (p->watcher_interval > 0) {
			tv.tv_sec = p->watcher_interval;
			tv.tv_usec = 0;
			p->tick = event_new(p->base, -1, EV_PERSIST,
			    pool_on_refill, p);
			event_add(p->tick, &tv);
		}
		pool_refill_soon(p);
	}
	c->cb(err, cause, c->arg);
	free(c);
}

/* Removes leftovers, then starts the pools. */
void
pool_start(struct pool *p, pool_done_cb cb, void *arg)
{
	struct pool_start_ctx *c = xcalloc(1, sizeof *c);

	c->pool = p;
	c->cb = cb;
	c->arg = arg;
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
	if (!TAILQ_EMPTY(&p->ops) || p->engine_calls > 0 || p->sweeping ||
	    p->shutdown_cb == NULL)
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
	struct timeval tv = { 0, 0 };
	struct pool_op *op, *next;

	p->stopping = 1;
	p->cleanup = cleanup;
	p->shutdown_cb = cb;
	p->shutdown_arg = arg;
	if (p->tick != NULL)
		event_del(p->tick);
	/* Health waits end now; other steps end at their next boundary. */
	for (op = TAILQ_FIRST(&p->ops); op != NULL; op = next) {
		next = TAILQ_NEXT(op, entry);
		if (op->state == OP_HEALTH && op->wait != NULL)
			pool_op_fail(op, POOL_ESHUTDOWN,
			    "server is shutting down");
	}
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
		xasprintf(cause, "sandbox type '%s' cannot be served by "
		    "sandpool (no image for it)", name);
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
		pool_error_later(p, cb, arg, POOL_ESHUTDOWN,
		    "server is shutting down");
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
pool_create_from_pool(struct pool *p, const char *type, const char *meta,
    pool_cb cb, void *arg)
{
	struct pool_claim_ctx *c;
	const struct sbtype *t;
	struct store_req q;
	struct sbx *m;
	char *cause;

	if (p->stopping) {
		pool_error_later(p, cb, arg, POOL_ESHUTDOWN,
		    "server is shutting down");
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
	int steps;		/* store/engine replies still awaited */
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
	struct store_req q = { .op = STORE_PORT_FREE };

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
pool_release_on_lookup(struct pool *p, const struct sbx *rec,
    enum pool_err err, const char *cause, void *arg)
{
	struct pool_release_ctx *c = arg;
	struct store_req q;
	struct sbx *s;

	if (err == POOL_ENOTFOUND || (err == POOL_OK &&
	    (rec->state == SBX_RELEASED || rec->state == SBX_RECYCLED ||
	    rec->state == SBX_REPLACED))) {
		struct pool_reply r = { .flag = 1 };

		c->cb(&r, c->arg);
		p->engine_calls--;
		free(c);
		return;
	}
	if (err != POOL_OK) {
		struct pool_reply r = { .err = err, .cause = cause };

		c->cb(&r, c->arg);
		p->engine_calls--;
		free(c);
		return;
	}
	c->rec = s = sbx_dup(rec);
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
		struct drv_reply dr = { .err = DRV_ENOTFOUND };

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

/* ---- Lookups ----------------------------------------------------------- */

struct pool_call_ctx {
	struct pool *pool;
	struct sbx *rec;
	int kind;
	pool_cb cb;
	void *arg;
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

/* The record to touch is known: refresh its heartbeat. */
static void
pool_touch_on_lookup(struct pool *p, const struct sbx *rec,
    enum pool_err err, const char *cause, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct store_req q = { .op = STORE_PUT };

	if (err != POOL_OK || rec->state != SBX_RUNNING) {
		pool_info_on_lookup(p, rec, err, cause, arg);
		return;
	}
	c->rec = sbx_dup(rec);
	c->rec->last_active_at = c->rec->updated_at = sbx_now();
	q.rec = c->rec;
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
pool_session_mapping(struct pool *p, const char *session, pool_cb cb,
    void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);
	struct store_req q = { .op = STORE_SESSION_GET, .session = session };

	c->cb = cb;
	c->arg = arg;
	store_run(p->store, &q, pool_names_on_reply, c);
}

/* Every session key. */
void
pool_session_keys(struct pool *p, pool_cb cb, void *arg)
{
	struct pool_call_ctx *c = xcalloc(1, sizeof *c);
	struct store_req q = { .op = STORE_SESSION_KEYS };

	c->cb = cb;
	c->arg = arg;
	store_run(p->store, &q, pool_names_on_reply, c);
}

/* ---- Engine start / stop / status -------------------------------------- */

enum { POOL_CALL_START, POOL_CALL_STOP, POOL_CALL_STATUS };

/* The engine reported the container's state: answer. */
static void
pool_call_on_inspect(const struct drv_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;
	struct pool_reply pr;
	const char *st = NULL;

	c->pool->engine_calls--;
	memset(&pr, 0, sizeof pr);
	if (r->err == DRV_OK && r->nctrs > 0)
		st = r->ctrs[0].state;
	switch (c->kind) {
	case POOL_CALL_START:
		pr.flag = st != NULL && strcmp(st, "running") == 0;
		break;
	case POOL_CALL_STOP:
		pr.flag = st != NULL && strcmp(st, "exited") == 0;
		break;
	default:
		pr.status = st;
		break;
	}
	c->cb(&pr, c->arg);
	sbx_free(c->rec);
	if (c->pool->stopping)
		pool_shutdown_check(c->pool);
	free(c);
}

/* Start or stop answered: read the state back. */
static void
pool_call_on_action(const struct drv_reply *r, void *arg)
{
	struct pool_call_ctx *c = arg;

	if (r->err != DRV_OK)
		log_info("pool: %s: %s: %s", c->rec->container_name,
		    c->kind == POOL_CALL_START ? "start" : "stop",
		    r->msg != NULL ? r->msg : drv_strerror(r->err));
	drv_inspect(c->pool->drv, c->rec->container_id, pool_call_on_inspect,
	    c);
}

/* The record is known: act on its container. */
static void
pool_call_on_lookup(struct pool *p, const struct sbx *rec, enum pool_err err,
    const char *cause, void *arg)
{
	struct pool_call_ctx *c = arg;

	(void)cause;
	if (err != POOL_OK || rec->container_id == NULL) {
		struct drv_reply dr = { .err = DRV_ENOTFOUND };

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
	case POOL_CALL_STOP:
		drv_stop(p->drv, rec->container_id, 1, pool_call_on_action, c);
		break;
	default:
		drv_inspect(p->drv, rec->container_id, pool_call_on_inspect, c);
		break;
	}
}

/* Starts one engine call on a sandbox. */
static void
pool_call(struct pool *p, const char *identity, int kind, pool_cb cb,
    void *arg)
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
pool_start_sandbox(struct pool *p, const char *identity, pool_cb cb,
    void *arg)
{
	pool_call(p, identity, POOL_CALL_START, cb, arg);
}

/* Engine stop of a sandbox. */
void
pool_stop_sandbox(struct pool *p, const char *identity, pool_cb cb,
    void *arg)
{
	pool_call(p, identity, POOL_CALL_STOP, cb, arg);
}

/* Engine state of a sandbox. */
void
pool_status(struct pool *p, const char *identity, pool_cb cb, void *arg)
{
	pool_call(p, identity, POOL_CALL_STATUS, cb, arg);
}
