/*
 * Unit tests of the store operations that creates, claims, the lifecycle
 * and the reconciler build on, run the same way against both backends:
 * the memory store, and the Redis store on a private redis-server (started
 * on a free port, stopped by its pid; skipped if redis-server is missing).
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "port.h"
#include "sandbox.h"
#include "store.h"
#include "store_got.h"
#include "free_port.h"
#include "tap.h"
#include "xmalloc.h"

static struct event_base *base;
static struct store *st;
static pid_t redis_pid = -1;
static int redis_port;
static char redis_dir[64];

/* Sets *arg when the guard fires. */
static void
on_guard(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Runs one request to its reply (5 s at most); -1 if called inside. */
static int
run(struct store_req q)
{
	struct timeval tv = {5, 0};
	int before = got.calls, inside, expired = 0;
	struct event *guard = evtimer_new(base, on_guard, &expired);

	store_run(st, &q, on_reply, NULL);
	inside = got.calls - before;
	evtimer_add(guard, &tv);
	while (got.calls == before && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	return inside == 0 ? got.calls - before : -1;
}

/* A record of name in state, of type base. */
static struct sbx *
rec(const char *name, enum sbx_state state)
{
	struct sbx *s = sbx_new();

	s->container_name = xstrdup(name);
	s->sandbox_type = xstrdup("base");
	s->url = xstrdup("");
	s->state = state;
	return s;
}

/* 1 if the last reply's names hold name. */
static int
has(const char *name)
{
	size_t i;

	for (i = 0; i < got.nnames; i++)
		if (strcmp(got.names[i], name) == 0)
			return 1;
	return 0;
}

/* The checks every backend must pass; tag names the backend. */
static void
checks(const char *tag, int shared)
{
	struct sbx *s;
	char owner1[128], owner2[128];

	/* Pool-fill slots: never more than the target. */
	ok(run((struct store_req){.op = STORE_BEGIN,
	       .name = "f1",
	       .type = "base",
	       .kind = STORE_KIND_FILL,
	       .target = 2}) == 1,
	    "%s: begin answers once, from the loop", tag);
	is_int(got.err, STORE_OK, "%s: fill slot 1 of 2", tag);
	snprintf(owner1, sizeof owner1, "%s", got.owner);
	ok(*owner1 != '\0', "%s: begin names the owner (%s)", tag, owner1);
	run((struct store_req){.op = STORE_BEGIN,
	    .name = "f2",
	    .type = "base",
	    .kind = STORE_KIND_FILL,
	    .target = 2});
	is_int(got.err, STORE_OK, "%s: fill slot 2 of 2", tag);
	snprintf(owner2, sizeof owner2, "%s", got.owner);
	run((struct store_req){.op = STORE_BEGIN,
	    .name = "f3",
	    .type = "base",
	    .kind = STORE_KIND_FILL,
	    .target = 2});
	is_int(got.err, STORE_ENOENT, "%s: a third fill is refused", tag);
	run((struct store_req){.op = STORE_POOL_COUNT, .type = "base"});
	is_int(got.value, 2, "%s: pool count = idle + reserved", tag);

	s = rec("f1", SBX_WARM);
	run((struct store_req){.op = STORE_COMMIT,
	    .rec = s,
	    .kind = STORE_KIND_FILL,
	    .owner = owner1});
	is_int(got.err, STORE_OK, "%s: commit of a fill", tag);
	sbx_free(s);
	run((struct store_req){
	    .op = STORE_ABORT, .name = "f2", .owner = owner2});
	run((struct store_req){.op = STORE_POOL_COUNT, .type = "base"});
	is_int(got.value, 1, "%s: after commit + abort: one idle", tag);
	s = rec("f2", SBX_WARM);
	run((struct store_req){.op = STORE_COMMIT,
	    .rec = s,
	    .kind = STORE_KIND_FILL,
	    .owner = owner2});
	is_int(got.err, STORE_EFENCED, "%s: commit after abort is fenced", tag);
	sbx_free(s);
	run((struct store_req){.op = STORE_GET, .name = "f2"});
	is_int(got.err, STORE_ENOENT, "%s: and writes nothing", tag);

	/* MAX_SANDBOX_INSTANCES: warm/running records + creates. */
	run((struct store_req){.op = STORE_BEGIN,
	    .name = "c1",
	    .type = "base",
	    .kind = STORE_KIND_COLD,
	    .max = 2});
	is_int(got.err, STORE_OK, "%s: cold create under the cap", tag);
	run((struct store_req){.op = STORE_BEGIN,
	    .name = "c2",
	    .type = "base",
	    .kind = STORE_KIND_COLD,
	    .max = 2});
	is_int(
	    got.err, STORE_ELIMIT, "%s: the cap counts creates in flight", tag);
	run((struct store_req){.op = STORE_COUNT_ACTIVE});
	is_int(got.value, 2, "%s: active = 1 warm + 1 creating", tag);
	run((struct store_req){
	    .op = STORE_ABORT, .name = "c1", .owner = got.owner});

	/* Claim: bound to its session, once. */
	run((struct store_req){.op = STORE_POOL_CLAIM,
	    .type = "base",
	    .session = "sess",
	    .meta = "{\"session_ctx_id\":\"sess\"}",
	    .now = 100});
	ok(got.err == STORE_OK && got.rec != NULL &&
		strcmp(got.rec->container_name, "f1") == 0 &&
		got.rec->state == SBX_RUNNING && got.rec->last_active_at == 100,
	    "%s: claim binds f1 to its session", tag);
	ok(got.rec != NULL && got.rec->updated_at == 100 &&
		strcmp(got.rec->meta, "{\"session_ctx_id\":\"sess\"}") == 0,
	    "%s: with its meta and time", tag);
	run((struct store_req){
	    .op = STORE_POOL_CLAIM, .type = "base", .now = 100});
	is_int(got.err, STORE_ENOENT, "%s: a second claim misses", tag);
	run((struct store_req){.op = STORE_SESSION_GET, .session = "sess"});
	ok(got.nnames == 1 && has("f1"), "%s: session maps to f1", tag);

	/* Compare-and-set on the state. */
	s = rec("f1", SBX_RUNNING);
	s->session_ctx_id = xstrdup("sess");
	s->last_active_at = 100;
	run((struct store_req){
	    .op = STORE_PUT, .rec = s, .if_state = 1, .expect = SBX_WARM});
	is_int(got.err, STORE_ECONFLICT, "%s: put if warm on running: conflict",
	    tag);
	run((struct store_req){
	    .op = STORE_PUT, .rec = s, .if_state = 1, .expect = SBX_RUNNING});
	is_int(got.err, STORE_OK, "%s: put if running: done", tag);
	sbx_free(s);

	/* Heartbeats. */
	run((struct store_req){.op = STORE_IDLE_SESSIONS, .before = 200});
	ok(got.nnames == 1 && has("sess"),
	    "%s: a session idle since 100 is "
	    "idle before 200",
	    tag);
	run((struct store_req){.op = STORE_IDLE_SESSIONS, .before = 50});
	is_int(got.nnames, 0, "%s: and not before 50", tag);

	/* GC and orphans. */
	s = rec("r1", SBX_RELEASED);
	s->released_at = 100;
	run((struct store_req){.op = STORE_PUT, .rec = s});
	sbx_free(s);
	run((struct store_req){.op = STORE_ORPHANS,
	    .names = (char *[]){"f1", "r1", "ghost"},
	    .nnames = 3});
	ok(!has("f1") && has("r1") && (has("ghost") || has("?ghost")),
	    "%s: orphans: released and unknown, not running", tag);
	run((struct store_req){.op = STORE_GC, .before = 50, .max = 10});
	is_int(got.nnames, 0, "%s: gc keeps a record released after", tag);
	run((struct store_req){.op = STORE_GC, .before = 200, .max = 10});
	ok(got.nnames == 1 && has("r1"),
	    "%s: gc deletes one released "
	    "before",
	    tag);
	run((struct store_req){.op = STORE_GET, .name = "r1"});
	is_int(got.err, STORE_ENOENT, "%s: it is gone", tag);

	/* Locks: exclusive in a shared store. */
	run((struct store_req){.op = STORE_LOCK,
	    .name = "heartbeat_lock:sess",
	    .token = "t1",
	    .ttl_ms = 5000});
	is_int(got.err, STORE_OK, "%s: lock taken", tag);
	run((struct store_req){.op = STORE_LOCK,
	    .name = "heartbeat_lock:sess",
	    .token = "t2",
	    .ttl_ms = 5000});
	is_int(got.err, shared ? STORE_ECONFLICT : STORE_OK,
	    "%s: a second lock is %s", tag,
	    shared ? "refused"
		   : "granted "
		     "(one process)");
	run((struct store_req){
	    .op = STORE_UNLOCK, .name = "heartbeat_lock:sess", .token = "t1"});
	run((struct store_req){.op = STORE_LOCK,
	    .name = "heartbeat_lock:sess",
	    .token = "t3",
	    .ttl_ms = 5000});
	is_int(got.err, STORE_OK, "%s: unlock frees it", tag);
}

/* Stops the private redis-server. */
static void
redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGTERM);
		waitpid(redis_pid, NULL, 0);
		redis_pid = -1;
	}
	if (*redis_dir != '\0')
		rmdir(redis_dir);
}

