/*
 * Unit tests for pool/store_mem.c through the store vtable: records,
 * atomic pool claims, sessions, port leases, and the reply contract
 * (exactly once, from the loop, never inside store_run).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "port.h"
#include "sandbox.h"
#include "store.h"
#include "store_got.h"
#include "tap.h"
#include "xmalloc.h"

static struct event_base *base;
static struct store *st;

/* Runs one request to completion; returns the number of callbacks. */
static int
run(struct store_req q)
{
	int before = got.calls, inside;

	store_run(st, &q, on_reply, NULL);
	inside = got.calls - before;
	event_base_loop(base, EVLOOP_NONBLOCK);
	return inside == 0 ? got.calls - before : -1;
}

/* Stores a warm record of a type. */
static void
put_warm(const char *name, const char *type)
{
	struct sbx *s = sbx_new();

	s->container_name = xstrdup(name);
	s->sandbox_type = xstrdup(type);
	s->state = SBX_WARM;
	run((struct store_req){.op = STORE_PUT, .rec = s});
	sbx_free(s);
	run((struct store_req){
	    .op = STORE_POOL_PUSH, .type = type, .name = name});
}

int
main(void)
{
	struct sbx *s;
	int p1, p2, lo;

	/* Two adjacent ports nobody holds, outside the ephemeral range. */
	for (lo = 21000; lo < 32000; lo += 2)
		if (port_probe("127.0.0.1", lo) &&
		    port_probe("127.0.0.1", lo + 1))
			break;
	base = event_base_new();
	st = store_mem_new(base, lo, lo + 2);

	is_int(run((struct store_req){.op = STORE_GET, .name = "x"}), 1,
	    "reply comes once, from the loop, not inside store_run");
	is_int(got.err, STORE_ENOENT, "unknown record is ENOENT");

	s = sbx_new();
	s->container_name = xstrdup("c1");
	s->state = SBX_RUNNING;
	run((struct store_req){.op = STORE_PUT, .rec = s});
	s->state = SBX_RELEASED;
	run((struct store_req){.op = STORE_PUT, .rec = s});
	sbx_free(s);
	run((struct store_req){.op = STORE_GET, .name = "c1"});
	ok(got.err == STORE_OK && got.rec != NULL &&
		got.rec->state == SBX_RELEASED,
	    "put replaces by name");

	put_warm("w1", "base");
	put_warm("w2", "base");
	put_warm("o1", "other");
	run((struct store_req){.op = STORE_POOL_COUNT, .type = "base"});
	is_int(got.value, 2, "two idle of base");
	run((struct store_req){.op = STORE_COUNT_ACTIVE});
	is_int(got.value, 3, "three active (released one not counted)");

	run((struct store_req){.op = STORE_POOL_CLAIM,
	    .type = "base",
	    .session = "s1",
	    .meta = "{\"session_ctx_id\":\"s1\"}",
	    .now = 100.0});
	ok(got.err == STORE_OK && got.rec != NULL &&
		strcmp(got.rec->container_name, "w1") == 0,
	    "claim is FIFO");
	ok(got.rec != NULL && got.rec->state == SBX_RUNNING &&
		got.rec->last_active_at == 100.0,
	    "claimed record is bound");
	run((struct store_req){.op = STORE_GET, .name = "w1"});
	ok(got.rec != NULL && got.rec->session_ctx_id != NULL &&
		strcmp(got.rec->session_ctx_id, "s1") == 0,
	    "the stored record carries the session");
	run((struct store_req){.op = STORE_SESSION_GET, .session = "s1"});
	ok(got.nnames == 1 && strcmp(got.names[0], "w1") == 0,
	    "the session maps to the claimed name");

	/* A stale idle entry (record gone) is skipped. */
	run((struct store_req){.op = STORE_DEL, .name = "w2"});
	run((struct store_req){
	    .op = STORE_POOL_CLAIM, .type = "base", .now = 1});
	is_int(got.err, STORE_ENOENT, "a stale entry is skipped, pool empty");
	run((struct store_req){
	    .op = STORE_POOL_REMOVE, .type = "other", .name = "o1"});
	run((struct store_req){.op = STORE_POOL_COUNT, .type = "other"});
	is_int(got.value, 0, "pool_remove drops an idle entry");

	run((struct store_req){
	    .op = STORE_SESSION_ADD, .session = "s1", .name = "x2"});
	run((struct store_req){
	    .op = STORE_SESSION_ADD, .session = "s1", .name = "x2"});
	run((struct store_req){.op = STORE_SESSION_GET, .session = "s1"});
	is_int(got.nnames, 2, "session add has no duplicates");
	run((struct store_req){
	    .op = STORE_SESSION_ADD, .session = "s2", .name = "y"});
	run((struct store_req){.op = STORE_SESSION_KEYS});
	is_int(got.nnames, 2, "two session keys");
	run((struct store_req){
	    .op = STORE_SESSION_DEL, .session = "s2", .name = "y"});
	run((struct store_req){.op = STORE_SESSION_KEYS});
	ok(got.nnames == 1 && strcmp(got.names[0], "s1") == 0,
	    "an emptied session disappears");

	run((struct store_req){
	    .op = STORE_PORT_LEASE, .name = "a", .ip = "127.0.0.1"});
	p1 = (int)got.value;
	run((struct store_req){
	    .op = STORE_PORT_LEASE, .name = "b", .ip = "127.0.0.1"});
	p2 = (int)got.value;
	ok(p1 >= lo && p2 >= lo && p1 != p2, "two distinct ports");
	run((struct store_req){
	    .op = STORE_PORT_LEASE, .name = "c", .ip = "127.0.0.1"});
	is_int(got.err, STORE_EFULL, "a full range is EFULL");
	run((struct store_req){.op = STORE_PORT_FREE, .port = p1});
	run((struct store_req){
	    .op = STORE_PORT_LEASE, .name = "c", .ip = "127.0.0.1"});
	is_int(got.value, p1, "a freed port can be leased again");

	run((struct store_req){.op = STORE_LIST});
	is_int(got.nnames, 3, "list has every record (c1, w1, o1)");

	/* Replies queued at free time are dropped without a call. */
	store_run(st, &(struct store_req){.op = STORE_LIST}, on_reply, NULL);
	store_free(st);
	got_free();
	event_base_free(base);
	ok(1, "free with a pending reply does not crash");
	return tap_done();
}
