#!/usr/bin/env python3
"""bench_raw: what sandpool does, done by hand against the raw Engine API.

The baselines of sandpool's benchmarks (tests/bench/run):
  * a cold sandbox the raw way: POST /containers/create, POST .../start,
    then GET /fastapi/healthz on the agent's unix socket until it answers
    200, then one tool call, with the container built exactly as
    pool/pool.c pool_op_create builds it (same image, entrypoint, env,
    binds, labels but for the owner, published port, log config);
  * the best parallel create+start(+healthz 200) rate at a given
    concurrency, one keep-alive engine connection per worker thread;
  * docker exec of a command through the Engine API (exec create, exec
    start read to EOF, exec inspect).

Every container is named sandpool-bench-<run>-<n> and labelled
sandpool.owner=sandpool-bench and sandpool.bench-run=<run>; all of them are
removed on every way out (normal exit, exception, SIGINT/SIGTERM/SIGHUP).

Standalone use, from the build tree after `make`:
    python3 tests/bench/bench_raw.py [--cold 10] [--rate 16]
        [--concurrency 1,2,4,8]
"""

import argparse
import atexit
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

OWNER = "sandpool-bench"
RUN_ID = "%d-%s" % (os.getpid(), secrets.token_hex(3))
AGENT_PATH = "/sandpool/agent"  # pool.c POOL_AGENT_PATH
AGENT_DIR = "/run/sandpool"  # POOL_AGENT_DIR
AGENT_SOCK = "agent.sock"  # POOL_AGENT_SOCK
RUNTIME_PORT = 80  # busybox-types.json "base"
API = harness.API