/* Starts a private redis-server; 0 on success. */
static int
redis_start(void)
{
	char port[16];
	redisContext *c;
	int i;

	snprintf(redis_dir, sizeof redis_dir, "/tmp/sp-test-store-XXXXXX");
	if (mkdtemp(redis_dir) == NULL)
		return -1;
	redis_port = free_port();
	snprintf(port, sizeof port, "%d", redis_port);
	if ((redis_pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execlp("redis-server", "redis-server", "--bind", "127.0.0.1",
		    "--port", port, "--save", "", "--appendonly", "no", "--dir",
		    redis_dir, "--loglevel", "warning", (char *)NULL);
		_exit(127);
	}
	atexit(redis_stop);
	for (i = 0; i < 100; i++) {
		if ((c = redisConnect("127.0.0.1", redis_port)) != NULL &&
		    c->err == 0) {
			redisFree(c);
			return 0;
		}
		redisFree(c);
		usleep(50000);
	}
	return -1;
}

/* Waits until the Redis store is connected (5 s at most). */
static int
wait_ready(void)
{
	struct timeval tv = {0, 20000};
	int i;

	for (i = 0; i < 250 && !store_ready(st); i++)
		event_base_loopexit(base, &tv), event_base_dispatch(base);
	return store_ready(st);
}

/* A dead worker's half-made create is taken back by REAP. */
static void
reap_check(void)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;

	r = redisCommand(
	    c, "HSET sandpool:pending ghost1 %s", "fill base deadowner");
	freeReplyObject(r);
	r = redisCommand(c, "SADD sandpool:warming:base ghost1");
	freeReplyObject(r);
	r = redisCommand(c,
	    "SADD _runtime_sandbox_container_occupied_ports "
	    "31999");
	freeReplyObject(r);
	r = redisCommand(c, "HSET sandpool:port:owner 31999 ghost1");
	freeReplyObject(r);
	r = redisCommand(c, "HSET sandpool:port:of ghost1 31999");
	freeReplyObject(r);
	run((struct store_req){.op = STORE_REAP});
	ok(got.nnames == 1 && has("ghost1"),
	    "redis: reap hands back a dead "
	    "owner's half-made create");
	r = redisCommand(c,
	    "SISMEMBER _runtime_sandbox_container_occupied_ports "
	    "31999");
	is_int(r->integer, 0, "redis: and frees its port");
	freeReplyObject(r);
	r = redisCommand(c, "SCARD sandpool:warming:base");
	is_int(r->integer, 0, "redis: and its fill slot");
	freeReplyObject(r);
	run((struct store_req){
	    .op = STORE_ORPHANS, .names = (char *[]){"ghost1"}, .nnames = 1});
	ok(has("ghost1"),
	    "redis: a late container of it is an orphan "
	    "(tombstone)");
	run((struct store_req){.op = STORE_REAP});
	is_int(got.nnames, 0, "redis: a live owner's entries stay");
	redisFree(c);
}

