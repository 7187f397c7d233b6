"""Server lifecycle against the real dockerd (spec 3.9, ARCHITECTURE
"State"): SIGTERM with AUTO_CLEANUP removes everything the instance owns
and exits 0; AUTO_CLEANUP=false leaves the containers; after kill -9, a new
server of the same instance removes the leftovers (containers, workspace
dirs, ports) at start-up and then works normally."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=420)
docker = harness.skip_unless_docker()


def cname(c):
    return c["Names"][0].lstrip("/")


def claim(s, session):
    """Waits for the warm container, then claims a sandbox for session."""
    harness.wait_for(lambda: len(s.containers(running_only=True)) >= 1, 60)
    name = s.call("create_from_pool", sandbox_type="base",
                  meta={"session_ctx_id": session})
    if not isinstance(name, str):
        raise RuntimeError("create_from_pool gave %r" % (name,))
    return name


def workspaces(s):
    """The per-sandbox directories under DEFAULT_MOUNT_DIR."""
    try:
        return sorted(os.listdir(s.mount_dir))
    except OSError:
        return []


def test_auto_cleanup():
    s = harness.Server(pool_size=1)
    name = claim(s, "lc-cleanup")
    harness.wait_for(lambda: len(s.containers(running_only=True)) >= 2, 60)
    t.ok(len(s.containers()) >= 2, "before SIGTERM: claimed + warm "
         "containers exist", [cname(c) for c in s.containers()])
    t0 = time.monotonic()
    status = s.stop(signal.SIGTERM, timeout=15)
    t.is_(status, 0, "SIGTERM: exits 0 within 15 s")
    t.diag("stopped in %.1f s" % (time.monotonic() - t0))
    left = [cname(c) for c in s.containers()]
    t.is_(left, [], "AUTO_CLEANUP: no container of the instance remains")
    t.is_(workspaces(s), [], "AUTO_CLEANUP: no workspace dir remains")
    t.ok(name not in left, "the claimed sandbox is gone too")


def test_no_auto_cleanup():
    s = harness.Server(pool_size=1, env={"AUTO_CLEANUP": "false"})
    name = claim(s, "lc-keep")
    status = s.stop(signal.SIGTERM, timeout=15)
    t.is_(status, 0, "AUTO_CLEANUP=false, SIGTERM: exits 0 within 15 s")
    left = {cname(c) for c in s.containers(running_only=True)}
    t.ok(name in left, "AUTO_CLEANUP=false: the claimed container is kept",
         sorted(left))
    for c in s.containers():
        docker.remove(c["Id"])
    t.is_([cname(c) for c in s.containers()], [], "the test removed them")


def test_crash_recovery():
    s1 = harness.Server(pool_size=1)
    name = claim(s1, "lc-crash")
    harness.wait_for(lambda: len(s1.containers(running_only=True)) >= 2, 60)
    info = s1.call("get_info", identity=name)
    data = s1.call("call_tool", identity=name, tool_name="run_shell_command",
                   arguments={"command": "echo keep > f.txt"})
    t.ok(isinstance(data, dict) and data.get("isError") is False,
         "wrote into the workspace before the crash", data)
    before = s1.containers()
    ports = [int(c["Labels"].get("sandpool.port", "0")) for c in before]
    dirs = workspaces(s1)
    s1.kill9()
    t.ok(len(before) >= 2 and
         len(s1.containers(running_only=True)) == len(before),
         "after kill -9 the containers are still there",
         [cname(c) for c in before])
    t.ok(info["session_id"] in dirs, "and so is the workspace dir", dirs)

    s2 = harness.Server(like=s1)
    old = {c["Id"] for c in before}
    t.ok(harness.wait_for(
        lambda: not old & {c["Id"] for c in s2.containers()}, 30),
        "the new server removed the leftover containers",
        sorted(cname(c) for c in s2.containers() if c["Id"] in old))
    t.ok(harness.wait_for(lambda: not set(dirs) & set(workspaces(s2)), 15),
         "and their workspace dirs", workspaces(s2))
    def ports_back():
        """Each leftover port is free, or leased again by the new server."""
        reused = {int(c["Labels"].get("sandpool.port", "0"))
                  for c in s2.containers() if c["Id"] not in old}
        return all(p in reused or harness.port_is_free(p)
                   for p in ports if p)
    t.ok(harness.wait_for(ports_back, 15),
         "and their host ports are free (or leased anew)", ports)
    status, _, doc = s2.rpc("get_info", {"identity": name})
    t.is_(status, 500, "the lost sandbox is unknown to the new server")

    harness.wait_for(lambda: len(s2.containers(running_only=True)) >= 1, 60)
    fresh = s2.containers(running_only=True)
    t.ok(len(fresh) == 1 and fresh[0]["Id"] not in old,
         "the new server warmed a new pool container",
         [cname(c) for c in fresh])
    name2 = claim(s2, "lc-after")
    data = s2.call("call_tool", identity=name2, tool_name="run_shell_command",
                   arguments={"command": "echo alive"})
    t.is_((data.get("content") or [{}])[0].get("text"), "alive\n",
          "the new server works normally")
    t.is_(s2.call("release", identity=name2), True, "release works")
    t.is_(s2.stop(), 0, "the new server stops with status 0")
    t.is_([cname(c) for c in s2.containers()], [],
          "and leaves nothing behind")


t.run("AUTO_CLEANUP", test_auto_cleanup)
t.run("AUTO_CLEANUP=false", test_no_auto_cleanup)
t.run("kill -9 and restart", test_crash_recovery)
sys.exit(t.done())
