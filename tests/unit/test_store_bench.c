/*
 * Unit tests for pool/store_bench.c: the SANDPOOL_BENCH_RECORDS count
 * parser, and the synthetic records it preloads into the memory store
 * (warm, on the idle list, shaped like real ones, claimable).
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pool.h"
#include "sandbox.h"
#include "sbtype.h"
#include "store.h"
#include "store_bench.h"
#include "store_got.h"
#include "tap.h"
#include "xmalloc.h"

static struct event_base *base;
static struct store *st;

/* Runs one request to completion. */
static void
run(struct store_req q)
{
	store_run(st, &q, on_reply, NULL);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

int
main(void)
{
	const char *types[] = {"base", NULL};
	struct sbtypes *ts;
	struct pool_params pp;
	char *cause = NULL, *name;

	is_int(store_bench_count("1000", &cause), 1000, "a count parses");
	ok(store_bench_count("0", &cause) == -1 && cause != NULL &&
		strstr(cause, "SANDPOOL_BENCH_RECORDS=0") != NULL,
	    "0 is refused with the value in the message");
	free(cause);
	cause = NULL;
	ok(store_bench_count("12x", &cause) == -1, "trailing junk is refused");
	free(cause);
	cause = NULL;
	ok(store_bench_count("99999999999", &cause) == -1,
	    "more than STORE_BENCH_MAX is refused");
	free(cause);

	base = event_base_new();
	st = store_mem_new(base, 40000, 40010);
	ts = sbtypes_new("", "agentscope", "latest", 60);
	memset(&pp, 0, sizeof pp);
	pp.instance_id = "inst";
	pp.prefix = "pfx_";
	pp.run_dir = "/run/x";
	pp.mount_root = "/ws";
	pp.types = ts;
	pp.pool_types = types;
	store_bench_preload(st, &pp, 5);
	event_base_loop(base, EVLOOP_NONBLOCK);

	run((struct store_req){.op = STORE_POOL_COUNT, .type = "base"});
	is_int(got.value, 5, "five records on the idle list of the first type");
	run((struct store_req){.op = STORE_LIST});
	is_int(got.nnames, 5, "five records stored");
	name = xstrdup(got.nnames > 0 ? got.names[0] : "");
	run((struct store_req){.op = STORE_GET, .name = name});
	ok(got.rec != NULL && got.rec->state == SBX_WARM &&
		strncmp(got.rec->container_name, "pfx_", 4) == 0 &&
		strlen(got.rec->container_name) == 4 + SBX_ID_LEN &&
		strcmp(got.rec->container_name + 4, got.rec->session_id) == 0,
	    "a record is warm and named prefix + session id");
	ok(got.rec != NULL && got.rec->container_id != NULL &&
		strlen(got.rec->container_id) == 64 &&
		got.rec->runtime_token != NULL &&
		strlen(got.rec->runtime_token) == SBX_TOKEN_LEN,
	    "it has an engine-sized id and a token");
	ok(got.rec != NULL && got.rec->sock_path != NULL &&
		strncmp(got.rec->sock_path, "/run/x/", 7) == 0 &&
		got.rec->mount_dir != NULL &&
		strncmp(got.rec->mount_dir, "/ws/", 4) == 0 &&
		strcmp(got.rec->sandbox_type, "base") == 0 &&
		strcmp(got.rec->instance, "inst") == 0,
	    "its paths, type and instance are the pool's");
	run((struct store_req){.op = STORE_POOL_CLAIM,
	    .type = "base",
	    .session = "s",
	    .meta = "{\"session_ctx_id\":\"s\"}",
	    .now = 1});
	ok(got.err == STORE_OK && got.rec != NULL &&
		got.rec->state == SBX_RUNNING,
	    "a synthetic record is claimed like a warm one");
	run((struct store_req){.op = STORE_PORT_LEASE, .ip = "127.0.0.1"});
	is_int(got.value, 40000, "no port was leased for them");

	free(name);
	got_free();
	store_free(st);
	sbtypes_free(ts);
	event_base_free(base);
	return tap_done();
}
