"""Session lifecycle of spec 3.7, the same checks against both stores
(memory and a private redis-server): touch heartbeats the session; the
watcher reaps a session idle longer than HEARTBEAT_TIMEOUT (container and
port gone, record recycled, workspace kept); the next touch restores it on
the same workspace and the old identity redirects; pool sandboxes are never
reaped; release through the old identity; released and replaced records
are collected after RELEASED_KEY_TTL; WATCHER_SCAN_INTERVAL=0 reaps
nothing; redirect loops are reported; the Redis watcher finds its work through
its indexes, and sweeps what they lack a batch a pass. Workspaces: a restore refused at
MAX_SANDBOX_INSTANCES leaves the reaped session's workspace, and a
requested mount_dir (ALLOW_MOUNT_DIR) is reaped, restored on and released
without ever being removed."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=400)
docker = harness.skip_unless_docker()
TIMEOUT = 3  # HEARTBEAT_TIMEOUT
redis = harness.Redis()


def shell(s, name, cmd):
    r = s.call("call_tool", identity=name, tool_name="run_shell_command",
               arguments={"command": cmd})
    return r["content"][0]["text"]


def server(store, db, extra=None):
    env = {"HEARTBEAT_TIMEOUT": TIMEOUT, "WATCHER_SCAN_INTERVAL": 1,
           "RELEASED_KEY_TTL": 4, "SANDPOOL_LEASE_TTL": 2}
    if store == "redis":
        env.update(redis.env(db))
    env.update(extra or {})
    return harness.Server(pool_size=1, env=env)


def info(s, name):
    st, _, doc = s.rpc("get_info", {"identity": name})
    return doc["data"] if st == 200 else None


def lifecycle(store, db):
    s = server(store, db)
    tag = "[%s] " % store
    harness.wait_for(lambda: len(s.containers(running_only=True)) >= 1, 60)
    a = s.call("create_from_pool", sandbox_type="base",
               meta={"session_ctx_id": "lc-" + store})
    t.is_(shell(s, a, "echo kept > /workspace/f && echo ok"), "ok\n",
          tag + "a file is written to the workspace")
    i1 = info(s, a)
    time.sleep(1.2)
    shell(s, a, "true")
    i2 = info(s, a)
    t.ok(i2["last_active_at"] > i1["last_active_at"],
         tag + "call_tool refreshes last_active_at", (i1, i2))
    ws = i2["mount_dir"]
    port = i2["ports"][0] if i2["ports"] else None
    cid = i2["container_id"]
    ok = harness.wait_for(lambda: (info(s, a) or {}).get("state") ==
                          "recycled", TIMEOUT + 10, 0.3)
    rec = info(s, a)
    t.ok(ok, tag + "idle longer than HEARTBEAT_TIMEOUT: recycled", rec)
    t.is_(rec and rec.get("recycle_reason"), "heartbeat_timeout",
          tag + "recycle_reason heartbeat_timeout")
    t.ok(harness.wait_for(lambda: docker.inspect(cid) is None, 10),
         tag + "its container is removed")
    t.ok(os.path.isfile(os.path.join(ws, "f")),
         tag + "its workspace is kept")
    warm = [c for c in s.containers(running_only=True)]
    t.is_(len(warm), 1, tag + "the warm pool sandbox is not reaped")
    if store == "redis" and port:
        t.ok(redis.call("SISMEMBER", harness_portkey(), port, db=db) == 0,
             tag + "its port lease is freed")
    # The next touch restores it, on the same workspace.
    t.is_(shell(s, a, "cat /workspace/f"), "kept\n",
          tag + "call_tool on the old id restores it with the workspace")
    new = info(s, a)
    t.ok(new and new["container_name"] != a and new["state"] == "running",
         tag + "get_info of the old id follows the redirect", new)
    b = new["container_name"]
    t.is_(new["mount_dir"], ws, tag + "the new sandbox has the same "
          "workspace dir")
    t.is_(s.call("get_session_mapping", session_ctx_id="lc-" + store),
          [b], tag + "the session now maps to the new sandbox")
    t.is_(s.call("release", identity=a), True,
          tag + "release through the old id")
    t.ok(harness.wait_for(lambda: docker.inspect(b) is None, 10),
         tag + "releases the new sandbox")
    t.ok(not os.path.exists(ws), tag + "and then the workspace goes")
    t.ok(harness.wait_for(lambda: info(s, b) is None and
                          info(s, a) is None, 15, 0.5),
         tag + "released and replaced records are collected after "
         "RELEASED_KEY_TTL")
    s.stop()


def workspaces(store, db):
    root = harness.mkdtemp("sproot")
    mine = os.path.join(root, "ws")
    os.mkdir(mine)
    s = server(store, db, {"POOL_SIZE": 0, "MAX_SANDBOX_INSTANCES": 2,
                           "ALLOW_MOUNT_DIR": "true",
                           "SANDPOOL_MOUNT_DIR_ROOTS": root})
    tag = "[%s] " % store
    a = s.call("create", sandbox_type="base",
               meta={"session_ctx_id": "wa-" + store})
    m = s.call("create", sandbox_type="base", mount_dir=mine,
               meta={"session_ctx_id": "wm-" + store})
    shell(s, a, "echo a > /workspace/f")
    shell(s, m, "echo m > /workspace/f")
    ws = info(s, a)["mount_dir"]
    t.is_(info(s, m)["mount_dir"], mine, tag + "mount_dir is the workspace")
    ok = harness.wait_for(lambda: all((info(s, x) or {}).get("state") ==
                                      "recycled" for x in (a, m)),
                          TIMEOUT + 10, 0.3)
    t.ok(ok and os.path.isfile(os.path.join(mine, "f")),
         tag + "reaped: a requested mount_dir is kept")
    # Both slots of MAX_SANDBOX_INSTANCES taken: the restores fail.
    others = [s.call("create", sandbox_type="base") for _ in range(2)]
    for x, d in ((a, ws), (m, mine)):
        st, _, doc = s.rpc("call_tool", {
            "identity": x, "tool_name": "run_shell_command",
            "arguments": {"command": "true"}})
        t.ok(st != 200 and os.path.isfile(os.path.join(d, "f")),
             tag + "a restore refused at MAX_SANDBOX_INSTANCES leaves the "
             "workspace (%s)" % ("requested" if x == m else "default"),
             (st, doc))
    for x in others:
        s.call("release", identity=x)
    t.is_(shell(s, a, "cat /workspace/f"), "a\n",
          tag + "then a restore brings the default workspace back")
    t.is_(shell(s, m, "cat /workspace/f"), "m\n",
          tag + "and the requested one")
    t.is_((info(s, m) or {}).get("mount_dir"), mine,
          tag + "the restored sandbox's workspace is the requested dir")
    s.call("release", identity=a)
    s.call("release", identity=m)
    t.ok(not os.path.exists(ws) and os.path.isfile(os.path.join(mine, "f")),
         tag + "release removes the default workspace, never a requested "
         "one")
    s.stop()


def harness_portkey():
    return "_runtime_sandbox_container_occupied_ports"


def no_watcher(store, db):
    s = server(store, db, {"WATCHER_SCAN_INTERVAL": 0, "POOL_SIZE": 0})
    tag = "[%s] " % store
    a = s.call("create", sandbox_type="base",
               meta={"session_ctx_id": "nw-" + store})
    shell(s, a, "true")
    time.sleep(TIMEOUT + 2.5)
    t.is_((info(s, a) or {}).get("state"), "running",
          tag + "WATCHER_SCAN_INTERVAL=0: nothing is reaped")
    s.call("release", identity=a)
    s.stop()


def redirect_loop(db):
    s = server("redis", db, {"POOL_SIZE": 0})
    x = harness.PREFIX + "a" * 25
    y = harness.PREFIX + "b" * 25
    for n, to in ((x, y), (y, x)):
        redis.call("SET", n, json.dumps({
            "container_name": n, "session_id": n[-25:], "state": "replaced",
            "redirect_to": to, "meta": {}, "ports": [], "url": ""}), db=db)
    st, _, doc = s.rpc("get_info", {"identity": x})
    t.ok(st == 500 and "Redirect loop" in json.dumps(doc),
         "[redis] a redirect loop is detected", (st, doc))
    s.stop()


def watcher_index(db):
    """The Redis watcher finds idle sessions and dead records through the
    indexes that PUT keeps, and sweeps the rest of Redis a batch a pass
    for entries written by hand or by another server."""
    old = time.time() - 1000
    n_released, n_sessions = 300, 300
    for i in range(n_released):
        n = "%sgc%023d" % (harness.PREFIX, i)
        redis.call("SET", n, json.dumps({
            "container_name": n, "session_id": n[-25:], "state": "released",
            "released_at": old, "meta": {}, "ports": [], "url": ""}), db=db)
        redis.call("SADD", "sandpool:records", n, db=db)
    for i in range(n_sessions):
        # Sessions whose sandboxes are gone: never idle, never reaped.
        redis.call("SET", "session_mapping:decoy-%d" % i,
                   json.dumps([harness.PREFIX + "gone%021d" % i]), db=db)
        redis.call("SADD", "sandpool:sessions", "decoy-%d" % i, db=db)
    # A running sandbox of another server, idle for long: not indexed.
    f = harness.PREFIX + "f" * 25
    redis.call("SET", f, json.dumps({
        "container_name": f, "session_id": "f" * 25, "state": "running",
        "session_ctx_id": "foreign", "last_active_at": old,
        "container_id": "0" * 64, "meta": {}, "ports": [], "url": ""}),
        db=db)
    redis.call("SADD", "sandpool:records", f, db=db)
    redis.call("SET", "session_mapping:foreign", json.dumps([f]), db=db)
    redis.call("SADD", "sandpool:sessions", "foreign", db=db)
    s = server("redis", db, {"POOL_SIZE": 0})
    a = s.call("create", sandbox_type="base",
               meta={"session_ctx_id": "scan-redis"})
    shell(s, a, "true")
    hb = redis.call("ZSCORE", "sandpool:heartbeats", "scan-redis", db=db)
    t.ok(hb is not None and abs(float(hb) - info(s, a)["last_active_at"])
         < 0.01, "[redis] a touch indexes the session's heartbeat", hb)
    ok = harness.wait_for(lambda: (info(s, a) or {}).get("state") ==
                          "recycled", TIMEOUT + 15, 0.3)
    t.ok(ok, "[redis] the idle session among %d is found and reaped"
         % (n_sessions + 2), info(s, a))
    ok = harness.wait_for(lambda: (info(s, f) or {}).get("state") ==
                          "recycled", 30, 0.3)
    t.ok(ok, "[redis] so is an idle session the index lacks (the sweep)",
         info(s, f))
    t.ok(harness.wait_for(lambda: redis.call(
        "ZSCORE", "sandpool:heartbeats", "scan-redis", db=db) is None, 10),
        "[redis] a reaped session leaves the heartbeat index at the next "
        "pass")

    def left():
        return sum(redis.call("EXISTS", "%sgc%023d" % (harness.PREFIX, i),
                              db=db) for i in range(0, n_released, 7))
    t.ok(harness.wait_for(lambda: left() == 0, 60, 0.5),
         "[redis] %d released records the index lacks are all collected "
         "by the sweep" % n_released, left())
    t.is_(redis.call("SCARD", "sandpool:sessions", db=db), n_sessions + 2,
          "[redis] the other sessions are left alone")
    t.is_(s.call("release", identity=a), True, "[redis] release")
    new = (info(s, a) or {}).get("container_name")
    st = redis.call("ZSCORE", "sandpool:dead", new or a, db=db)
    t.ok(st is not None, "[redis] a released record is in the collect "
         "index", (new, st))
    t.ok(harness.wait_for(lambda: redis.call("ZCARD", "sandpool:dead",
                                             db=db) == 0, 20, 0.5),
         "[redis] and collected from it after RELEASED_KEY_TTL")
    s.stop()


for i, store in enumerate(("memory", "redis")):
    t.run("lifecycle " + store, lifecycle, store, 5 + i)
    t.run("no watcher " + store, no_watcher, store, 7 + i)
    t.run("workspaces " + store, workspaces, store, 10 + i)
t.run("redirect loop", redirect_loop, 9)
t.run("watcher index", watcher_index, 12)
sys.exit(t.done())