/* A Redis string value (caller frees), or NULL. */
static char *
redis_get(redisContext *c, const char *key)
{
	redisReply *r = redisCommand(c, "GET %s", key);
	char *v =
	    r != NULL && r->type == REDIS_REPLY_STRING ? xstrdup(r->str) : NULL;

	freeReplyObject(r);
	return v;
}

/* A Redis integer reply. */
static long long
redis_int(redisContext *c, const char *fmt, const char *a, const char *b)
{
	redisReply *r = redisCommand(c, fmt, a, b);
	long long v =
	    r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

	freeReplyObject(r);
	return v;
}

/*
 * The one-call claim splices the binding into the record's text: the
 * result must be what sbx_gen writes for the bound record. A record in
 * another form is claimed in two steps (pending, then commit).
 */
static void
claim_check(void)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	const char *meta = "{\"session_ctx_id\":\"s2\",\"k\":[1,{\"a\":null},"
			   "\"\\u00e9\\\"x\"]}";
	struct sbx *s = rec("w1", SBX_WARM), *back;
	char *text, *canon, *cause = NULL;
	redisReply *r;

	s->session_id = xstrdup("w1id");
	s->port = 31001;
	s->run_dir = xstrdup("/nonexistent/w1");
	s->updated_at = 5.25;
	run((struct store_req){.op = STORE_PUT, .rec = s});
	sbx_free(s);
	run((struct store_req){
	    .op = STORE_POOL_PUSH, .type = "base", .name = "w1"});
	run((struct store_req){.op = STORE_POOL_CLAIM,
	    .type = "base",
	    .session = "s2",
	    .meta = meta,
	    .now = 123.5});
	ok(got.err == STORE_OK && got.rec != NULL &&
		strcmp(got.rec->container_name, "w1") == 0 &&
		got.rec->state == SBX_RUNNING &&
		got.rec->last_active_at == 123.5 &&
		got.rec->updated_at == 123.5 && got.rec->port == 31001 &&
		strcmp(got.rec->session_ctx_id, "s2") == 0,
	    "redis: a one-call claim binds the record");
	text = redis_get(c, "w1");
	back = text != NULL ? sbx_from_json(text, strlen(text), &cause) : NULL;
	canon = back != NULL ? sbx_to_json(back, 1, NULL) : NULL;
	ok(canon != NULL && strcmp(text, canon) == 0,
	    "redis: its spliced text is what sbx_gen writes (%s)",
	    text != NULL ? text : "none");
	ok(back != NULL && back->meta != NULL && got.rec->meta != NULL &&
		strcmp(back->meta, got.rec->meta) == 0,
	    "redis: with the meta as given");
	is_int(redis_int(c, "HEXISTS sandpool:pending %s", "w1", NULL), 0,
	    "redis: and nothing pending");
	r = redisCommand(c, "ZSCORE sandpool:heartbeats s2");
	ok(r != NULL && r->type == REDIS_REPLY_STRING && atof(r->str) == 123.5,
	    "redis: the session's heartbeat is indexed");
	freeReplyObject(r);
	free(text);
	free(canon);
	free(cause);
	sbx_free(back);

	/* Another server's record: other key order, a bare name pushed. */
	freeReplyObject(redisCommand(c, "SET w2 %s",
	    "{\"container_name\":\"w2\",\"state\":\"warm\",\"meta\":{},"
	    "\"sandbox_type\":\"base\",\"session_ctx_id\":null,\"url\":\"\"}"));
	freeReplyObject(redisCommand(c, "SADD sandpool:records w2"));
	freeReplyObject(redisCommand(
	    c, "RPUSH _runtime_sandbox_container_container_pool:base w2"));
	run((struct store_req){.op = STORE_POOL_CLAIM,
	    .type = "base",
	    .session = "s3",
	    .meta = "{\"session_ctx_id\":\"s3\"}",
	    .now = 124});
	ok(got.err == STORE_OK && got.rec != NULL &&
		strcmp(got.rec->container_name, "w2") == 0 &&
		got.rec->state == SBX_RUNNING,
	    "redis: a record in another form is claimed in two steps");
	is_int(redis_int(c, "HEXISTS sandpool:pending %s", "w2", NULL), 0,
	    "redis: committed: nothing pending");
	run((struct store_req){.op = STORE_SESSION_GET, .session = "s3"});
	ok(got.nnames == 1 && has("w2"), "redis: and its session maps to it");
	redisFree(c);
}

