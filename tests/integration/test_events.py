"""Containers killed from outside, noticed through dockerd's event stream,
against both stores: a warm pool sandbox killed with `docker kill` gets its
record marked (state error, recycle_reason container_died), leaves the pool,
frees its port, is removed, and the pool is refilled; a session's sandbox
killed the same way is marked recycled and restored on the next call, on
the same workspace."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=300)
docker = harness.skip_unless_docker()
redis = harness.Redis()
PORTKEY = "_runtime_sandbox_container_occupied_ports"


def info(s, name):
    st, _, doc = s.rpc("get_info", {"identity": name})
    return doc["data"] if st == 200 else None


def warm(s):
    out = []
    for c in s.containers(running_only=True):
        i = info(s, c["Names"][0].lstrip("/"))
        if i and i["state"] == "warm":
            out.append(i)
    return out


def kill(cid):
    st, body = docker.request("POST", "%s/containers/%s/kill"
                              % (harness.API, cid))
    return st == 204


def run(store, db):
    tag = "[%s] " % store
    env = {"SANDPOOL_LEASE_TTL": 2}
    if store == "redis":
        env.update(redis.env(db))
    s = harness.Server(pool_size=2, env=env)
    harness.wait_for(lambda: len(warm(s)) >= 2, 60)
    victim = warm(s)[0]
    t.ok(kill(victim["container_id"]), tag + "docker kill of a warm "
         "pool sandbox from outside")
    ok = harness.wait_for(lambda: (info(s, victim["container_name"]) or {})
                          .get("state") == "error", 10, 0.2)
    rec = info(s, victim["container_name"])
    t.ok(ok, tag + "its record is marked error", rec)
    t.is_(rec and rec.get("recycle_reason"), "container_died",
          tag + "with recycle_reason container_died")
    t.ok(harness.wait_for(lambda: docker.inspect(victim["container_id"])
                          is None, 10), tag + "the dead container is removed")
    if store == "redis" and victim["ports"]:
        t.is_(redis.call("SISMEMBER", PORTKEY, victim["ports"][0], db=db),
              0, tag + "its port lease is freed")
    t.ok(harness.wait_for(lambda: len(warm(s)) == 2, 60),
         tag + "the pool is refilled to POOL_SIZE")
    names = set()
    for _ in range(2):
        names.add(s.call("create_from_pool", sandbox_type="base"))
    t.ok(victim["container_name"] not in names,
         tag + "the dead sandbox is never handed out")
    for n in names:
        s.call("release", identity=n)

    # A session's sandbox dies: recycled, restored on the next call.
    a = s.call("create_from_pool", sandbox_type="base",
               meta={"session_ctx_id": "ev-" + store})
    s.call("call_tool", identity=a, tool_name="run_shell_command",
           arguments={"command": "echo still > /workspace/g"})
    ia = info(s, a)
    kill(ia["container_id"])
    ok = harness.wait_for(lambda: (info(s, a) or {}).get("state") ==
                          "recycled", 10, 0.2)
    t.ok(ok, tag + "a session's sandbox killed from outside is recycled",
         info(s, a))
    r = s.call("call_tool", identity=a, tool_name="run_shell_command",
               arguments={"command": "cat /workspace/g"})
    t.is_(r["content"][0]["text"], "still\n",
          tag + "and restored by the next call, workspace kept")
    s.call("release", identity=a)
    t.is_(s.stop(), 0, tag + "stops cleanly")


for i, store in enumerate(("memory", "redis")):
    t.run("events " + store, run, store, 10 + i)
sys.exit(t.done())
