#!/usr/bin/env python3
"""sandpool-agent on the host: routes, auth, run_shell_command semantics.

Runs $SANDPOOL_BUILDDIR/sandpool-agent directly (no docker needed), on a
free TCP port and on a unix socket in a private temporary directory, and
speaks TAP. Every check is one test; the agent is killed by pid and the
temporary directory removed whatever happens.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "t0ken-for-tests"
MAX_OUTPUT = 65536


class TAP:
    """Numbers checks and prints ok / not ok lines, then the plan."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, cond, name, diag=None):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, name))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
            if diag is not None:
                for line in str(diag).splitlines() or [""]:
                    print("# " + line)
        sys.stdout.flush()
        return cond

    def eq(self, got, want, name):
        return self.check(got == want, name,
                          "got:  %r\nwant: %r" % (got, want))

    def done(self):
        print("1..%d" % self.n)
        return 1 if self.failed else 0


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Agent:
    """One agent process with its port, socket and workspace."""

    def __init__(self, binary, tmp, token, name):
        self.port = free_port()
        self.sock = os.path.join(tmp, name + ".sock")
        self.workdir = os.path.join(tmp, name + "-ws")
        self.log = os.path.join(tmp, name + ".log")
        os.mkdir(self.workdir)
        env = dict(os.environ)
        env.update({
            "SECRET_TOKEN": token,
            "SANDPOOL_AGENT_PORT": str(self.port),
            "SANDPOOL_AGENT_SOCKET": self.sock,
            "SANDPOOL_AGENT_WORKDIR": self.workdir,
            "SANDPOOL_AGENT_MAX_OUTPUT": str(MAX_OUTPUT),
            "SANDPOOL_AGENT_LOG_LEVEL": "debug",
        })
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)

    def wait_ready(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def request(self, method, path, body=None, headers=None, unix=False,
                timeout=30, auth=True):
        if unix:
            conn = UnixHTTPConnection(self.sock, timeout=timeout)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                              timeout=timeout)
        h = {}
        if auth:
            h["Authorization"] = "Bearer " + TOKEN
        if headers:
            h.update(headers)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, r.read(), r
        finally:
            conn.close()

    def shell(self, command, timeout=None, **kw):
        body = {"command": command}
        if timeout is not None:
            body["timeout"] = timeout
        status, data, _ = self.request("POST", "/fastapi/tools/run_shell_command",
                                       body, **kw)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def items(result):
    """{description: text} of a CallToolResult, and the order of items."""
    content = result.get("content", [])
    return ({i.get("description"): i.get("text") for i in content},
            [i.get("description") for i in content])


