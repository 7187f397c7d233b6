"""The Redis store against a private redis-server and the real dockerd:
several instances (and WORKERS) share one state; a whole session runs
through haproxy across two instances; pools are never overfilled, ports
never leased twice, MAX_SANDBOX_INSTANCES holds across instances; Redis
going away gives 503 and comes back; kill -9 of a worker or of an instance
in the middle of refills leaves nothing behind within a few lease TTLs.
The start-up checks (OCI runtimes) run once, in the supervisor, before
WORKERS are forked; the workers' sandboxes are confined like any."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=540)
docker = harness.skip_unless_docker()
for prog in ("redis-server", "haproxy"):
    if subprocess.run(["sh", "-c", "command -v " + prog],
                      stdout=subprocess.DEVNULL).returncode != 0:
        t.ok(False, "%s is installed (dev.sh installs it)" % prog)
        sys.exit(t.done())

LEASE = 2  # SANDPOOL_LEASE_TTL in these tests
POOLKEY = "_runtime_sandbox_container_container_pool"
PORTKEY = "_runtime_sandbox_container_occupied_ports"
redis = harness.Redis()


def group(n, db, pool_size=0, env=None, ports=None, shared=None):
    """n servers sharing Redis db, PORT_RANGE and directories."""
    first = None
    out = []
    for i in range(n):
        e = dict(redis.env(db))
        e["SANDPOOL_LEASE_TTL"] = LEASE
        e.update(env or {})
        if first is not None:
            e["PORT_RANGE"] = "[%d,%d]" % first.port_range
            e["SANDPOOL_RUN_DIR"] = first.run_dir
            e["DEFAULT_MOUNT_DIR"] = first.mount_dir
        s = harness.Server(pool_size=pool_size, env=e,
                           token=first.token if first else harness.RANDOM,
                           **({"ports": ports} if ports else {}))
        if first is None:
            first = s
        out.append(s)
    return out


def records(db):
    """name -> record of every sandpool record in db."""
    out = {}
    for name in redis.call("SMEMBERS", "sandpool:records", db=db) or []:
        raw = redis.call("GET", name, db=db)
        if raw:
            out[name] = json.loads(raw)
    return out


def live(db):
    return {n: r for n, r in records(db).items()
            if r.get("state") in ("warm", "running")}


def containers_of(servers, running_only=False):
    out = []
    for s in servers:
        out += s.containers(running_only=running_only)
    return out


def cname(c):
    return c["Names"][0].lstrip("/")


def leftovers(servers, db):
    """What should be empty once everything settled: containers without
    a live record, live records without a container, pending entries,
    port leases that no live record holds."""
    rec = live(db)
    names = {cname(c) for c in containers_of(servers)}
    ports = set(int(p) for p in redis.call("SMEMBERS", PORTKEY, db=db))
    rec_ports = set(r["ports"][0] for r in rec.values() if r.get("ports"))
    return {
        "orphan containers": sorted(names - set(rec)),
        "records without container": sorted(set(rec) - names),
        "pending": redis.call("HGETALL", "sandpool:pending", db=db),
        "leaked ports": sorted(ports - rec_ports),
    }


def empty(d):
    return all(not v for v in d.values())


def settle(servers, db, timeout):
    """Waits until leftovers() is empty; returns the last leftovers."""
    last = {}

    def check():
        last.clear()
        last.update(leftovers(servers, db))
        return empty(last)
    harness.wait_for(check, timeout, 0.5)
    return last


# ------------------------------------------------------------ tests

def test_workers_need_redis():
    s = harness.Server(env={"WORKERS": 2}, start=False)
    p = subprocess.run(s.command(), cwd=s.work, env=harness.server_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode()
    t.ok(p.returncode != 0, "WORKERS=2 without REDIS_ENABLED: start-up "
         "fails", out)
    t.ok("REDIS_ENABLED" in out, "and says that REDIS_ENABLED is needed",
         out)


def create_when_ready(s, sandbox_type, timeout=20):
    """A create, retried while it answers 503: each worker connects to
    Redis on its own after /health answers."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, doc = s.rpc("create", {"sandbox_type": sandbox_type})
        if status != 503 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if status != 200 or not isinstance(doc, dict) or "data" not in doc:
        raise harness.RpcError("create", status, doc)
    return doc["data"]


