#!/usr/bin/env python3
"""bench_trunk: request-to-reply latency of the trunk's hot paths.

Starts a private runtime-sandbox-server (busybox sandboxes, the real dockerd)
and prints medians and p90/p99 of
  * create_from_pool on a pool hit (the pool is full before each batch),
  * create_from_pool on a miss (POOL_SIZE=0: a cold create each time),
  * call_tool run_shell_command "echo hi" on one sandbox.
Each sample is one request over a kept-alive connection, timed in the
client. Run from the build tree after `make`:
    python3 tests/bench/bench_trunk.py [--hits 50] [--misses 50] [--calls 200]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def row(name, ms):
    print("%-34s n=%-4d median %8.3f ms  p90 %8.3f ms  p99 %8.3f ms" %
          (name, len(ms), statistics.median(ms), pct(ms, 90), pct(ms, 99)))


def warm_count(srv):
    n = 0
    for c in srv.containers(running_only=True):
        name = c["Names"][0].lstrip("/")
        st, _, doc = srv.rpc("get_info", {"identity": name})
        if st == 200 and doc["data"]["state"] == "warm":
            n += 1
    return n


def timed(srv, method, body):
    t0 = time.perf_counter()
    data = srv.call(method, **body)
    return (time.perf_counter() - t0) * 1000.0, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hits", type=int, default=50)
    ap.add_argument("--misses", type=int, default=50)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--batch", type=int, default=10)
    a = ap.parse_args()
    harness.skip_unless_docker()
    print("# bench_trunk: %s, %d cpus" % (time.strftime("%Y-%m-%d %H:%M"),
                                          os.cpu_count()))

    # Pool hits: fill a pool of `batch`, claim them all, wait, repeat.
    srv = harness.Server(pool_size=a.batch,
                         env={"SANDPOOL_REFILL_CONCURRENCY": 4})
    hits, names = [], []
    while len(hits) < a.hits:
        harness.wait_for(lambda: warm_count(srv) >= a.batch, 120)
        for _ in range(min(a.batch, a.hits - len(hits))):
            ms, name = timed(srv, "create_from_pool",
                             {"sandbox_type": "base",
                              "meta": {"session_ctx_id": "bench"}})
            hits.append(ms)
            names.append(name)
        for n in names:
            srv.call("release", identity=n)
        names = []
    row("create_from_pool, pool hit", hits)

    # Tool calls into one claimed sandbox.
    name = srv.call("create_from_pool", sandbox_type="base")
    calls = []
    for _ in range(a.calls):
        ms, res = timed(srv, "call_tool",
                        {"identity": name, "tool_name": "run_shell_command",
                         "arguments": {"command": "echo hi"}})
        assert res["content"][0]["text"] == "hi\n", res
        calls.append(ms)
    srv.call("release", identity=name)
    row("call_tool run_shell_command echo", calls)
    srv.close()

    # Pool misses: every create_from_pool creates cold.
    srv = harness.Server(pool_size=0)
    misses = []
    for _ in range(a.misses):
        ms, name = timed(srv, "create_from_pool", {"sandbox_type": "base"})
        misses.append(ms)
        srv.call("release", identity=name)
    row("create_from_pool, pool miss (cold)", misses)
    print("# ratio miss/hit (medians): %.0fx" %
          (statistics.median(misses) / statistics.median(hits)))
    srv.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        harness.cleanup_all()