int
main(void)
{
	struct store_redis_params rp;
	int lo;

	signal(SIGPIPE, SIG_IGN);
	for (lo = 21000; lo < 32000; lo += 2)
		if (port_probe("127.0.0.1", lo) &&
		    port_probe("127.0.0.1", lo + 1))
			break;
	base = event_base_new();

	st = store_mem_new(base, lo, lo + 2);
	checks("memory", 0);
	store_free(st);

	if (redis_start() != 0) {
		ok(1, "redis: skipped, redis-server is not available");
	} else {
		memset(&rp, 0, sizeof rp);
		rp.host = "127.0.0.1";
		rp.port = redis_port;
		rp.pool_key = "_runtime_sandbox_container_container_pool";
		rp.port_key = "_runtime_sandbox_container_occupied_ports";
		rp.instance = "unit";
		rp.owner = "unit:1:1";
		rp.port_lo = lo;
		rp.port_hi = lo + 2;
		rp.lease_ttl_ms = 3000;
		rp.timeout_ms = 2000;
		st = store_redis_new(base, &rp);
		if (ok(wait_ready(), "redis: connected")) {
			checks("redis", 1);
			reap_check();
			claim_check();
		}
		store_free(st);
		redis_stop();
	}
	got_free();
	event_base_free(base);
	return tap_done();
}
