"""The benchmark tools work (no timings are checked anywhere): bench_load
counts requests, answers and failures right, over TCP and over a unix
socket, numbers requests with -s and checks answers with -e;
SANDPOOL_BENCH_RECORDS preloads claimable synthetic records without
creating containers, on the memory store and on Redis, and a bad value
stops the server with a clear error."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LOAD = os.path.join(harness.BUILDDIR, "tests", "bench", "bench_load")

t = harness.Tap(watchdog=120)


def load(*args):
    """Runs bench_load; returns (exit status, its JSON summary or None,
    stdout + stderr)."""
    p = subprocess.run([LOAD] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        summary = None
    return p.returncode, summary, p.stdout + p.stderr


def agent_over_unix():
    """bench_load -u against a sandpool-agent run on the host."""
    tmp = harness.mkdtemp("spb")
    sock = os.path.join(tmp, "agent.sock")
    env = dict(os.environ, SECRET_TOKEN="bench-token",
               SANDPOOL_AGENT_PORT="0", SANDPOOL_AGENT_SOCKET=sock,
               SANDPOOL_AGENT_WORKDIR=tmp)
    p = subprocess.Popen([harness.AGENT_BIN], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        harness.wait_for(lambda: os.path.exists(sock), 10, 0.02)
        rc, s, out = load("-c", "2", "-n", "20", "-u", sock,
                          "-H", "Authorization: Bearer bench-token",
                          "/fastapi/healthz")
        t.ok(rc == 0 and s is not None and s["ok"] == 20 and
             s["samples"] == 20 and s["errors"] == 0,
             "over a unix socket: 20 requests, 20 answers", out)
        rc, s, out = load("-n", "5", "-u", sock, "-m", "POST",
                          "-H", "Authorization: Bearer bench-token",
                          "-b", '{"command":"true"}',
                          "/fastapi/tools/run_shell_command")
        t.ok(rc == 0 and s is not None and s["ok"] == 5,
             "a POST body reaches the agent (run_shell_command)", out)
        rc, s, out = load("-n", "3", "-u", sock, "/fastapi/healthz")
        t.ok(rc == 2 and s is not None and s["non2xx"] == 3 and
             s["ok"] == 0, "answers other than 2xx are counted, exit 2",
             out)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tcp_and_records():
    """bench_load over TCP; synthetic records."""
    os.environ["SANDPOOL_BENCH_RECORDS"] = "4"
    try:
        srv = harness.Server(pool_size=1)
    finally:
        del os.environ["SANDPOOL_BENCH_RECORDS"]
    url = "http://127.0.0.1:%d" % srv.port
    auth = "Authorization: Bearer " + srv.token

    rc, s, out = load("-c", "4", "-n", "100", url + "/health")
    t.ok(rc == 0 and s is not None and s["ok"] == 100 and
         s["samples"] == 100 and s["rps"] > 0 and
         s["p50_us"] <= s["p99_us"] <= s["max_us"],
         "100 requests over 4 connections: 100 answers, sane figures", out)
    rc, s, out = load("-d", "0.3", url + "/health")
    t.ok(rc == 0 and s is not None and s["ok"] > 0 and s["seconds"] > 0,
         "a duration run ends and reports", out)

    body = '{"sandbox_type":"base","meta":{"session_ctx_id":"b########"}}'
    rc, s, out = load("-c", "3", "-n", "3", "-s", "-m", "POST", "-H", auth,
                      "-b", body, url + "/create_from_pool")
    t.ok(rc == 0 and s is not None and s["ok"] == 3,
         "three claims answered", out)
    keys = sorted(srv.call("list_session_keys"))
    t.is_(keys, ["b00000000", "b00000001", "b00000002"],
          "-s numbers each request's body")
    names = [n for k in keys for n in srv.call("get_session_mapping",
                                               session_ctx_id=k)]
    infos = [srv.call("get_info", identity=n) for n in names]
    t.ok(len(set(names)) == 3 and
         all(i["state"] == "running" and i["container_id"] and
             i["runtime_token"] for i in infos),
         "synthetic records are claimed like warm sandboxes",
         json.dumps(infos)[:2000])
    time.sleep(0.3)
    t.is_(srv.containers(), [],
          "no container is made while the records fill the pool")
    t.ok("synthetic warm records" in srv.log(),
         "the server logs that it runs with synthetic records")
    t.ok("bench: synthetic records stored" in srv.log(),
         "and that they are all stored")
    rc, s, out = load("-n", "3", "-e", "no such text", url + "/health")
    t.ok(rc == 2 and s is not None and s["unexpected"] == 3 and
         s["ok"] == 0, "-e: 2xx answers without the text are unexpected, "
         "exit 2", out)
    rc, s, out = load("-n", "3", "-e", "{", url + "/health")
    t.ok(rc == 0 and s is not None and s["ok"] == 3 and
         s["unexpected"] == 0, "-e: answers with the text are counted", out)
    rc, s, out = load("-n", "2", "-m", "POST", "-b", "{}",
                      url + "/get_info")
    t.ok(rc == 2 and s is not None and s["non2xx"] == 2,
         "a 401 is not counted as an answer", out)
    srv.close()


def redis_records():
    """With the Redis store the records are stored once the connection is
    up, before any request reaches the pool, and claims hand them out."""
    r = harness.Redis()
    os.environ["SANDPOOL_BENCH_RECORDS"] = "4"
    try:
        srv = harness.Server(pool_size=1, env=r.env(3))
    finally:
        del os.environ["SANDPOOL_BENCH_RECORDS"]
    try:
        t.ok(harness.wait_for(
            lambda: "bench: synthetic records stored" in srv.log(), 20),
            "[redis] the synthetic records are stored", srv.log())
        body = '{"sandbox_type":"base","meta":{"session_ctx_id":"r########"}}'
        rc, s, out = load("-c", "2", "-n", "3", "-s", "-e", '"data":"',
                          "-m", "POST", "-H",
                          "Authorization: Bearer " + srv.token, "-b", body,
                          "http://127.0.0.1:%d/create_from_pool" % srv.port)
        t.ok(rc == 0 and s is not None and s["ok"] == 3,
             "[redis] three claims answer a sandbox each", out)
        t.is_(srv.containers(), [], "[redis] and no container is made")
    finally:
        srv.close()
        r.close()


def bad_records():
    os.environ["SANDPOOL_BENCH_RECORDS"] = "many"
    try:
        srv = harness.Server(pool_size=0, start=False)
        try:
            srv.start(timeout=15)
            started = True
        except RuntimeError:
            started = False
    finally:
        del os.environ["SANDPOOL_BENCH_RECORDS"]
    t.ok(not started and srv.proc.returncode == 1 and
         "SANDPOOL_BENCH_RECORDS=many" in srv.log(),
         "a bad SANDPOOL_BENCH_RECORDS stops the server, saying why",
         srv.log())
    srv.close()


harness.skip_unless_docker()
rc, s, out = load("-n", "1", "http://127.0.0.1:%d/health" % harness.free_port())
t.ok(rc == 1 and "giving up" in out,
     "a target that refuses connections ends the run (exit 1)", out)
t.run("agent over a unix socket", agent_over_unix)
t.run("server over TCP, synthetic records", tcp_and_records)
t.run("synthetic records on Redis", redis_records)
t.run("bad SANDPOOL_BENCH_RECORDS", bad_records)
sys.exit(t.done())
