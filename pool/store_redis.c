/*
 * store_redis: the state store in Redis, shared by every worker and every
 * instance that points at the same server. hiredis async on the libevent
 * loop; each store operation is one command or one Lua script (EVALSHA,
 * sent again as EVAL after NOSCRIPT), with our own deadline timer per
 * command. Owns the connection, its reconnect back-off, the scripts' SHA
 * digests, and the owner lease of this worker: every connection is a new
 * owner epoch (<owner>.<n>), renewed every third of the lease TTL, so what
 * a dead worker or a lost connection held is reaped by the others within
 * one TTL. While Redis is away every operation fails at once with
 * STORE_EUNAVAIL.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "json.h"
#include "log.h"
#include "port.h"
#include "sandbox.h"
#include "store.h"
#include "store_redis_lua.h"
#include "xmalloc.h"

/* sandpool's own keys start with this (see runtime-sandbox-server-redis(7)). */
#define SR_PREFIX "sandpool:"
#define SR_BACKOFF_MIN_MS 100
#define SR_BACKOFF_MAX_MS 5000
/* Ports tried when the bind probe finds a leased port in use. */
#define SR_PROBE_TRIES 16
/*
 * Watcher passes: index entries due, and members of the whole set swept,
 * per call (SSCAN's COUNT), so that a call holds Redis about a
 * millisecond at most, however many records and sessions there are.
 */
#define SR_SCAN_BATCH 64

enum sr_script {
	SR_PUT,
	SR_DEL,
	SR_POOL_PUSH,
	SR_CLAIM,
	SR_POOL_COUNT,
	SR_POOL_REMOVE,
	SR_SESSION_ADD,
	SR_SESSION_DEL,
	SR_PORT_LEASE,
	SR_PORT_FREE,
	SR_PORT_TAKE,
	SR_COUNT_ACTIVE,
	SR_BEGIN,
	SR_COMMIT,
	SR_ABORT,
	SR_REAP,
	SR_ORPHANS,
	SR_UNLOCK,
	SR_IDLE_SESSIONS,
	SR_GC,
	SR_NSCRIPTS
};

/* clang-format off */
static const char *const sr_lua[SR_NSCRIPTS] = {
	[SR_PUT] = SRL_PUT,			[SR_DEL] = SRL_DEL,
	[SR_POOL_PUSH] = SRL_POOL_PUSH,		[SR_CLAIM] = SRL_CLAIM,
	[SR_POOL_COUNT] = SRL_POOL_COUNT,	[SR_POOL_REMOVE] = SRL_POOL_REMOVE,
	[SR_SESSION_ADD] = SRL_SESSION_ADD,	[SR_SESSION_DEL] = SRL_SESSION_DEL,
	[SR_PORT_LEASE] = SRL_PORT_LEASE,	[SR_PORT_FREE] = SRL_PORT_FREE,
	[SR_PORT_TAKE] = SRL_PORT_TAKE,		[SR_COUNT_ACTIVE] = SRL_COUNT_ACTIVE,
	[SR_BEGIN] = SRL_BEGIN,			[SR_COMMIT] = SRL_COMMIT,
	[SR_ABORT] = SRL_ABORT,			[SR_REAP] = SRL_REAP,
	[SR_ORPHANS] = SRL_ORPHANS,		[SR_UNLOCK] = SRL_UNLOCK,
	[SR_IDLE_SESSIONS] = SRL_IDLE_SESSIONS,	[SR_GC] = SRL_GC,
};
/* clang-format on */

enum sr_conn { SR_DOWN, SR_CONNECTING, SR_READY };

struct sr;

/* One store operation; it may take several commands (claim, lease). */
struct sr_op {
	struct sr *r;
	struct store_req q; /* strings below are owned copies */
	char *name, *type, *session, *meta, *ip, *owner, *token;
	struct sbx *rec; /* in: COMMIT/PUT; out: GET/CLAIM */
	char **in_names;
	int tries;
	store_cb cb;
	void *arg;
	/* The answer. */
	enum store_err err;
	char *cause;
	char **names;
	size_t nnames;
	long value;
	char *owner_out;
};

/* One command in flight. */
struct sr_cmd {
	struct sr *r;
	struct sr_op *op; /* NULL: internal (connect, renew, free) */
	int script;	  /* enum sr_script, or -1 */
	int argc;
	char **argv;
	size_t *argvlen;
	int answered; /* failed or timed out: ignore the reply */
	int retried;  /* sent again as EVAL after NOSCRIPT */
	struct event *timer;
	void (*on_reply)(struct sr_cmd *, redisReply *);
	TAILQ_ENTRY(sr_cmd) entry;
};

struct sr {
	struct store *st;
	struct event_base *base;
	redisAsyncContext *ac;
	enum sr_conn conn;
	int setup_left; /* connect-time replies still awaited */
	int setup_failed;
	long backoff_ms;
	unsigned long epoch; /* connections made */
	char *owner;	     /* this connection's owner id */
	char *sha[SR_NSCRIPTS];
	struct event *retry; /* reconnect timer */
	struct event *renew; /* owner lease timer */
	int closing;
	int warned;	  /* "unavailable" logged for this outage */
	char *last_error; /* why the last connection failed */
	TAILQ_HEAD(, sr_cmd) cmds;
	char *idle_cursor, *gc_cursor; /* watcher sweeps: SSCAN cursors */