def test_workers_start_checks():
    db = 8
    work = harness.mkdtemp("spwk")
    bad = os.path.join(work, "bad-runtime.json")
    with open(bad, "w") as f:
        json.dump({"name": "gv", "image": harness.TEST_IMAGE,
                   "runtime": "nosuch-runsc"}, f)
    env = dict(redis.env(db), WORKERS=2, SANDPOOL_LEASE_TTL=LEASE)
    s = harness.Server(env=env, extensions=[bad], start=False)
    p = subprocess.run(s.command(), cwd=s.work, env=harness.server_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    t.ok(p.returncode == 1 and
         out.count("needs the OCI runtime 'nosuch-runsc'") == 1 and
         "workers" not in out,
         "WORKERS=2, a type with a missing OCI runtime: the supervisor "
         "refuses to start, once, before forking", out[-600:])
    s.close()
    good = os.path.join(work, "runc.json")
    with open(good, "w") as f:
        json.dump({"name": "rc", "image": harness.TEST_IMAGE,
                   "runtime": "runc"}, f)
    s = harness.Server(env=env, extensions=[good])
    try:
        t.ok(harness.wait_for(lambda: len(pids_of_workers(s)) == 2, 10),
             "WORKERS=2 with a runtime the engine has: two workers")
        t.is_(s.log().count("docker: OCI runtimes:"), 1,
              "the runtimes were checked once (by the supervisor)")
        names = [create_when_ready(s, "rc") for _ in range(2)]
        hc = docker.inspect(names[0])["HostConfig"]
        t.ok(hc.get("Runtime") == "runc" and "ALL" in
             (hc.get("CapDrop") or []) and "no-new-privileges" in
             (hc.get("SecurityOpt") or []) and hc.get("NetworkMode") ==
             "none",
             "a worker's sandbox (Redis store) is confined: runtime, "
             "capabilities, no-new-privileges, no network", hc)
        for n in names:
            s.call("release", identity=n)
        t.is_(s.stop(), 0, "SIGTERM: the supervisor exits 0")
    finally:
        s.close()


def test_two_instances_lb():
    db = 1
    a, b = group(2, db, pool_size=2)
    # Two instances, POOL_SIZE=2 each, one shared pool: exactly 2 warm.
    harness.wait_for(lambda: redis.call("LLEN", POOLKEY + ":base",
                                        db=db) >= 2, 60)
    time.sleep(2 * LEASE)
    t.is_(redis.call("LLEN", POOLKEY + ":base", db=db), 2,
          "two instances keep one shared pool of POOL_SIZE, not 2x")
    t.is_(len(containers_of([a, b], running_only=True)), 2,
          "and there are exactly 2 containers")
    lb = harness.Haproxy([a.port, b.port])
    via = harness.Via(lb.port, a.token)
    name = via.call("create_from_pool", sandbox_type="base",
                    meta={"session_ctx_id": "lb-sess"})
    t.ok(isinstance(name, str), "create_from_pool through haproxy", name)
    outs = []
    for i in range(4):  # round robin: both instances serve it
        r = via.call("call_tool", identity=name,
                     tool_name="run_shell_command",
                     arguments={"command": "echo n%d" % i})
        outs.append(r["content"][0]["text"])
    t.is_(outs, ["n0\n", "n1\n", "n2\n", "n3\n"],
          "call_tool through haproxy on both instances")
    info_a = a.call("get_info", identity=name)
    info_b = b.call("get_info", identity=name)
    t.ok(info_a == info_b and info_a["state"] == "running",
         "get_info is the same on both instances", (info_a, info_b))
    t.is_(via.call("get_session_mapping", session_ctx_id="lb-sess"),
          [name], "session mapping through haproxy")
    raw = json.loads(redis.call("GET", name, db=db))
    t.ok(raw.get("container_name") == name and
         raw.get("session_ctx_id") == "lb-sess",
         "the record is JSON under the container name (Python layout)",
         raw)
    t.is_(json.loads(redis.call("GET", "session_mapping:lb-sess", db=db)),
          [name], "session_mapping:<id> is a JSON array (Python layout)")
    # Created through A, used and released through B.
    n2 = a.call("create", sandbox_type="base")
    r = b.call("call_tool", identity=n2, tool_name="run_shell_command",
               arguments={"command": "echo from-b"})
    t.is_(r["content"][0]["text"], "from-b\n",
          "a sandbox created through A is used through B")
    t.is_(b.call("release", identity=n2), True, "and released through B")
    t.ok(harness.wait_for(lambda: docker.inspect(n2) is None, 20),
         "its container is gone")
    t.is_(via.call("release", identity=name), True,
          "release through haproxy")
    left = settle([a, b], db, 30)
    t.ok(empty(left), "nothing leaks: containers = live records, ports = "
         "their ports, no pending entry", left)
    ports = [r["ports"][0] for r in live(db).values() if r.get("ports")]
    t.is_(len(ports), len(set(ports)), "no two sandboxes share a port")
    lb.close()
    for s in (a, b):
        s.stop()


def test_max_instances():
    db = 2
    a, b = group(2, db, env={"MAX_SANDBOX_INSTANCES": 3})
    made = [a.call("create", sandbox_type="base"),
            b.call("create", sandbox_type="base"),
            a.call("create", sandbox_type="base")]
    status, _, doc = b.rpc("create", {"sandbox_type": "base"})
    t.is_((status, doc), (200, {"data": None}), "the 4th create across "
          "two instances is refused (data null, as Python does)")
    t.ok("MAX_SANDBOX_INSTANCES (3) reached" in b.log(),
         "with a clear error in the log")
    t.is_(len(containers_of([a, b])), 3, "and no 4th container exists")
    a.call("release", identity=made[0])
    n = b.call("create", sandbox_type="base")
    t.ok(isinstance(n, str), "after a release there is room again")
    for x in made[1:] + [n]:
        a.call("release", identity=x)
    for s in (a, b):
        s.stop()


def test_redis_away():
    r2 = harness.Redis()
    e = r2.env(0)
    e["SANDPOOL_LEASE_TTL"] = LEASE
    e["SANDPOOL_REDIS_TIMEOUT"] = 500
    s = harness.Server(pool_size=1, env=e)
    harness.wait_for(lambda: r2.call("LLEN", POOLKEY + ":base") >= 1, 60)
    r2.stop()
    status, _, doc = s.rpc("get_info", {"identity": "nope"})
    t.is_(status, 503, "Redis away: the API answers 503")
    t.ok("Redis" in json.dumps(doc), "saying that Redis does not answer",
         doc)
    status, _, doc = s.rpc("create_from_pool", {"sandbox_type": "base"})
    t.is_(status, 503, "create_from_pool too")
    t.ok(s.alive(), "the server is still running")
    r2.start()
    ok = harness.wait_for(
        lambda: s.rpc("get_info", {"identity": "nope"})[0] == 500, 20)
    t.ok(ok, "Redis back: the server reconnects (404-style 500 again)")
    name = s.call("create_from_pool", sandbox_type="base")
    r = s.call("call_tool", identity=name, tool_name="run_shell_command",
               arguments={"command": "echo back"})
    t.is_(r["content"][0]["text"], "back\n", "and serves again")
    s.call("release", identity=name)
    t.is_(s.stop(), 0, "and stops cleanly")
    t.is_([cname(c) for c in s.containers()], [],
          "AUTO_CLEANUP removed the sandboxes after the outage")


def pids_of_workers(server):
    """The worker pids of a WORKERS>1 server (children of its pid)."""
    try:
        with open("/proc/%d/task/%d/children" % (server.proc.pid,
                                                   server.proc.pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_workers_crash():
    db = 3
    (s,) = group(1, db, pool_size=6,
                 env={"WORKERS": 2, "SANDPOOL_REFILL_CONCURRENCY": 4})
    workers = harness.wait_for(lambda: len(pids_of_workers(s)) == 2 and
                               pids_of_workers(s), 10)
    t.is_(len(workers or []), 2, "WORKERS=2: two worker processes")
    # Kill one in the middle of refills.
    harness.wait_for(lambda: redis.call("HLEN", "sandpool:pending",
                                        db=db) >= 2, 30, 0.05)
    os.kill(workers[0], signal.SIGKILL)
    back = harness.wait_for(lambda: len(pids_of_workers(s)) == 2 and
                            workers[0] not in pids_of_workers(s), 10)
    t.ok(back, "the supervisor starts another worker")
    harness.wait_for(lambda: redis.call("LLEN", POOLKEY + ":base",
                                        db=db) >= 6, 90)
    left = settle([s], db, 6 * LEASE + 10)
    t.ok(empty(left), "after kill -9 of a worker mid-refill: no orphan "
         "container, no pending entry, no leaked port", left)
    t.diag("worker crash left: %s" % json.dumps(left))
    t.is_(redis.call("LLEN", POOLKEY + ":base", db=db), 6,
          "and the pool is full again, not overfull")
    names = set()
    for _ in range(6):  # claims spread over both workers
        names.add(s.call("create_from_pool", sandbox_type="base"))
    t.is_(len(names), 6, "6 claims got 6 different sandboxes")
    t.is_(s.stop(), 0, "SIGTERM: the supervisor exits 0")
    t.is_([cname(c) for c in s.containers()], [],
          "AUTO_CLEANUP (by the supervisor) removed every sandbox")


def test_instance_crash():
    db = 4
    a, b = group(2, db, pool_size=6,
                 env={"SANDPOOL_REFILL_CONCURRENCY": 4})
    harness.wait_for(lambda: redis.call("HLEN", "sandpool:pending",
                                        db=db) >= 3, 30, 0.05)
    a.kill9()
    t.ok(not a.alive(), "instance A killed with -9 mid-refill")
    harness.wait_for(lambda: redis.call("LLEN", POOLKEY + ":base",
                                        db=db) >= 6, 90)
    left = settle([a, b], db, 6 * LEASE + 10)
    t.ok(empty(left), "instance B reaped A's reservations, ports and "
         "half-made containers", left)
    t.diag("instance crash left: %s" % json.dumps(left))
    t.is_(redis.call("LLEN", POOLKEY + ":base", db=db), 6,
          "the shared pool is full (B refilled A's share)")
    b.stop()


def test_flush():
    db = 5
    (s,) = group(1, db, pool_size=2)
    harness.wait_for(lambda: redis.call("LLEN", POOLKEY + ":base",
                                        db=db) >= 2, 60)
    a = s.call("create_from_pool", sandbox_type="base",
               meta={"session_ctx_id": "flush"})
    harness.wait_for(lambda: redis.call("LLEN", POOLKEY + ":base",
                                        db=db) >= 2, 60)
    time.sleep(1)
    redis.call("FLUSHDB", db=db)
    t.is_(redis.call("DBSIZE", db=db), 0,
          "Redis flushed (FLUSHDB) under a running instance")
    ok = harness.wait_for(
        lambda: s.rpc("get_info", {"identity": a})[0] == 200, 6 * LEASE)
    t.ok(ok, "the claimed sandbox's record is rebuilt from its container")
    r = s.call("call_tool", identity=a, tool_name="run_shell_command",
               arguments={"command": "echo alive"})
    t.is_(r["content"][0]["text"], "alive\n", "and it still works by name")
    left = settle([s], db, 8 * LEASE + 10)
    t.ok(empty(left), "state rebuilt: every container has a live record, "
         "every port lease a holder, no pending entry", left)
    t.diag("flush left: %s" % json.dumps(left))
    t.is_(redis.call("LLEN", POOLKEY + ":base", db=db), 2,
          "the pool holds POOL_SIZE again")
    pool = [json.loads(x)["container_name"] for x in
            redis.call("LRANGE", POOLKEY + ":base", 0, -1, db=db)]
    t.ok(a not in pool, "the claimed sandbox is never put back in the "
         "pool", pool)
    names = {s.call("create_from_pool", sandbox_type="base")
             for _ in range(2)}
    t.ok(a not in names and len(names) == 2, "claims after the flush get "
         "other sandboxes")
    for n in names | {a}:
        s.call("release", identity=n)
    t.is_(s.stop(), 0, "stops cleanly")
    t.is_([cname(c) for c in s.containers()], [], "nothing left behind")


def test_acl_noscript():
    db = 6
    redis.call("ACL", "SETUSER", "sp-test", "on", ">sp-secret", "~*", "&*",
               "+@all")
    e = {"REDIS_USER": "sp-test", "REDIS_PASSWORD": "sp-secret",
         "SANDPOOL_LEASE_TTL": LEASE}
    e.update(redis.env(db))
    s = harness.Server(env=e)
    harness.wait_for(lambda: s.rpc("get_info", {"identity": "x"})[0] == 500,
                     10)
    n = s.call("create", sandbox_type="base")
    t.ok(isinstance(n, str), "an ACL user with REDIS_USER/REDIS_PASSWORD "
         "works (db %d)" % db)
    t.ok(redis.call("EXISTS", n, db=db) == 1, "the record is in REDIS_DB")
    t.ok("sp-secret" not in s.log(), "the password is never logged")
    redis.call("SCRIPT", "FLUSH")
    t.is_(s.call("release", identity=n), True,
          "after SCRIPT FLUSH the scripts are sent again (NOSCRIPT)")
    s.stop()
    e["REDIS_PASSWORD"] = "wrong"
    w = harness.Server(env=e)
    st, _, doc = w.rpc("create_from_pool", {"sandbox_type": "base"})
    t.is_(st, 503, "a wrong password: 503")
    t.ok("WRONGPASS" in json.dumps(doc) or "AUTH" in json.dumps(doc),
         "saying why (AUTH failed)", doc)
    w.stop()


t.run("workers need redis", test_workers_need_redis)
t.run("workers: start-up checks", test_workers_start_checks)
t.run("two instances behind haproxy", test_two_instances_lb)
t.run("max instances", test_max_instances)
t.run("redis away", test_redis_away)
t.run("worker crash", test_workers_crash)
t.run("instance crash", test_instance_crash)
t.run("redis flushed", test_flush)
t.run("acl and noscript", test_acl_noscript)
sys.exit(t.done())
