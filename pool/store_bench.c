/*
 * store_bench: synthetic warm records for benchmarks and tests
 * (SANDPOOL_BENCH_RECORDS). Builds each record as the pool's create would
 * (pool_op_start), minus the container, and stores it through the generic
 * store interface, so it works with any backend.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "sandbox.h"
#include "sbtype.h"
#include "store.h"
#include "store_bench.h"
#include "xmalloc.h"

/* Parses a record count. */
int
store_bench_count(const char *text, char **cause)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(text, &end, 10);
	if (end == text || *end != '\0' || errno != 0 || n < 1 ||
	    n > STORE_BENCH_MAX) {
		xasprintf(cause,
		    "SANDPOOL_BENCH_RECORDS=%.32s: not a count from 1 to %d",
		    text, STORE_BENCH_MAX);
		return -1;
	}
	return (int)n;
}

/* One synthetic warm record of type t. */
static struct sbx *
store_bench_record(const struct pool_params *pp, const struct sbtype *t,
    const char *type, int i)
{
	char id[SBX_ID_LEN + 1], tok[SBX_TOKEN_LEN + 1],
	    tok2[SBX_TOKEN_LEN + 1];
	struct sbx *s = sbx_new();

	sbx_random_id(id);
	sbx_random_token(tok);
	sbx_random_token(tok2);
	s->session_id = xstrdup(id);
	xasprintf(&s->container_name, "%s%s", pp->prefix, id);
	/* 64 hex digits, as an engine id; no container has it. */
	xasprintf(&s->container_id, "%s%s", tok, tok2);
	sbx_random_token(tok);
	s->runtime_token = xstrdup(tok);
	s->version = xstrdup(t != NULL ? t->image : "bench");
	s->sandbox_type = xstrdup(type);
	s->timeout = t != NULL ? t->timeout : 60;
	s->instance = xstrdup(pp->instance_id);
	/* A port number for the record's shape; no port is leased. */
	s->port = 40000 + i % 20000;
	xasprintf(&s->url, "http://localhost:%d", s->port);
	if (pp->mount_root != NULL)
		xasprintf(&s->mount_dir, "%s/%s", pp->mount_root, id);
	xasprintf(&s->run_dir, "%s/%s", pp->run_dir, id);
	xasprintf(&s->sock_path, "%s/agent.sock", s->run_dir);
	s->state = SBX_WARM;
	s->updated_at = sbx_now();
	return s;
}

/* Counts the answers of a preload, to report the ones that failed. */
struct store_bench_load {
	int left, failed;
	char *cause;
};

/* One preload command answered; the last one reports and frees. */
static void
store_bench_on_reply(const struct store_reply *r, void *arg)
{
	struct store_bench_load *l = arg;

	if (r->err != STORE_OK && l->failed++ == 0)
		l->cause = xstrdup(r->cause != NULL ? r->cause : "failed");
	if (--l->left > 0)
		return;
	if (l->failed > 0)
		log_warnx("bench: %d of the synthetic records' store commands "
			  "failed: %s",
		    l->failed, l->cause);
	else
		log_info("bench: synthetic records stored");
	free(l->cause);
	free(l);
}

/* Preloads n synthetic warm records. */
void
store_bench_preload(struct store *st, const struct pool_params *pp, int n)
{
	const char *type = pp->pool_types != NULL && pp->pool_types[0] != NULL
	    ? pp->pool_types[0]
	    : "base";
	const struct sbtype *t = sbtypes_find(pp->types, type);
	struct store_bench_load *l = xcalloc(1, sizeof *l);
	struct store_req q;
	struct sbx *s;
	int i;

	l->left = 2 * n;
	for (i = 0; i < n; i++) {
		s = store_bench_record(pp, t, type, i);
		memset(&q, 0, sizeof q);
		q.op = STORE_PUT;
		q.rec = s;
		store_run(st, &q, store_bench_on_reply, l);
		memset(&q, 0, sizeof q);
		q.op = STORE_POOL_PUSH;
		q.type = type;
		q.name = s->container_name;
		store_run(st, &q, store_bench_on_reply, l);
		sbx_free(s);
	}
}