	/* Parameters. */
	char *host, *user, *password, *pool_key, *port_key, *instance;
	char *owner_base, *publish_host;
	int port, db, port_lo, port_hi;
	long lease_ttl_ms, timeout_ms;
};

static void sr_connect(struct sr *);
static void sr_op_finish(struct sr_op *);
static void sr_send_script(struct sr_op *, int, const char *const *, size_t,
    void (*)(struct sr_cmd *, redisReply *));

/* Frees an operation. */
static void
sr_op_free(struct sr_op *o)
{
	size_t i;

	free(o->name);
	free(o->type);
	free(o->session);
	free(o->meta);
	free(o->ip);
	free(o->owner);
	free(o->token);
	sbx_free(o->rec);
	for (i = 0; o->in_names != NULL && o->in_names[i] != NULL; i++)
		free(o->in_names[i]);
	free(o->in_names);
	for (i = 0; i < o->nnames; i++)
		free(o->names[i]);
	free(o->names);
	free(o->cause);
	free(o->owner_out);
	free(o);
}

/* Answers an operation (from the loop) and frees it. */
static void
sr_op_finish(struct sr_op *o)
{
	struct store_reply rep;

	memset(&rep, 0, sizeof rep);
	rep.err = o->err;
	rep.cause = o->cause != NULL
	    ? o->cause
	    : (o->err != STORE_OK ? store_strerror(o->err) : NULL);
	rep.rec = o->rec;
	rep.names = o->names;
	rep.nnames = o->nnames;
	rep.value = o->value;
	rep.owner = o->owner_out;
	if (o->cb != NULL && !o->r->closing)
		o->cb(&rep, o->arg);
	sr_op_free(o);
}

/* Fails an operation with err and a message. */
static void
sr_op_fail(struct sr_op *o, enum store_err err, const char *cause)
{
	o->err = err;
	free(o->cause);
	o->cause = cause != NULL ? xstrdup(cause) : NULL;
	sr_op_finish(o);
}

/* Zero-delay delivery of an operation that failed before any command. */
static void
sr_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sr_op_finish(arg);
}

/* The text for "Redis is away". */
static char *
sr_unavail(struct sr *r)
{
	char *s;

	xasprintf(&s, "state store unavailable: Redis at %s:%d: %s", r->host,
	    r->port, r->last_error != NULL ? r->last_error : "does not answer");
	return s;
}

/* Frees a command (its reply callback has run, or never will). */
static void
sr_cmd_free(struct sr_cmd *c)
{
	int i;

	if (c->timer != NULL)
		event_free(c->timer);
	for (i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	free(c->argvlen);
	free(c);
}

static void sr_schedule(struct sr *);

/*
 * Drops the connection at once (replies still due come back as NULL) and
 * schedules a reconnect.
 */
static void
sr_drop(struct sr *r, const char *why)
{
	redisAsyncContext *ac = r->ac;

	if (ac == NULL)
		return;
	if (!r->warned)
		log_warnx(
		    "redis: %s:%d: %s; reconnecting", r->host, r->port, why);
	r->warned = 1;
	if (r->last_error == NULL)
		r->last_error = xstrdup(why);
	r->ac = NULL;
	r->conn = SR_DOWN;
	redisAsyncFree(ac);
	sr_schedule(r);
}

/* A command's deadline passed: fail its operation, resync the link. */
static void
sr_on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sr_cmd *c = arg;
	struct sr_op *o = c->op;
	char *cause;

	(void)fd;
	(void)what;
	if (c->answered)
		return;
	c->answered = 1;
	c->op = NULL;
	if (o != NULL) {
		xasprintf(&cause,
		    "state store unavailable: Redis did not "
		    "answer within %ld ms",
		    c->r->timeout_ms);
		sr_op_fail(o, STORE_EUNAVAIL, cause);
		free(cause);
	}
	sr_drop(c->r, "a command timed out");
}

/* hiredis reply callback: one per command, NULL when the link dropped. */
static void
sr_on_reply(redisAsyncContext *ac, void *rp, void *priv)
{
	struct sr_cmd *c = priv;
	redisReply *reply = rp;
	struct sr *r = c->r;

	(void)ac;
	TAILQ_REMOVE(&r->cmds, c, entry);
	if (!c->answered && !r->closing && reply != NULL &&
	    reply->type == REDIS_REPLY_ERROR && c->script >= 0 && !c->retried &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && r->ac != NULL) {
		/* The script cache was flushed: send the body. */
		free(c->argv[0]);
		free(c->argv[1]);
		c->argv[0] = xstrdup("EVAL");
		c->argv[1] = xstrdup(sr_lua[c->script]);
		c->argvlen[0] = 4;
		c->argvlen[1] = strlen(c->argv[1]);
		c->retried = 1;
		TAILQ_INSERT_TAIL(&r->cmds, c, entry);
		if (redisAsyncCommandArgv(r->ac, sr_on_reply, c, c->argc,
			(const char **)c->argv, c->argvlen) == REDIS_OK)
			return;
		TAILQ_REMOVE(&r->cmds, c, entry);
	}
	if (!c->answered && !r->closing) {
		c->answered = 1;
		c->on_reply(c, reply);
	}
	sr_cmd_free(c);
}