def children(pid):
    """(pid, state) of each process whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out.append((int(d), rest[0]))
    return out


def run(t, binary, tmp):
    a = Agent(binary, tmp, TOKEN, "agent")
    try:
        if not t.check(a.wait_ready(), "agent starts and listens on TCP"):
            with open(a.log) as f:
                t.check(False, "agent log", f.read())
            return
        tests(t, a)
    finally:
        rc = a.stop()
    t.eq(rc, 0, "SIGTERM: agent exits with status 0")
    t.check(not os.path.exists(a.sock), "SIGTERM: unix socket removed")

    b = Agent(binary, tmp, "", "notoken")
    try:
        if t.check(b.wait_ready(), "agent without SECRET_TOKEN starts"):
            st, body, _ = b.request("GET", "/healthz")
            t.eq((st, body), (403, b'{"detail":"Invalid secret token"}'),
                 "no SECRET_TOKEN: a bearer token is refused with 403")
            st, body, _ = b.request("GET", "/healthz", headers={
                "Authorization": "Bearer "})
            t.eq(st, 403, "no SECRET_TOKEN: an empty bearer token is refused")
    finally:
        b.stop()
    with open(b.log) as f:
        t.check("SECRET_TOKEN is not set" in f.read(),
                "no SECRET_TOKEN: a warning is logged")


def tests(t, a):
    # Health and transports.
    st, body, r = a.request("GET", "/healthz")
    t.eq((st, body), (200, b"OK"), "GET /healthz over TCP: 200 OK")
    t.eq(r.getheader("Content-Type"), None, "healthz has no content type")
    st, body, _ = a.request("GET", "/fastapi/healthz")
    t.eq((st, body), (200, b"OK"), "GET /fastapi/healthz: 200 OK")
    st, body, _ = a.request("GET", "/fastapi/healthz", unix=True)
    t.eq((st, body), (200, b"OK"), "GET /fastapi/healthz over the unix socket")
    mode = stat.S_IMODE(os.stat(a.sock).st_mode)
    t.eq(oct(mode), oct(0o600), "unix socket is mode 0600")

    # Auth (spec 6.2).
    missing = b'{"detail":"Missing or invalid authorization header"}'
    st, body, _ = a.request("GET", "/healthz", auth=False)
    t.eq((st, body), (403, missing), "no Authorization header: 403")
    st, body, _ = a.request("GET", "/healthz", auth=False,
                            headers={"Authorization": "Basic " + TOKEN})
    t.eq((st, body), (403, missing), "Basic scheme: 403")
    st, body, _ = a.request("GET", "/healthz", auth=False,
                            headers={"Authorization": "bearer " + TOKEN})
    t.eq((st, body), (403, missing), "lower-case bearer: 403")
    st, body, _ = a.request("GET", "/healthz", auth=False,
                            headers={"Authorization": "Bearer nope"})
    t.eq((st, body), (403, b'{"detail":"Invalid secret token"}'),
         "wrong token: 403 Invalid secret token")
    st, body, _ = a.request("GET", "/healthz", auth=False,
                            headers={"Authorization": "Bearer " + TOKEN + "x"})
    t.eq(st, 403, "token with a suffix: 403")
    st, body, _ = a.request("POST", "/tools/run_shell_command",
                            {"command": "touch pwned"}, auth=False)
    t.check(st == 403 and not os.path.exists(os.path.join(a.workdir, "pwned")),
            "run_shell_command without a token runs nothing")

    # run_shell_command output shape (spec 5.3 step 4, exact bytes).
    st, body, r = a.request("POST", "/fastapi/tools/run_shell_command",
                            {"command": "echo hello"})
    want = (b'{"meta":null,"content":[{"type":"text","text":"hello\\n",'
            b'"annotations":null,"description":"stdout"},{"type":"text",'
            b'"text":"0","annotations":null,"description":"returncode"}],'
            b'"isError":false}')
    t.eq((st, body), (200, want), "echo hello: exact CallToolResult")
    t.eq(r.getheader("Content-Type"), "application/json",
         "CallToolResult is application/json")
    st, body, _ = a.request("POST", "/tools/run_shell_command",
                            {"command": "echo hello"})
    t.eq((st, body), (200, want), "route works without /fastapi too")

    st, res = a.shell("echo out; echo err >&2")
    d, order = items(res)
    t.eq((st, order, d.get("stdout"), d.get("stderr"), d.get("returncode"),
          res.get("isError")),
         (200, ["stdout", "stderr", "returncode"], "out\n", "err\n", "0", True),
         "stderr output: stderr item and isError true")
    t.check(all(i.get("annotations", "x") is None and i.get("type") == "text"
                for i in res["content"]) and res.get("meta", "x") is None,
            "every item has type text and annotations null; meta null")

    st, res = a.shell("exit 3")
    d, order = items(res)
    t.eq((order, d.get("stdout"), d.get("returncode"), res.get("isError")),
         (["stdout", "returncode"], "", "3", False),
         "exit 3 with empty stderr: isError false, returncode 3")

    st, res = a.shell("kill -TERM $$")
    d, _ = items(res)
    t.eq(d.get("returncode"), "-15", "killed by SIGTERM: returncode -15")

    st, res = a.shell("pwd")
    d, _ = items(res)
    t.eq(d.get("stdout"), os.path.realpath(a.workdir) + "\n",
         "commands run in SANDPOOL_AGENT_WORKDIR")

    st, res = a.shell('echo "[$SECRET_TOKEN]"; read x; echo "read=$?"')
    d, _ = items(res)
    t.eq(d.get("stdout"), "[]\nread=1\n",
         "SECRET_TOKEN is not inherited; stdin is at EOF")

    st, res = a.shell("printf '\\377\\376ok'")
    d, _ = items(res)
    t.eq(d.get("stdout"), "\ufffd\ufffdok", "invalid UTF-8 becomes U+FFFD")

    # Timeout.
    t0 = time.monotonic()
    st, res = a.shell("echo before; sleep 30; echo after", timeout=1)
    took = time.monotonic() - t0
    d, _ = items(res)
    t.check(st == 200 and took < 5, "timeout 1 kills sleep 30 quickly",
            "took %.2f s" % took)
    t.eq((d.get("stdout"), d.get("returncode"), res.get("isError")),
         ("before\n", "-9", True), "timed out: returncode -9, isError true")
    t.check("command timed out after 1 s" in (d.get("stderr") or ""),
            "timed out: stderr says so", repr(d.get("stderr")))

    # Background job: answered promptly, its output pipe kept drained.
    t0 = time.monotonic()
    st, res = a.shell("echo fg; sleep 3 &")
    took = time.monotonic() - t0
    d, _ = items(res)
    t.check(st == 200 and d.get("stdout") == "fg\n" and took < 2,
            "a background job does not hold the answer", "took %.2f s" % took)

    # Concurrency: 10 commands of 1 s finish in about 1 s.
    results = [None] * 10

    def one(i):
        try:
            results[i] = a.shell("sleep 1; echo %d" % i)
        except Exception as e:  # noqa: BLE001 (reported below)
            results[i] = (0, repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    took = time.monotonic() - t0
    ok = all(r is not None and r[0] == 200 and
             items(r[1])[0].get("stdout") == "%d\n" % i
             for i, r in enumerate(results))
    t.check(ok, "10 concurrent commands all answer correctly", repr(results))
    t.check(took < 2.5, "10 concurrent 1 s commands take about 1 s",
            "took %.2f s" % took)

    # Output cap.
    st, res = a.shell("head -c %d /dev/zero | tr '\\000' a" % (MAX_OUTPUT + 1000))
    d, _ = items(res)
    out = d.get("stdout") or ""
    t.eq(out, "a" * MAX_OUTPUT + "\n[output truncated: 1000 bytes dropped]",
         "stdout is capped with a truncation marker")
    st, res = a.shell("head -c %d /dev/zero | tr '\\000' b >&2" % (MAX_OUTPUT + 5))
    d, _ = items(res)
    t.check((d.get("stderr") or "").endswith("\n[output truncated: 5 bytes dropped]"),
            "stderr is capped with a truncation marker")

    # Errors.
    st, body, _ = a.request("GET", "/nope")
    t.eq((st, body), (404, b'{"detail":"Not Found"}'), "unknown path: 404")
    st, body, _ = a.request("GET", "/fastapi/nope")
    t.eq((st, body), (404, b'{"detail":"Not Found"}'), "unknown /fastapi path: 404")
    st, body, r = a.request("GET", "/fastapi/tools/run_shell_command")
    t.eq((st, body, r.getheader("Allow")),
         (405, b'{"detail":"Method Not Allowed"}', "POST"),
         "GET on run_shell_command: 405 with Allow")
    st, body, _ = a.request("DELETE", "/healthz")
    t.eq(st, 405, "DELETE /healthz: 405")
    for name, body in (("missing command", {"cmd": "x"}),
                       ("non-string command", {"command": 5}),
                       ("bad timeout", {"command": "true", "timeout": "x"}),
                       ("negative timeout", {"command": "true", "timeout": -1}),
                       ("body not an object", [1]),
                       ("bad JSON", '{"command":'),
                       ("empty body", "")):
        st, data, _ = a.request("POST", "/tools/run_shell_command", body)
        try:
            detail = json.loads(data).get("detail")
        except ValueError:
            detail = None
        t.check(st == 422 and isinstance(detail, str) and detail,
                "%s: 422 with a detail string" % name, (st, data))

    st, body, _ = a.request("GET", "/fastapi/mcp/list_tools")
    t.eq((st, body), (200, b"{}"), "list_tools: {}")
    st, body, _ = a.request("POST", "/fastapi/mcp/call_tool",
                            {"tool_name": "foo", "arguments": {}})
    t.eq((st, body), (500, b'{"detail":"Tool \'foo\' not found."}'),
         "call_tool of an unknown tool: 500")
    st, body, _ = a.request("POST", "/fastapi/tools/run_ipython_cell",
                            {"code": "print(6 * 7)"})
    t.eq((st, json.loads(body)["content"][0]["text"]), (200, "42\n"),
         "run_ipython_cell: runs a cell")

    # Keep-alive: several requests on one connection.
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
    try:
        got = []
        for i in range(3):
            conn.request("POST", "/tools/run_shell_command",
                         json.dumps({"command": "echo %d" % i}),
                         {"Authorization": "Bearer " + TOKEN})
            r = conn.getresponse()
            got.append(items(json.loads(r.read()))[0].get("stdout"))
        t.eq(got, ["0\n", "1\n", "2\n"], "three commands on one kept-alive connection")
    finally:
        conn.close()

    # A client that gives up does not hurt the agent.
    try:
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=0.3)
        conn.request("POST", "/tools/run_shell_command",
                     json.dumps({"command": "sleep 1; echo late"}),
                     {"Authorization": "Bearer " + TOKEN})
        try:
            conn.getresponse()
        except (socket.timeout, OSError):
            pass
        conn.close()
    except OSError:
        pass
    time.sleep(1.2)
    st, body, _ = a.request("GET", "/healthz")
    t.eq((st, body), (200, b"OK"), "still healthy after a client gave up")

    # Reaping: orphans of background jobs are reaped too.
    a.shell("(sleep 0.2 &) ; sleep 0.1 &")
    time.sleep(1.0)
    kids = children(a.proc.pid)
    zombies = [k for k in kids if k[1] == "Z"]
    t.eq(zombies, [], "no zombie children of the agent")
    t.check(a.proc.poll() is None, "agent still running")


def main():
    builddir = os.environ.get("SANDPOOL_BUILDDIR", os.getcwd())
    binary = os.path.join(builddir, "sandpool-agent")
    if not os.access(binary, os.X_OK):
        print("Bail out! no agent binary at %s (run make sandpool-agent)" % binary)
        return 1
    t = TAP()
    tmp = tempfile.mkdtemp(prefix="sandpool-agent-test.")
    try:
        run(t, binary, tmp)
    except Exception as e:  # noqa: BLE001 (a crash is a failed test)
        import traceback
        t.check(False, "test run raised %s" % type(e).__name__,
                traceback.format_exc())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
