#!/usr/bin/env python3
"""bench_defaults: what each container default costs in create + start.

Two parts, each one run:
  1. The engine alone: POST /containers/create then /start of the busybox
     test image running `sleep 600`, timed from the client, for a baseline
     (the engine's defaults, bridge network) and for the baseline plus one
     sandpool default at a time, then all of an agent type's defaults.
     The variants are run round-robin, so that load from elsewhere falls on
     all of them alike; every container is removed (and labelled).
  2. End to end: a cold POST /create through a private server (agent
     started and answering /healthz) for a busybox type with sandpool's
     defaults, and for the same type with every default turned off.
Prints median and p90 per row, and the median's difference to the
baseline. Run from the build tree after `make`:
    python3 tests/bench/bench_defaults.py [--runs 15] [--creates 15]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness  # noqa: E402

API = harness.API
LABEL = {"sandpool.bench": "defaults-%d" % os.getpid()}
CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]

# name, HostConfig additions, Config additions
VARIANTS = [
    ("baseline (engine defaults, bridge)", {}, {}),
    ("+ CapDrop ALL, CapAdd 6", {"CapDrop": ["ALL"], "CapAdd": CAPS}, {}),
    ("+ no-new-privileges", {"SecurityOpt": ["no-new-privileges"]}, {}),
    ("+ PidsLimit 256", {"PidsLimit": 256}, {}),
    ("+ Memory = MemorySwap 1 GiB", {"Memory": 1 << 30,
                                     "MemorySwap": 1 << 30}, {}),
    ("+ NanoCpus 1 CPU", {"NanoCpus": 1000000000}, {}),
    ("+ port on 127.0.0.1", {"PortBindings": {"80/tcp": [
        {"HostIp": "127.0.0.1", "HostPort": ""}]}},
     {"ExposedPorts": {"80/tcp": {}}}),
    ("NetworkMode none (instead of bridge)", {"NetworkMode": "none"}, {}),
    ("+ ReadonlyRootfs + /tmp tmpfs 64m", {
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": "rw,exec,nosuid,nodev,size=64m,mode=1777"}}, {}),
    ("+ User 1000:1000", {}, {"User": "1000:1000"}),
    ("+ Init", {"Init": True}, {}),
    ("+ Runtime runc (named)", {"Runtime": "runc"}, {}),
    ("agent type defaults (all of the above but ro/user/init/port)", {
        "NetworkMode": "none", "CapDrop": ["ALL"], "CapAdd": CAPS,
        "SecurityOpt": ["no-new-privileges"], "PidsLimit": 256,
        "Memory": 1 << 30, "MemorySwap": 1 << 30,
        "NanoCpus": 1000000000}, {}),
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def create_start(d, host, config):
    body = {"Image": harness.TEST_IMAGE, "Cmd": ["sleep", "600"],
            "Labels": LABEL,
            "HostConfig": dict({"LogConfig": {"Type": "json-file",
                                              "Config": {"max-size": "1m"}}},
                               **host)}
    body.update(config)
    t0 = time.perf_counter()
    st, r = d.request("POST", "%s/containers/create" % API, body)
    if st != 201:
        raise RuntimeError("create: %s %s" % (st, r))
    cid = r["Id"]
    st, r = d.request("POST", "%s/containers/%s/start" % (API, cid))
    ms = (time.perf_counter() - t0) * 1000.0
    if st != 204:
        d.remove(cid)
        raise RuntimeError("start: %s %s" % (st, r))
    return ms, cid


def engine_part(d, runs):
    times = {name: [] for name, _, _ in VARIANTS}
    for _ in range(runs):
        for name, host, config in VARIANTS:
            ms, cid = create_start(d, host, config)
            times[name].append(ms)
            d.remove(cid)
    base = statistics.median(times[VARIANTS[0][0]])
    print("## engine: create + start (busybox, sleep), n=%d each" % runs)
    print("%-62s %9s %9s %9s" % ("variant", "median", "p90", "vs base"))
    for name, _, _ in VARIANTS:
        m = statistics.median(times[name])
        print("%-62s %7.1f ms %7.1f ms %+7.1f ms" %
              (name, m, pct(times[name], 90), m - base))


def server_part(runs):
    work = harness.mkdtemp("spbench")
    types = os.path.join(work, "types.json")
    with open(types, "w") as f:
        json.dump([
            {"name": "defaults", "image": harness.TEST_IMAGE},
            {"name": "open", "image": harness.TEST_IMAGE,
             "network": "bridge", "cap_drop": [], "cap_add": [],
             "no_new_privileges": False,
             "resource_limits": {"memory": 0, "cpu": 0, "pids": 0}},
        ], f)
    s = harness.Server(extensions=[types])
    try:
        times = {"defaults": [], "open": []}
        for _ in range(runs):
            for kind in ("defaults", "open"):
                t0 = time.perf_counter()
                name = s.call("create", sandbox_type=kind)
                times[kind].append((time.perf_counter() - t0) * 1000.0)
                s.call("release", identity=name)
        print("## server: cold POST /create until the agent answers, n=%d"
              % runs)
        for kind, what in (("open", "every default off (bridge + port)"),
                           ("defaults", "sandpool's defaults (none, caps, "
                            "nnp, pids, mem, cpu)")):
            print("%-62s %7.1f ms %7.1f ms" %
                  (what, statistics.median(times[kind]),
                   pct(times[kind], 90)))
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--creates", type=int, default=15)
    a = ap.parse_args()
    d = harness.skip_unless_docker()
    print("# bench_defaults: %s, %d cpus, load %.2f" %
          (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
           os.getloadavg()[0]))
    try:
        engine_part(d, a.runs)
        server_part(a.creates)
    finally:
        for c in d.containers(["sandpool.bench=" + LABEL["sandpool.bench"]]):
            d.remove(c["Id"])


if __name__ == "__main__":
    main()