/*
 * Sends a command. args[0..n) are the words; the command is owned by the
 * store until hiredis answers. With op set, a failure to send fails op.
 */
static void
sr_send(struct sr *r, struct sr_op *op, int script, const char *const *args,
    const size_t *lens, int n, void (*on_reply)(struct sr_cmd *, redisReply *))
{
	struct sr_cmd *c = xcalloc(1, sizeof *c);
	struct timeval tv;
	char *cause;
	int i;

	c->r = r;
	c->op = op;
	c->script = script;
	c->on_reply = on_reply;
	c->argc = n;
	c->argv = xcalloc((size_t)n, sizeof *c->argv);
	c->argvlen = xcalloc((size_t)n, sizeof *c->argvlen);
	for (i = 0; i < n; i++) {
		c->argvlen[i] = lens != NULL ? lens[i] : strlen(args[i]);
		c->argv[i] = xmalloc(c->argvlen[i] + 1);
		memcpy(c->argv[i], args[i], c->argvlen[i]);
		c->argv[i][c->argvlen[i]] = '\0';
	}
	if (r->ac == NULL || (op != NULL && r->conn != SR_READY) ||
	    redisAsyncCommandArgv(r->ac, sr_on_reply, c, n,
		(const char **)c->argv, c->argvlen) != REDIS_OK) {
		sr_cmd_free(c);
		if (op != NULL) {
			cause = sr_unavail(r);
			sr_op_fail(op, STORE_EUNAVAIL, cause);
			free(cause);
		}
		return;
	}
	TAILQ_INSERT_TAIL(&r->cmds, c, entry);
	c->timer = evtimer_new(r->base, sr_on_cmd_timeout, c);
	tv.tv_sec = r->timeout_ms / 1000;
	tv.tv_usec = (r->timeout_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
}

/* Sends a script with the prefixes and args as its ARGV. */
static void
sr_send_script(struct sr_op *o, int script, const char *const *args, size_t n,
    void (*on_reply)(struct sr_cmd *, redisReply *))
{
	struct sr *r = o->r;
	const char **v = xcalloc(n + 6, sizeof *v);
	size_t i;

	v[0] = "EVALSHA";
	v[1] = r->sha[script] != NULL ? r->sha[script] : "0";
	v[2] = "0";
	v[3] = SR_PREFIX;
	v[4] = r->pool_key;
	v[5] = r->port_key;
	for (i = 0; i < n; i++)
		v[6 + i] = args[i] != NULL ? args[i] : "";
	sr_send(r, o, script, v, NULL, (int)(n + 6), on_reply);
	free(v);
}

/* ---- Replies ----------------------------------------------------------- */

/* A reply that is an error or missing fails the operation; 1 if so. */
static int
sr_bad(struct sr_cmd *c, redisReply *rep)
{
	char *cause;

	if (rep == NULL) {
		cause = sr_unavail(c->r);
		sr_op_fail(c->op, STORE_EUNAVAIL, cause);
		free(cause);
		return 1;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		xasprintf(&cause, "state store error: %s", rep->str);
		log_warnx("redis: %s", rep->str);
		sr_op_fail(c->op, STORE_EUNAVAIL, cause);
		free(cause);
		return 1;
	}
	return 0;
}

/* A status/string reply as text ("" otherwise). */
static const char *
sr_text(const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
		return rep->str;
	return "";
}

/* "1" if the record counts towards MAX_SANDBOX_INSTANCES, else "0". */
static const char *
sr_active(const struct sbx *s)
{
	return s->state == SBX_WARM || s->state == SBX_RUNNING ? "1" : "0";
}

/*
 * A record's index entries (see store_redis_lua.h): its heartbeat when it
 * runs in a session, and when it may be collected when it is released,
 * replaced or in error; "" otherwise.
 */
static void
sr_index_args(
    const struct sbx *s, char *hb, size_t hblen, char *dead, size_t deadlen)
{
	double t = 0;

	*hb = *dead = '\0';
	if (s->state == SBX_RUNNING && s->session_ctx_id != NULL &&
	    s->last_active_at > 0)
		snprintf(hb, hblen, "%.6f", s->last_active_at);
	if (s->state == SBX_RELEASED)
		t = s->released_at > 0 ? s->released_at : s->updated_at;
	else if (s->state == SBX_REPLACED || s->state == SBX_ERROR)
		t = s->updated_at;
	if (t > 0)
		snprintf(dead, deadlen, "%.6f", t);
}

/* Replies with nothing to read: OK, or a script's status word. */
static void
sr_on_status(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	const char *t;

	if (sr_bad(c, rep))
		return;
	t = sr_text(rep);
	if (strcmp(t, "NOENT") == 0)
		o->err = STORE_ENOENT;
	else if (strcmp(t, "CONFLICT") == 0)
		o->err = STORE_ECONFLICT;
	else if (strcmp(t, "FENCED") == 0)
		o->err = STORE_EFENCED;
	else if (strcmp(t, "FULL") == 0) {
		o->err = STORE_ENOENT;
		o->cause = xstrdup("the pool is full");
	} else if (strcmp(t, "LIMIT") == 0)
		o->err = STORE_ELIMIT;
	else if (o->q.op == STORE_BEGIN)
		o->owner_out = xstrdup(o->owner);
	else if (o->q.op == STORE_LOCK && rep->type == REDIS_REPLY_NIL)
		o->err = STORE_ECONFLICT;
	sr_op_finish(o);
}

/* Integer replies. */
static void
sr_on_integer(struct sr_cmd *c, redisReply *rep)
{
	if (sr_bad(c, rep))
		return;
	c->op->value =
	    rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : 0;
	sr_op_finish(c->op);
}

/* Array-of-strings replies (and a JSON array string for sessions). */
static void
sr_on_names(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	size_t i;

	if (sr_bad(c, rep))
		return;
	if (rep->type == REDIS_REPLY_ARRAY) {
		o->names = xcalloc(rep->elements + 1, sizeof *o->names);
		for (i = 0; i < rep->elements; i++)
			if (rep->element[i]->type == REDIS_REPLY_STRING)
				o->names[o->nnames++] =
				    xstrdup(rep->element[i]->str);
	}
	sr_op_finish(o);
}

/* IDLE_SESSIONS, GC: { sweep cursor, names... }. */
static void
sr_on_scan(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	const redisReply *e;
	char **cursor;
	size_t i;

	if (sr_bad(c, rep))
		return;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		sr_op_fail(
		    o, STORE_EUNAVAIL, "state store error: bad scan reply");
		return;
	}
	cursor = o->q.op == STORE_GC ? &o->r->gc_cursor : &o->r->idle_cursor;
	xstrset(cursor, rep->element[0]->str);
	o->names = xcalloc(rep->elements, sizeof *o->names);
	for (i = 1; i < rep->elements; i++) {
		e = rep->element[i];
		if (e->type == REDIS_REPLY_STRING)
			o->names[o->nnames++] = xstrdup(e->str);
	}
	sr_op_finish(o);
}

