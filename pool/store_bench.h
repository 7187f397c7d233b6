/*
 * store_bench: a benchmark and test hook that fills the state store with
 * synthetic warm sandbox records (no containers behind them), so that
 * claims and the daemon's memory can be measured with many records
 * without starting as many containers. Enabled only by the environment
 * variable SANDPOOL_BENCH_RECORDS; never by configuration.
 */
#ifndef SANDPOOL_STORE_BENCH_H
#define SANDPOOL_STORE_BENCH_H

struct pool_params;
struct store;

/* Largest SANDPOOL_BENCH_RECORDS accepted. */
#define STORE_BENCH_MAX 1000000

/*
 * Parses a record count (1..STORE_BENCH_MAX); -1 with *cause (caller
 * frees) if text is not one.
 */
int store_bench_count(const char *text, char **cause);

/*
 * Writes n synthetic warm records of the first pooled type (or "base"),
 * shaped like real ones (ids, token, paths, url), and pushes each on that
 * type's idle list. Their container ids match no container. Fire and
 * forget: the writes are queued on the store in order, before anything
 * issued after this call.
 */
void store_bench_preload(struct store *, const struct pool_params *, int n);

#endif
