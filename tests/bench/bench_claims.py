#!/usr/bin/env python3
"""bench_claims: the claim path of the memory store against the Redis store.

Starts private runtime-sandbox-servers (busybox sandboxes, the real dockerd,
a private redis-server) and prints
  * create_from_pool latency on a pool hit, p50 and p99, with the memory
    store and with the Redis store (one run each: the pool is filled, a
    batch is claimed one request at a time over a kept-alive connection,
    released, and the pool filled again), twice: with the refill running
    (each claim starts a container create, so dockerd competes for the
    two cores), and "quiet", with MAX_SANDBOX_INSTANCES = the batch so
    that no refill starts during a batch;
  * claims per second with 32 concurrent clients spread over two
    instances sharing one Redis (the shared pool is filled, then the 32
    clients claim it empty as fast as they can; several rounds).
Run from the build tree after `make`:
    python3 tests/bench/bench_claims.py [--samples 60] [--batch 20]
        [--burst 64] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness  # noqa: E402

POOLKEY = "_runtime_sandbox_container_container_pool:base"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def idle(srv, redis=None, db=0):
    """Warm pool length, from Redis or from the server's records."""
    if redis is not None:
        return redis.call("LLEN", POOLKEY, db=db) or 0
    n = 0
    for c in srv.containers(running_only=True):
        st, _, doc = srv.rpc("get_info",
                             {"identity": c["Names"][0].lstrip("/")})
        if st == 200 and doc["data"]["state"] == "warm":
            n += 1
    return n


def latency(srv, samples, batch, redis=None, db=0):
    """create_from_pool hit latencies in ms."""
    out = []
    while len(out) < samples:
        if not harness.wait_for(lambda: idle(srv, redis, db) >= batch, 180,
                                0.5):
            raise RuntimeError("pool did not fill")
        names = []
        for _ in range(min(batch, samples - len(out))):
            t0 = time.perf_counter()
            names.append(srv.call("create_from_pool", sandbox_type="base",
                                  meta={"session_ctx_id": "bench"}))
            out.append((time.perf_counter() - t0) * 1000.0)
        for n in names:
            srv.call("release", identity=n)
    return out


def burst(servers, n, clients):
    """n claims by `clients` threads over servers; returns (seconds,
    names)."""
    names, lock = [], threading.Lock()
    left = [n]
    start = threading.Barrier(clients + 1)

    def work(i):
        srv = servers[i % len(servers)]
        conn = srv.connect()
        hdr = {"Content-Type": "application/json"}
        hdr.update(srv.auth_headers())
        start.wait()
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            conn.request("POST", "/create_from_pool",
                         body='{"sandbox_type":"base"}', headers=hdr)
            r = conn.getresponse()
            body = r.read()
            with lock:
                names.append(harness.load_json_or_none(body)["data"])
        conn.close()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for x in ts:
        x.start()
    start.wait()
    t0 = time.perf_counter()
    for x in ts:
        x.join()
    return time.perf_counter() - t0, names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--burst", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    a = ap.parse_args()
    harness.skip_unless_docker()
    print("# bench_claims: %s, %d cpus" % (time.strftime("%Y-%m-%d %H:%M"),
                                           os.cpu_count()))
    env = {"SANDPOOL_REFILL_CONCURRENCY": 4}
    redis = harness.Redis()
    rows = []
    for mode, extra in (("refilling", {}),
                        ("quiet", {"MAX_SANDBOX_INSTANCES": a.batch})):
        e = dict(env)
        e.update(extra)
        mem = harness.Server(pool_size=a.batch, env=e)
        ms = latency(mem, a.samples, a.batch)
        mem.close()
        redis.call("FLUSHALL")
        e.update(redis.env(0))
        red = harness.Server(pool_size=a.batch, env=e)
        rs = latency(red, a.samples, a.batch, redis, 0)
        red.close()
        rows += [(mode, "memory", ms), (mode, "redis", rs)]
    for mode, name, xs in rows:
        print("create_from_pool hit, %-9s %-6s store: n=%d p50 %.3f ms  "
              "p99 %.3f ms  (mean %.3f)" % (mode, name, len(xs),
                                            pct(xs, 50), pct(xs, 99),
                                            statistics.mean(xs)))

    e = dict(env)
    e.update(redis.env(1))
    x = harness.Server(pool_size=a.burst, env=e, ports=a.burst * 3)
    e.update({"PORT_RANGE": "[%d,%d]" % x.port_range,
              "SANDPOOL_RUN_DIR": x.run_dir,
              "DEFAULT_MOUNT_DIR": x.mount_dir})
    y = harness.Server(pool_size=a.burst, env=e, token=x.token)
    rates = []
    for _ in range(a.rounds):
        if not harness.wait_for(lambda: idle(x, redis, 1) >= a.burst, 300,
                                0.5):
            raise RuntimeError("shared pool did not fill")
        secs, names = burst([x, y], a.burst, a.clients)
        ok = [n for n in names if isinstance(n, str)]
        if len(set(ok)) != len(ok):
            raise RuntimeError("a sandbox was handed out twice")
        rates.append(len(ok) / secs)
        for n in ok:
            x.call("release", identity=n)
    print("claims/s, %d clients over 2 instances, %d-sandbox shared pool: "
          "%s (median %.0f)" % (a.clients, a.burst,
                                " ".join("%.0f" % r for r in rates),
                                statistics.median(rates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