/* SESSION_GET: the JSON array of names. */
static void
sr_on_session(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	char *cause = NULL;
	yajl_val v;
	size_t i;

	if (sr_bad(c, rep))
		return;
	if (rep->type == REDIS_REPLY_STRING &&
	    (v = json_parse(rep->str, rep->len, &cause)) != NULL) {
		if (YAJL_IS_ARRAY(v)) {
			o->names =
			    xcalloc(v->u.array.len + 1, sizeof *o->names);
			for (i = 0; i < v->u.array.len; i++)
				if (YAJL_IS_STRING(v->u.array.values[i]))
					o->names[o->nnames++] = xstrdup(
					    v->u.array.values[i]->u.string);
		}
		yajl_tree_free(v);
	}
	free(cause);
	sr_op_finish(o);
}

/* GET: the record. */
static void
sr_on_get(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	char *cause = NULL;

	if (sr_bad(c, rep))
		return;
	if (rep->type != REDIS_REPLY_STRING)
		o->err = STORE_ENOENT;
	else if ((o->rec = sbx_from_json(rep->str, rep->len, &cause)) == NULL) {
		o->err = STORE_ENOENT;
		log_warnx("redis: record %s: %s", o->name, cause);
		free(cause);
	}
	sr_op_finish(o);
}

/* CLAIM step 2: the bound record was committed (or the claim reaped). */
static void
sr_on_claim_commit(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;

	if (sr_bad(c, rep))
		return;
	if (strcmp(sr_text(rep), "OK") != 0) {
		/* Reaped meanwhile: it went back to the pool; miss. */
		sbx_free(o->rec);
		o->rec = NULL;
		o->err = STORE_ENOENT;
	}
	sr_op_finish(o);
}

/*
 * CLAIM: a warm record was popped and bound by the script, or (a record
 * in another form) is this owner's pending claim: bind it, then commit.
 */
static void
sr_on_claim(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	const char *args[7];
	char *cause = NULL, *json, hb[32], dead[32];
	const redisReply *rj;
	struct sbx *s;
	int bound;

	if (sr_bad(c, rep))
		return;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_STRING) {
		o->err = STORE_ENOENT;
		sr_op_finish(o);
		return;
	}
	bound = rep->element[0]->integer == 1;
	rj = rep->element[1];
	if ((s = sbx_from_json(rj->str, rj->len, &cause)) == NULL) {
		log_warnx("redis: claimed record: %s", cause);
		free(cause);
		o->err = STORE_ENOENT;
		sr_op_finish(o);
		return;
	}
	o->rec = s;
	if (bound) {
		/* Before the answer: a store loss must not make it poolable. */
		sbx_mark_claimed(s);
		sr_op_finish(o);
		return;
	}
	if (o->meta != NULL)
		xstrset(&s->meta, o->meta); /* checked by the pool */
	if (o->session != NULL)
		xstrset(&s->session_ctx_id, o->session);
	if (s->session_ctx_id != NULL) {
		s->state = SBX_RUNNING;
		s->last_active_at = o->q.now;
	}
	s->updated_at = o->q.now;
	/* Before the commit: a store loss must not make it poolable. */
	sbx_mark_claimed(s);
	json = sbx_to_json(s, 1, NULL);
	sr_index_args(s, hb, sizeof hb, dead, sizeof dead);
	args[0] = s->container_name;
	args[1] = o->owner;
	args[2] = json;
	args[3] = "1";
	args[4] = s->session_ctx_id != NULL ? s->session_ctx_id : "";
	args[5] = hb;
	args[6] = dead;
	sr_send_script(o, SR_COMMIT, args, 7, sr_on_claim_commit);
	free(json);
}