class Engine:
    """One keep-alive connection to dockerd (one per thread)."""

    def __init__(self, path=None):
        self.path = path or harness.docker_socket_path()
        self.conn = None

    def request(self, method, path, body=None):
        """Returns (status, decoded JSON or bytes); reconnects once when a
        kept-alive connection was closed."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = harness.UnixHTTPConnection(self.path)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        if raw and "json" in (r.getheader("Content-Type") or ""):
            return r.status, json.loads(raw)
        return r.status, raw

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Failed(Exception):
    """An engine or runtime call answered something unexpected."""


class PortTaken(Failed):
    """The engine could not publish the sandbox's host port: something
    else took it since the window was chosen."""


def _check(what, status, body, ok=(200, 201, 204)):
    if status not in ok:
        raise Failed("%s: HTTP %s: %r" % (what, status, body))
    return body


# ---------------------------------------------------------------- sandboxes

class Sandbox:
    """One raw sandbox: its names, directories, token and port."""

    _n = 0
    _lock = threading.Lock()

    def __init__(self, ctx):
        with Sandbox._lock:
            Sandbox._n += 1
            n = Sandbox._n
        self.ctx = ctx
        self.name = "sandpool-bench-%s-%d" % (RUN_ID, n)
        self.session_id = secrets.token_hex(13)[:25]
        self.token = secrets.token_hex(16)
        self.port = ctx.lease_port()
        self.run_dir = os.path.join(ctx.run_root, self.session_id)
        self.mount_dir = os.path.join(ctx.mount_root, self.session_id)
        self.sock = os.path.join(self.run_dir, AGENT_SOCK)
        self.id = None
        self.port_lost = False

    def spec(self):
        """The create body, as pool_op_create and docker_create_body make
        it for the busybox "base" type."""
        port = "%d/tcp" % RUNTIME_PORT
        return {
            "Image": harness.TEST_IMAGE,
            "Entrypoint": [AGENT_PATH],
            "Cmd": [],
            "Env": ["SECRET_TOKEN=" + self.token,
                    "NGINX_TIMEOUT=60",
                    "SANDPOOL_AGENT_PORT=%d" % RUNTIME_PORT,
                    "SANDPOOL_AGENT_SOCKET=%s/%s" % (AGENT_DIR, AGENT_SOCK)],
            "Labels": {"sandpool.owner": OWNER,
                       "sandpool.bench-run": RUN_ID,
                       "sandpool.type": "base",
                       "sandpool.name": self.name,
                       "sandpool.session_id": self.session_id,
                       "sandpool.port": str(self.port)},
            "WorkingDir": "/workspace",
            "ExposedPorts": {port: {}},
            "HostConfig": {
                "PortBindings": {port: [{"HostIp": "127.0.0.1",
                                         "HostPort": str(self.port)}]},
                "Binds": ["%s:%s:ro" % (harness.AGENT_BIN, AGENT_PATH),
                          "%s:%s:rw" % (self.run_dir, AGENT_DIR),
                          "%s:/workspace:rw" % self.mount_dir],
                "NetworkMode": "bridge",
                "RestartPolicy": {"Name": "no"},
                "LogConfig": {"Type": "json-file",
                              "Config": {"max-size": "1m",
                                         "max-file": "1"}},
            },
        }

    def create(self, eng):
        os.mkdir(self.run_dir, 0o700)
        os.makedirs(self.mount_dir, 0o755, exist_ok=True)
        st, body = eng.request("POST", "%s/containers/create?name=%s"
                               % (API, self.name), self.spec())
        self.id = _check("create", st, body)["Id"]

    def start(self, eng):
        st, body = eng.request("POST", "%s/containers/%s/start"
                               % (API, self.id))
        msg = str(body.get("message", "")) if isinstance(body, dict) else ""
        if st == 500 and ("already in use" in msg or
                          "already allocated" in msg):
            raise PortTaken("start: port %d: %s" % (self.port, msg))
        _check("start", st, body)

    def runtime(self, method, path, body=None, timeout=10):
        """One call to the agent over its unix socket (a new connection,
        as a first probe must be); returns (status, body bytes)."""
        c = harness.UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            headers = {"Authorization": "Bearer " + self.token}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, timeout=60, interval=0.001):
        """Polls GET /fastapi/healthz until 200; returns the probes made."""
        deadline = time.monotonic() + timeout
        probes = 0
        while True:
            probes += 1
            try:
                st, _ = self.runtime("GET", "/fastapi/healthz")
                if st == 200:
                    return probes
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Failed("%s: runtime not healthy within %d s"
                             % (self.name, timeout))
            time.sleep(interval)

    def call_true(self):
        """run_shell_command "true"; checks the answer."""
        st, raw = self.runtime("POST", "/fastapi/tools/run_shell_command",
                               {"command": "true"})
        if st != 200 or b'"isError":false' not in raw.replace(b" ", b""):
            raise Failed("tool call: HTTP %s: %r" % (st, raw[:200]))

    def remove(self, eng):
        if self.id is not None:
            st, body = eng.request("DELETE", "%s/containers/%s?force=1&v=1"
                                   % (API, self.id))
            _check("remove", st, body, ok=(204, 404))
            self.id = None
        harness._rm_tree(self.run_dir)
        harness._rm_tree(self.mount_dir)
        if not self.port_lost:
            self.ctx.free_port(self.port)
            self.port_lost = True  # returned once


class Context:
    """Directories and a port window shared by the raw sandboxes."""

    def __init__(self, ports=400):
        self.run_root = harness.mkdtemp("sbr")
        self.mount_root = harness.mkdtemp("sbm")
        # Below the kernel's ephemeral ports (32768 and up), which the
        # load generator's and everyone's client sockets take.
        lo, hi = harness.free_window(ports, lo=20000, hi=32000)
        self.free = list(range(lo, hi))
        self.lock = threading.Lock()

    def lease_port(self):
        with self.lock:
            return self.free.pop(0)

    def free_port(self, p):
        with self.lock:
            self.free.append(p)


def cold(ctx, eng, tries=3):
    """One cold sandbox the raw way. Returns (sandbox, timings in ms:
    create, start, ready (after start), call, to_ready, total). A host
    port taken meanwhile by someone else is given up (the sandbox removed,
    its port not returned) and the try starts again."""
    for _ in range(tries - 1):
        try:
            return _cold(ctx, eng)
        except PortTaken as e:
            print("# bench_raw: %s; trying again" % e, file=sys.stderr)
    return _cold(ctx, eng)


def _cold(ctx, eng):
    """One try of cold()."""
    sb = Sandbox(ctx)
    t0 = time.perf_counter()
    sb.create(eng)
    t1 = time.perf_counter()
    try:
        sb.start(eng)
    except PortTaken:
        sb.port_lost = True
        sb.remove(eng)
        raise
    t2 = time.perf_counter()
    probes = sb.wait_ready()
    t3 = time.perf_counter()
    sb.call_true()
    t4 = time.perf_counter()
    ms = lambda a, b: (b - a) * 1000.0  # noqa: E731
    return sb, {"create": ms(t0, t1), "start": ms(t1, t2),
                "ready": ms(t2, t3), "call": ms(t3, t4),
                "to_ready": ms(t0, t3), "total": ms(t0, t4),
                "probes": probes}


def parallel_rate(ctx, n, conc):
    """Creates and starts n sandboxes, conc at a time, each until its
    healthz answers 200. Returns (sandboxes per second, sandboxes)."""
    lock = threading.Lock()
    made, errors = [], []
    left = [n]

    def worker():
        eng = Engine()
        try:
            while True:
                with lock:
                    if left[0] == 0 or errors:
                        return
                    left[0] -= 1
                for attempt in range(3):
                    sb = Sandbox(ctx)
                    with lock:
                        made.append(sb)
                    sb.create(eng)
                    try:
                        sb.start(eng)
                        break
                    except PortTaken:
                        if attempt == 2:
                            raise
                        sb.port_lost = True  # as sandpool, try another
                sb.wait_ready()
        except Exception as e:  # reported by the caller
            with lock:
                errors.append(e)
        finally:
            eng.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        remove_all(made)
        raise errors[0]
    return n / wall, made


def remove_all(sandboxes, conc=4):
    """Removes sandboxes, conc at a time."""
    todo = list(sandboxes)
    lock = threading.Lock()

    def worker():
        eng = Engine()
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    sb = todo.pop()
                try:
                    sb.remove(eng)
                except (OSError, Failed) as e:
                    print("# bench_raw: remove %s: %s" % (sb.name, e),
                          file=sys.stderr)
        finally:
            eng.close()

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def exec_run(eng, container, cmd=("true",)):
    """docker exec through the Engine API: create, start (read to EOF on
    its own connection, as the stream ends it), inspect. Returns ms."""
    t0 = time.perf_counter()
    st, body = eng.request("POST", "%s/containers/%s/exec" % (API, container),
                           {"Cmd": list(cmd), "AttachStdout": True,
                            "AttachStderr": True})
    xid = _check("exec create", st, body)["Id"]
    c = harness.UnixHTTPConnection(eng.path)
    try:
        c.request("POST", "%s/exec/%s/start" % (API, xid),
                  body=json.dumps({"Detach": False, "Tty": False}).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise Failed("exec start: HTTP %d" % r.status)
    finally:
        c.close()
    st, body = eng.request("GET", "%s/exec/%s/json" % (API, xid))
    if _check("exec inspect", st, body).get("ExitCode") != 0:
        raise Failed("exec: exit code %r" % body.get("ExitCode"))
    return (time.perf_counter() - t0) * 1000.0


def cleanup():
    """Removes every container of this run (by its label)."""
    try:
        d = harness.Docker()
        for c in d.containers(["sandpool.owner=" + OWNER,
                               "sandpool.bench-run=" + RUN_ID]):
            d.remove(c["Id"])
    except OSError:
        pass


def _on_signal(signum, frame):
    cleanup()
    harness._on_signal(signum, frame)


atexit.register(cleanup)  # runs before harness's: containers, then dirs
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def _summary(xs):
    xs = sorted(xs)
    return "median %.1f ms, min %.1f, max %.1f (n=%d)" % (
        statistics.median(xs), xs[0], xs[-1], len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cold", type=int, default=10,
                    help="cold sandboxes, one after the other")
    ap.add_argument("--rate", type=int, default=16,
                    help="sandboxes per parallel-rate run")
    ap.add_argument("--concurrency", default="1,2,4,8")
    a = ap.parse_args()
    harness.skip_unless_docker()
    ctx = Context()
    eng = Engine()
    times = []
    for _ in range(a.cold):
        sb, t = cold(ctx, eng)
        times.append(t)
        sb.remove(eng)
    for k in ("create", "start", "ready", "call", "to_ready", "total"):
        if times:
            print("cold %-9s %s" % (k, _summary([t[k] for t in times])))
    for c in [int(x) for x in a.concurrency.split(",") if x]:
        rate, made = parallel_rate(ctx, a.rate, c)
        remove_all(made)
        print("parallel create+start+healthz, %d at a time: %.2f /s"
              % (c, rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