static void sr_lease_next(struct sr_op *);

/* The port that failed the bind probe was returned: lease another. */
static void
sr_on_lease_freed(struct sr_cmd *c, redisReply *rep)
{
	if (sr_bad(c, rep))
		return;
	sr_lease_next(c->op);
}

/* PORT_LEASE: a port came back; probe it, else try another. */
static void
sr_on_lease(struct sr_cmd *c, redisReply *rep)
{
	struct sr_op *o = c->op;
	const char *args[2];
	char buf[16];

	if (sr_bad(c, rep))
		return;
	o->value = rep->type == REDIS_REPLY_INTEGER ? (long)rep->integer : -1;
	if (o->value < 0) {
		o->err = STORE_EFULL;
		sr_op_finish(o);
		return;
	}
	if (o->ip == NULL || port_probe(o->ip, (int)o->value) ||
	    ++o->tries >= SR_PROBE_TRIES) {
		sr_op_finish(o);
		return;
	}
	/* Some other process holds it: return it; next-fit moves on. */
	snprintf(buf, sizeof buf, "%ld", o->value);
	args[0] = buf;
	args[1] = o->name;
	sr_send_script(o, SR_PORT_FREE, args, 2, sr_on_lease_freed);
}

/* Asks for the next port lease. */
static void
sr_lease_next(struct sr_op *o)
{
	char lo[16], hi[16];
	const char *args[3] = {lo, hi, o->name};

	snprintf(lo, sizeof lo, "%d", o->r->port_lo);
	snprintf(hi, sizeof hi, "%d", o->r->port_hi);
	sr_send_script(o, SR_PORT_LEASE, args, 3, sr_on_lease);
}

/* ---- Operations -------------------------------------------------------- */

/* The state name a PUT expects, or "". */
static const char *
sr_expect(const struct store_req *q)
{
	return q->if_state ? sbx_state_name((enum sbx_state)q->expect) : "";
}

/* Starts an operation's first command. */
static void
sr_op_start(struct sr_op *o)
{
	const struct store_req *q = &o->q;
	struct sr *r = o->r;
	char a[24], b[24], c[24], hb[32], dead[32], **argv;
	const char *args[8] = {NULL}, *cmd[6];
	struct sbx_claim_patch patch;
	const struct sbx *s = o->rec;
	char *json;
	size_t i;

	switch (q->op) {
	case STORE_PUT:
	case STORE_COMMIT:
		json = sbx_to_json(s, 1, NULL);
		sr_index_args(s, hb, sizeof hb, dead, sizeof dead);
		args[0] = s->container_name;
		args[1] = q->op == STORE_PUT ? json : o->owner;
		args[2] = q->op == STORE_PUT ? sr_active(s) : json;
		args[3] = q->op == STORE_PUT ? sr_expect(q) : sr_active(s);
		args[4] = s->session_ctx_id != NULL ? s->session_ctx_id : "";
		args[5] = hb;
		args[6] = dead;
		sr_send_script(o, q->op == STORE_PUT ? SR_PUT : SR_COMMIT, args,
		    7, sr_on_status);
		free(json);
		return;
	case STORE_GET:
		cmd[0] = "GET";
		cmd[1] = o->name;
		sr_send(r, o, -1, cmd, NULL, 2, sr_on_get);
		return;
	case STORE_DEL:
		args[0] = o->name;
		sr_send_script(o, SR_DEL, args, 1, sr_on_integer);
		return;
	case STORE_LIST:
	case STORE_SESSION_KEYS:
	case STORE_INSTANCES:
		cmd[0] = "SMEMBERS";
		cmd[1] = q->op == STORE_LIST	  ? SR_PREFIX "records"
		    : q->op == STORE_SESSION_KEYS ? SR_PREFIX "sessions"
						  : SR_PREFIX "instances";
		sr_send(r, o, -1, cmd, NULL, 2, sr_on_names);
		return;
	case STORE_POOL_PUSH:
	case STORE_POOL_REMOVE:
		args[0] = o->type;
		args[1] = o->name;
		sr_send_script(o,
		    q->op == STORE_POOL_PUSH ? SR_POOL_PUSH : SR_POOL_REMOVE,
		    args, 2, sr_on_integer);
		return;
	case STORE_POOL_CLAIM:
		sbx_claim_patch(&patch, o->meta, o->session, q->now);
		snprintf(a, sizeof a, "%ld", r->lease_ttl_ms);
		snprintf(hb, sizeof hb, "%.6f", q->now);
		args[0] = o->type;
		args[1] = o->owner;
		args[2] = a;
		args[3] = patch.meta;
		args[4] = patch.state;
		args[5] = patch.updated;
		args[6] = o->session != NULL ? o->session : "";
		args[7] = o->session != NULL ? hb : "";
		sr_send_script(o, SR_CLAIM, args, 8, sr_on_claim);
		sbx_claim_patch_free(&patch);
		return;
	case STORE_POOL_COUNT:
		args[0] = o->type;
		sr_send_script(o, SR_POOL_COUNT, args, 1, sr_on_integer);
		return;
	case STORE_SESSION_ADD:
	case STORE_SESSION_DEL:
		args[0] = o->session;
		args[1] = o->name;
		sr_send_script(o,
		    q->op == STORE_SESSION_ADD ? SR_SESSION_ADD
					       : SR_SESSION_DEL,
		    args, 2, sr_on_integer);
		return;
	case STORE_SESSION_GET:
		xasprintf(&json, "session_mapping:%s", o->session);
		cmd[0] = "GET";
		cmd[1] = json;
		sr_send(r, o, -1, cmd, NULL, 2, sr_on_session);
		free(json);
		return;
	case STORE_PORT_LEASE:
		sr_lease_next(o);
		return;
	case STORE_PORT_FREE:
	case STORE_PORT_TAKE:
		snprintf(a, sizeof a, "%d", q->port);
		args[0] = a;
		args[1] = o->name != NULL ? o->name : "";
		sr_send_script(o,
		    q->op == STORE_PORT_FREE ? SR_PORT_FREE : SR_PORT_TAKE,
		    args, 2, sr_on_integer);
		return;
	case STORE_COUNT_ACTIVE:
		sr_send_script(o, SR_COUNT_ACTIVE, args, 0, sr_on_integer);
		return;
	case STORE_BEGIN:
		snprintf(a, sizeof a, "%d", q->target);
		snprintf(b, sizeof b, "%d", q->max);
		snprintf(c, sizeof c, "%ld", r->lease_ttl_ms);
		args[0] = o->name;
		args[1] = q->kind == STORE_KIND_FILL ? "fill" : "cold";
		args[2] = o->type != NULL ? o->type : "-";
		args[3] = o->owner;
		args[4] = a;
		args[5] = b;
		args[6] = c;
		sr_send_script(o, SR_BEGIN, args, 7, sr_on_status);
		return;
	case STORE_ABORT:
		args[0] = o->name;
		args[1] = o->owner;
		sr_send_script(o, SR_ABORT, args, 2, sr_on_integer);
		return;
	case STORE_REAP:
		sr_send_script(o, SR_REAP, args, 0, sr_on_names);
		return;
	case STORE_ORPHANS:
		argv = o->in_names;
		for (i = 0; argv != NULL && argv[i] != NULL; i++)
			;
		sr_send_script(
		    o, SR_ORPHANS, (const char *const *)argv, i, sr_on_names);
		return;
	case STORE_LOCK:
		snprintf(a, sizeof a, "%ld", q->ttl_ms > 0 ? q->ttl_ms : 1000);
		cmd[0] = "SET";
		cmd[1] = o->name;
		cmd[2] = o->token;
		cmd[3] = "NX";
		cmd[4] = "PX";
		cmd[5] = a;
		sr_send(r, o, -1, cmd, NULL, 6, sr_on_status);
		return;
	case STORE_UNLOCK:
		args[0] = o->name;
		args[1] = o->token;
		sr_send_script(o, SR_UNLOCK, args, 2, sr_on_integer);
		return;
	case STORE_IDLE_SESSIONS:
	case STORE_GC:
		/* The index part, then one sweep batch from the cursor. */
		snprintf(a, sizeof a, "%.3f", q->before);
		snprintf(b, sizeof b, "%d", SR_SCAN_BATCH);
		snprintf(c, sizeof c, "%d", q->max > 0 ? q->max : 200);
		args[0] = a;
		if (q->op == STORE_GC) {
			args[1] = r->gc_cursor != NULL ? r->gc_cursor : "0";
			args[2] = b;
			args[3] = c;
			sr_send_script(o, SR_GC, args, 4, sr_on_scan);
		} else {
			args[1] = r->idle_cursor != NULL ? r->idle_cursor : "0";
			args[2] = b;
			sr_send_script(
			    o, SR_IDLE_SESSIONS, args, 3, sr_on_scan);
		}
		return;
	}
	sr_op_fail(o, STORE_EUNAVAIL, "unknown store operation");
}

/* Runs one operation. */
static void
sr_run(struct store *st, const struct store_req *q, store_cb cb, void *arg)
{
	struct sr *r = st->priv;
	struct sr_op *o = xcalloc(1, sizeof *o);
	struct timeval tv = {0, 0};
	size_t i;

	o->r = r;
	o->q = *q;
	o->cb = cb;
	o->arg = arg;
	o->name = xstrdup0(q->name);
	o->type = xstrdup0(q->type);
	o->session = xstrdup0(q->session);
	o->meta = xstrdup0(q->meta);
	o->ip = xstrdup0(q->op == STORE_PORT_LEASE ? r->publish_host : q->ip);
	o->token = xstrdup0(q->token);
	o->owner = xstrdup0(q->owner != NULL ? q->owner : r->owner);
	if (q->rec != NULL && (q->op == STORE_PUT || q->op == STORE_COMMIT))
		o->rec = sbx_dup(q->rec);
	if (q->op == STORE_ORPHANS) {
		o->in_names = xcalloc(q->nnames + 1, sizeof *o->in_names);
		for (i = 0; i < q->nnames; i++)
			o->in_names[i] = xstrdup(q->names[i]);
	}
	if (r->conn != SR_READY || r->ac == NULL) {
		o->err = STORE_EUNAVAIL;
		o->cause = sr_unavail(r);
		if (event_base_once(
			r->base, -1, EV_TIMEOUT, sr_on_deferred, o, &tv) != 0)
			fatalx("redis: event_base_once failed");
		return;
	}
	sr_op_start(o);
}

/* ---- Connection -------------------------------------------------------- */

/* Internal replies carry no operation: only errors matter. */
static void
sr_on_internal(struct sr_cmd *c, redisReply *rep)
{
	(void)c;
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
		log_warnx("redis: %s", rep->str);
}

/* Renews this owner's lease and registers the instance. */
static void
sr_renew_now(struct sr *r)
{
	char ttl[24], *key;
	const char *cmd[5];

	if (r->conn != SR_READY || r->owner == NULL)
		return;
	xasprintf(&key, SR_PREFIX "owner:%s", r->owner);
	snprintf(ttl, sizeof ttl, "%ld", r->lease_ttl_ms);
	cmd[0] = "SET";
	cmd[1] = key;
	cmd[2] = r->instance;
	cmd[3] = "PX";
	cmd[4] = ttl;
	sr_send(r, NULL, -1, cmd, NULL, 5, sr_on_internal);
	cmd[0] = "SADD";
	cmd[1] = SR_PREFIX "instances";
	cmd[2] = r->instance;
	sr_send(r, NULL, -1, cmd, NULL, 3, sr_on_internal);
	free(key);
}

/* Lease timer. */
static void
sr_on_renew(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sr_renew_now(arg);
}

/* Reconnect timer. */
static void
sr_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sr_connect(arg);
}

/* Schedules the next connection attempt with back-off. */
static void
sr_schedule(struct sr *r)
{
	struct timeval tv;

	if (r->closing || evtimer_pending(r->retry, NULL))
		return;
	tv.tv_sec = r->backoff_ms / 1000;
	tv.tv_usec = (r->backoff_ms % 1000) * 1000;
	evtimer_add(r->retry, &tv);
	r->backoff_ms *= 2;
	if (r->backoff_ms > SR_BACKOFF_MAX_MS)
		r->backoff_ms = SR_BACKOFF_MAX_MS;
}

/* One connect-time reply (AUTH, SELECT, SCRIPT LOAD). */
static void
sr_on_setup(struct sr_cmd *c, redisReply *rep)
{
	struct sr *r = c->r;

	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		if (rep != NULL && !r->setup_failed) {
			log_warnx("redis: %s:%d: %s: %s", r->host, r->port,
			    c->argv[0], rep->str);
			free(r->last_error);
			xasprintf(&r->last_error, "%s failed: %s", c->argv[0],
			    rep->str);
		}
		r->setup_failed = 1;
	} else if (c->script >= 0 && rep->type == REDIS_REPLY_STRING) {
		free(r->sha[c->script]);
		r->sha[c->script] = xstrdup(rep->str);
	}
	if (--r->setup_left > 0)
		return;
	if (r->setup_failed) {
		sr_drop(r, "set-up failed");
		return;
	}
	r->conn = SR_READY;
	r->backoff_ms = SR_BACKOFF_MIN_MS;
	free(r->last_error);
	r->last_error = NULL;
	log_info("redis: %s:%d: connected (db %d, owner %s)", r->host, r->port,
	    r->db, r->owner);
	r->warned = 0;
	sr_renew_now(r);
}

/* hiredis connect callback. */
static void
sr_on_connect(const redisAsyncContext *ac, int status)
{
	struct sr *r = ac->data;
	const char *cmd[4];
	char db[16];
	int i;

	if (r->ac != ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		if (!r->warned)
			log_warnx("redis: %s:%d: cannot connect: %s", r->host,
			    r->port, ac->errstr);
		r->warned = 1;
		free(r->last_error);
		xasprintf(&r->last_error, "cannot connect: %s", ac->errstr);
		r->ac = NULL;
		r->conn = SR_DOWN;
		sr_schedule(r);
		return;
	}
	/* A new connection is a new owner epoch (see the file comment). */
	r->epoch++;
	free(r->owner);
	xasprintf(&r->owner, "%s.%lu", r->owner_base, r->epoch);
	r->setup_failed = 0;
	r->setup_left = 0;
	if (r->password != NULL && *r->password != '\0') {
		cmd[0] = "AUTH";
		if (r->user != NULL && *r->user != '\0') {
			cmd[1] = r->user;
			cmd[2] = r->password;
			r->setup_left++;
			sr_send(r, NULL, -1, cmd, NULL, 3, sr_on_setup);
		} else {
			cmd[1] = r->password;
			r->setup_left++;
			sr_send(r, NULL, -1, cmd, NULL, 2, sr_on_setup);
		}
	}
	snprintf(db, sizeof db, "%d", r->db);
	cmd[0] = "SELECT";
	cmd[1] = db;
	r->setup_left++;
	sr_send(r, NULL, -1, cmd, NULL, 2, sr_on_setup);
	for (i = 0; i < SR_NSCRIPTS; i++) {
		cmd[0] = "SCRIPT";
		cmd[1] = "LOAD";
		cmd[2] = sr_lua[i];
		r->setup_left++;
		sr_send(r, NULL, i, cmd, NULL, 3, sr_on_setup);
	}
}

/* hiredis disconnect callback (the context is freed after it). */
static void
sr_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct sr *r = ac->data;

	(void)status;
	if (r->ac != ac)
		return; /* dropped by us: already rescheduled */
	r->ac = NULL;
	r->conn = SR_DOWN;
	free(r->last_error);
	xasprintf(&r->last_error, "connection lost: %s",
	    ac->errstr[0] != '\0' ? ac->errstr : "closed");
	if (!r->warned && !r->closing)
		log_warnx("redis: %s:%d: connection lost: %s", r->host, r->port,
		    ac->errstr[0] != '\0' ? ac->errstr : "closed");
	r->warned = 1;
	sr_schedule(r);
}

/* Starts a connection attempt. */
static void
sr_connect(struct sr *r)
{
	redisAsyncContext *ac;

	if (r->closing || r->ac != NULL)
		return;
	ac = redisAsyncConnect(r->host, r->port);
	if (ac == NULL || ac->err) {
		if (!r->warned)
			log_warnx("redis: %s:%d: cannot connect: %s", r->host,
			    r->port, ac != NULL ? ac->errstr : "no memory");
		r->warned = 1;
		if (ac != NULL)
			redisAsyncFree(ac);
		sr_schedule(r);
		return;
	}
	ac->data = r;
	r->ac = ac;
	r->conn = SR_CONNECTING;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, sr_on_connect);
	redisAsyncSetDisconnectCallback(ac, sr_on_disconnect);
}

/* 1 once connected and set up. */
static int
sr_ready(const struct store *st)
{
	const struct sr *r = st->priv;

	return r->conn == SR_READY;
}

/* Frees the store; replies still due are dropped. */
static void
sr_free(struct store *st)
{
	struct sr *r = st->priv;
	struct sr_cmd *c;
	int i;

	r->closing = 1;
	if (r->ac != NULL) {
		redisAsyncFree(r->ac); /* calls back every command with NULL */
		r->ac = NULL;
	}
	while ((c = TAILQ_FIRST(&r->cmds)) != NULL) {
		TAILQ_REMOVE(&r->cmds, c, entry);
		sr_cmd_free(c);
	}
	event_free(r->retry);
	event_free(r->renew);
	free(r->idle_cursor);
	free(r->gc_cursor);
	for (i = 0; i < SR_NSCRIPTS; i++)
		free(r->sha[i]);
	free(r->owner);
	free(r->last_error);
	free(r->host);
	free(r->user);
	if (r->password != NULL)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->pool_key);
	free(r->port_key);
	free(r->instance);
	free(r->owner_base);
	free(r->publish_host);
	free(r);
	free(st);
}

static const struct store_ops sr_ops = {
    .name = "redis",
    .run = sr_run,
    .free = sr_free,
    .ready = sr_ready,
};

/* Makes the Redis store and starts connecting. */
struct store *
store_redis_new(struct event_base *base, const struct store_redis_params *p)
{
	struct store *st = xcalloc(1, sizeof *st);
	struct sr *r = xcalloc(1, sizeof *r);
	struct timeval tv;

	r->st = st;
	r->base = base;
	TAILQ_INIT(&r->cmds);
	r->host = xstrdup(p->host);
	r->port = p->port;
	r->db = p->db;
	r->user = xstrdup0(p->user);
	r->password = xstrdup0(p->password);
	r->pool_key = xstrdup(p->pool_key);
	r->port_key = xstrdup(p->port_key);
	r->instance = xstrdup(p->instance);
	r->owner_base = xstrdup(p->owner);
	r->publish_host = xstrdup0(p->publish_host);
	r->port_lo = p->port_lo;
	r->port_hi = p->port_hi;
	r->lease_ttl_ms = p->lease_ttl_ms > 0 ? p->lease_ttl_ms : 10000;
	r->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : 2000;
	r->backoff_ms = SR_BACKOFF_MIN_MS;
	r->retry = evtimer_new(base, sr_on_retry, r);
	r->renew = event_new(base, -1, EV_PERSIST, sr_on_renew, r);
	tv.tv_sec = r->lease_ttl_ms / 3000;
	tv.tv_usec = (r->lease_ttl_ms / 3 % 1000) * 1000;
	event_add(r->renew, &tv);
	st->ops = &sr_ops;
	st->base = base;
	st->priv = r;
	sr_connect(r);
	return st;
}
