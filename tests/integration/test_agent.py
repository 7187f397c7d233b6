#!/usr/bin/env python3
"""sandpool-agent on the host: every route of spec 6.3 and its semantics.

Runs $SANDPOOL_BUILDDIR/sandpool-agent directly (no docker needed), on a
free TCP port and on a unix socket in a private temporary directory, and
speaks TAP. Several agents are started with different settings (plain
Python, no python3 or git on PATH, no openat2, the filesystem MCP tools).
Every check is one test; the agents are killed by pid and the temporary
directory removed whatever happens.
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402 (UnixHTTPConnection)

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

    def skip_(self, name, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, reason))
        sys.stdout.flush()

    def done(self):
        print("1..%d" % self.n)
        return 1 if self.failed else 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Agent:
    """One agent process with its port, socket and workspace."""

    def __init__(self, binary, tmp, token, name, extra_env=None):
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
        env.update(extra_env or {})
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
            conn = harness.UnixHTTPConnection(self.sock, timeout=timeout)
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

    def call(self, method, path, body=None, headers=None, **kw):
        """(status, JSON or raw bytes, response)."""
        st, data, r = self.request(method, path, body, headers, **kw)
        try:
            return st, json.loads(data), r
        except ValueError:
            return st, data, r

    def cell(self, code, timeout=None, **kw):
        """run_ipython_cell: (status, result)."""
        body = {"code": code}
        if timeout is not None:
            body["timeout"] = timeout
        st, res, _ = self.call("POST", "/fastapi/tools/run_ipython_cell",
                               body, **kw)
        return st, res

    def tool(self, name, arguments=None):
        """mcp/call_tool: (status, result)."""
        st, res, _ = self.call("POST", "/fastapi/mcp/call_tool",
                               {"tool_name": name,
                                "arguments": arguments or {}})
        return st, res

    def vm(self, key="VmHWM"):
        """A memory figure of the agent (kB) from /proc/<pid>/status."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return -1

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


def start(t, binary, tmp, name, token=TOKEN, extra_env=None):
    """Starts an agent and checks that it listens; None if it does not."""
    a = Agent(binary, tmp, token, name, extra_env)
    AGENTS.append(a)
    if not t.check(a.wait_ready(), "agent %s starts and listens" % name):
        with open(a.log) as f:
            t.check(False, "agent %s log" % name, f.read())
        return None
    return a


AGENTS = []


def run(t, binary, tmp):
    a = start(t, binary, tmp, "agent")
    try:
        if a is None:
            return
        tests(t, a)
        for group in (http_tests, python_tests, workspace_tests, escape_tests,
                      multipart_tests, stream_tests, mcp_tests,
                      mcp_server_tests, watcher_tests, concurrency_tests):
            try:
                group(t, a, binary, tmp)
            except Exception:  # noqa: BLE001 (a crash is a failed test)
                import traceback
                t.check(False, "%s raised" % group.__name__,
                        traceback.format_exc())
    finally:
        rc = a.stop() if a is not None else None
        for other in AGENTS:
            if other is not a:
                other.stop()
    t.eq(rc, 0, "SIGTERM: agent exits with status 0")
    if a is not None:
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


def raw(a, data, timeout=10, half_close=False):
    """Sends raw bytes on a new connection; returns all bytes read until
    the agent closes it or timeout passes."""
    s = socket.create_connection(("127.0.0.1", a.port), timeout=timeout)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        return got
    finally:
        s.close()


def http_tests(t, a, binary, tmp):
    """The agent's own HTTP layer (it does not use evhttp)."""
    W = os.path.realpath(a.workdir)
    auth = ("Authorization: Bearer %s\r\n" % TOKEN).encode()
    # Pipelining, including a request queued behind a slow command (which
    # made libevent's evhttp abort).
    cmd = json.dumps({"command": "sleep 0.5; echo slow"}).encode()
    got = raw(a, b"POST /tools/run_shell_command HTTP/1.1\r\nHost: x\r\n" +
              auth + b"Content-Length: %d\r\n\r\n" % len(cmd) + cmd +
              b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n" +
              b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + auth +
              b"Connection: close\r\n\r\n", timeout=10)
    t.check(got.count(b"HTTP/1.1 200 OK") == 3 and
            got.index(b"slow\\n") < got.rindex(b"\r\n\r\nOK") and
            got.endswith(b"OK"),
            "pipelined requests behind a slow command: answered in order",
            got)
    # HTTP/1.0 without keep-alive: answered and closed.
    got = raw(a, b"GET /healthz HTTP/1.0\r\n" + auth + b"\r\n")
    t.check(got.startswith(b"HTTP/1.1 200 OK\r\n") and
            b"Connection: close" in got and got.endswith(b"\r\n\r\nOK"),
            "HTTP/1.0: answered, then closed", got)
    # HEAD gets no body.
    got = raw(a, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n" + auth +
              b"Connection: close\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 405") and got.endswith(b"\r\n\r\n"),
            "HEAD: a 405 head without a body", got)
    # Malformed requests.
    got = raw(a, b"GARBAGE\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 400 "), "a bad request line: 400",
            got)
    got = raw(a, b"GET / HTTP/2.0\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 505 "), "HTTP/2.0 on HTTP/1: 505",
            got)
    got = raw(a, b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 431 "), "a 70 KB header: 431", got)
    got = raw(a, b"POST /tools/run_shell_command HTTP/1.1\r\n" + auth +
              b"Transfer-Encoding: gzip\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 501 "),
            "an unsupported transfer coding: 501", got)
    # A JSON body sent chunked; one too large.
    st, res = chunked_request(a, "POST", "/tools/run_shell_command",
                              {"Content-Type": "application/json"},
                              json.dumps({"command": "echo chunked"}).encode(),
                              piece=3)
    t.eq(items(res)[0].get("stdout") if st == 200 else st, "chunked\n",
         "a chunked JSON body")
    st, body, _ = a.request("POST", "/tools/run_shell_command",
                            b"{" + b" " * (16 * 1024 * 1024) + b"}")
    t.eq(st, 413, "a JSON body over 16 MiB: 413")
    # Expect: 100-continue: sent when the route reads the body; a refused
    # request gets its answer and the body is not needed.
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    s.sendall(b"PUT /workspace/file?path=expect.txt HTTP/1.1\r\nHost: x\r\n"
              + auth + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    first = s.recv(100)
    s.sendall(b"hello")
    rest = b""
    while b"mtime_ms" not in rest:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    s.close()
    t.check(first == b"HTTP/1.1 100 Continue\r\n\r\n" and
            rest.startswith(b"HTTP/1.1 200 OK") and
            open(W + "/expect.txt").read() == "hello",
            "Expect: 100-continue, then the body", (first, rest))
    got = raw(a, b"PUT /workspace/file?path=no.txt HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer wrong\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\n")
    t.check(got.startswith(b"HTTP/1.1 403 ") and b"100 Continue" not in got
            and b"Connection: close" in got and
            not os.path.exists(W + "/no.txt"),
            "Expect: 100-continue refused: 403 without 100, closed", got)
    # An upload cut short leaves nothing behind.
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    s.sendall(b"PUT /workspace/file?path=cut.bin HTTP/1.1\r\nHost: x\r\n" +
              auth + b"Content-Length: 10000000\r\n\r\n" + b"x" * 300000)
    time.sleep(0.3)
    s.close()
    body = multipart(b"bb", [(b"files", b"cut2.bin", None, b"y" * 300000)])
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    s.sendall(b"POST /workspace/files:batch HTTP/1.1\r\nHost: x\r\n" + auth +
              b"Content-Type: multipart/form-data; boundary=bb\r\n"
              b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body[:-20])
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    left = [n for n in os.listdir(W) if "cut" in n or "sandpool" in n]
    t.eq(left, [], "uploads cut short leave no file behind")
    st, body, _ = a.request("GET", "/healthz")
    t.eq(st, 200, "healthy after the cut uploads")


def stdout_of(res):
    """(stdout, stderr, isError) of a CallToolResult."""
    d, _ = items(res)
    return d.get("stdout"), d.get("stderr"), res.get("isError")


def has_ipython(env=None):
    """Whether the python3 the agent will find imports IPython."""
    try:
        return subprocess.run(["python3", "-c", "import IPython"],
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def python_tests(t, a, binary, tmp):
    ipy = has_ipython()
    # State persists: variables, imports, functions.
    st, res = a.cell("a = 5\nimport math\ndef sq(x):\n    return x * x\n",
                     timeout=120)
    t.eq((st, stdout_of(res)), (200, ("", None, False)),
         "cell: definitions run silently")
    st, res = a.cell("print(a, math.pi > 3, sq(4))")
    t.eq(stdout_of(res), ("5 True 16\n", None, False),
         "cell: variables, imports and functions persist")
    st, res = a.cell("sq(a)")
    t.check(re.search(r"Out\[\d+\]: 25\n$", stdout_of(res)[0] or ""),
            "cell: a trailing expression shows Out[n]: repr",
            stdout_of(res))
    st, res = a.cell("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    t.eq(stdout_of(res), ("out\n", "err\n", True),
         "cell: stdout and stderr captured separately; stderr -> isError")
    st, res = a.cell("import subprocess\n"
                     "_ = subprocess.run(['echo', 'from-child'])")
    t.eq(stdout_of(res)[0], "from-child\n",
         "cell: output of a subprocess is captured")
    st, res = a.cell("1/0")
    out, err, is_err = stdout_of(res)
    if ipy:
        t.check("ZeroDivisionError" in (out or "") and err is None and
                not is_err,
                "cell (IPython): the traceback is on stdout, isError false",
                res)
    else:
        t.check("ZeroDivisionError" in (err or "") and is_err,
                "cell (plain): the traceback is on stderr", res)
    st, res = a.cell("print('x' * %d)" % (MAX_OUTPUT + 100))
    t.check((stdout_of(res)[0] or "").endswith(
        "\n[output truncated: 101 bytes dropped]"),
        "cell: output capped with a truncation marker")

    # Errors of the request itself.
    st, body, _ = a.request("POST", "/tools/run_ipython_cell", {"code": ""})
    t.eq(st, 500, "cell: empty code -> 500")
    st, body, _ = a.request("POST", "/tools/run_ipython_cell", {"cod": "1"})
    t.eq(st, 422, "cell: missing code -> 422")
    st, body, _ = a.request("POST", "/tools/run_ipython_cell",
                            {"code": "1", "timeout": "x"})
    t.eq(st, 422, "cell: bad timeout -> 422")

    # A timeout interrupts the cell; the state survives.
    t0 = time.monotonic()
    st, res = a.cell("import time\ntime.sleep(30)", timeout=1)
    took = time.monotonic() - t0
    out, err, is_err = stdout_of(res)
    t.check(st == 200 and took < 10 and
            "timed out after 1 s: interrupted" in (err or "") and is_err and
            "KeyboardInterrupt" in (out or "") + (err or ""),
            "cell timeout: interrupted with KeyboardInterrupt (%.1f s)" % took,
            res)
    st, res = a.cell("print(a)")
    t.eq(stdout_of(res), ("5\n", None, False),
         "cell timeout: the state survives an interrupt")

    # A cell that ignores SIGINT is killed; the state is lost.
    t0 = time.monotonic()
    st, res = a.cell("import signal, time\n"
                     "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                     "time.sleep(60)", timeout=1)
    took = time.monotonic() - t0
    out, err, is_err = stdout_of(res)
    t.check(took < 10 and "was killed" in (err or "") and
            "are lost" in (err or "") and is_err,
            "cell timeout: a cell deaf to SIGINT is killed (%.1f s)" % took,
            res)
    st, res = a.cell("print('a' in dir())")
    t.eq(stdout_of(res), ("False\n", None, False),
         "cell: a new interpreter after the kill, without the old state")

    # The interpreter dies in a cell: said, and restarted for the next.
    a.cell("b = 1")
    st, res = a.cell("import os\nos._exit(7)")
    out, err, is_err = stdout_of(res)
    t.check("died while running this cell (exit status 7)" in (err or "") and
            is_err, "cell: an interpreter that exits is reported", res)
    st, res = a.cell("print(1 + 1)")
    t.eq(stdout_of(res), ("2\n", None, False),
         "cell: the next cell gets a new interpreter")

    # The interpreter dies between cells: the next cell says state is lost.
    a.cell("c = 3")
    st, res = a.cell("import os\nprint(os.getpid())")
    pid = int(stdout_of(res)[0].strip().splitlines()[-1])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    st, res = a.cell("print('c' in dir())")
    out, err, is_err = stdout_of(res)
    t.check(out == "False\n" and "restarted" in (err or "") and
            "lost" in (err or ""),
            "cell: death between cells -> the next cell says state is lost",
            res)
    st, res = a.cell("print('again')")
    t.eq(stdout_of(res), ("again\n", None, False),
         "cell: the lost-state note is said once")

    # Cells queue: three at once run one after the other.
    results = [None] * 3

    def one(i):
        results[i] = a.cell("import time\ntime.sleep(0.4)\nprint(%d)" % i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    took = time.monotonic() - t0
    t.check(all(r is not None and stdout_of(r[1])[0] == "%d\n" % i
                for i, r in enumerate(results)) and took >= 1.1,
            "cells sent at once are queued, each answered (%.1f s)" % took,
            results)

    # IPython's own shape, when the image has it.
    if ipy:
        st, res = a.cell("40 + 2")
        t.check(re.match(r"^Out\[\d+\]: 42\n$", stdout_of(res)[0] or ""),
                "cell (IPython): Out[n]: 42", res)
    else:
        t.skip_("cell (IPython): Out[n]", "IPython is not installed")

    # The plain executor, and no python3 at all.
    p = start(t, binary, tmp, "plain", extra_env={
        "SANDPOOL_AGENT_IPYTHON": "0"})
    if p is not None:
        st, res = p.cell("x = 2")
        st, res = p.cell("x * 21")
        t.eq(stdout_of(res), ("Out[2]: 42\n", None, False),
             "plain cell: Out[n]: repr of a trailing expression")
        st, res = p.cell("x * 21;")
        t.eq(stdout_of(res), ("", None, False),
             "plain cell: a trailing ';' hides the value")
        st, res = p.cell("def f():\n    return 1/0\nf()")
        out, err, is_err = stdout_of(res)
        t.check(out == "" and is_err and err.startswith(
            "Traceback (most recent call last):") and
            "in f" in err and "ZeroDivisionError" in err,
            "plain cell: the traceback is on stderr", res)
        st, res = p.cell("x = (")
        t.check("SyntaxError" in (stdout_of(res)[1] or ""),
                "plain cell: a syntax error is reported", res)
        st, res = p.cell("raise SystemExit(3)")
        st, res2 = p.cell("print(x)")
        t.check("SystemExit" in (stdout_of(res)[1] or "") and
                stdout_of(res2)[0] == "2\n",
                "plain cell: SystemExit does not end the interpreter",
                (res, res2))


def bare_tests(t, binary, tmp):
    """An agent whose PATH has neither python3 nor git."""
    empty = os.path.join(tmp, "emptybin")
    os.mkdir(empty)
    b = start(t, binary, tmp, "bare", extra_env={"PATH": empty})
    if b is None:
        return
    st, res = b.cell("print(1)")
    out, err, is_err = stdout_of(res)
    t.check(st == 200 and is_err and
            "python3 is not available in this sandbox" in (err or ""),
            "no python3: a clear error result", res)
    for method, path, body in (("GET", "/watcher/git_logs", None),
                               ("POST", "/watcher/commit_changes", {}),
                               ("POST", "/watcher/generate_diff",
                                {"commit_a": "a", "commit_b": "b"})):
        st, body, _ = b.request(method, "/fastapi" + path, body)
        t.eq((st, body),
             (500, b'{"detail":"git is not available in this sandbox"}'),
             "no git: %s -> 500 git is not available" % path)
    st, res, _ = b.call("POST", "/mcp/add_servers", {"server_configs": {
        "mcpServers": {"x": {"command": "npx", "args": ["-y", "x"]}}}})
    t.check(st == 500 and "command 'npx' is not available" in
            res.get("detail", ""),
            "add_servers: a command missing from the image -> 500", res)


def entry_ok(e, path, name, type_, size=None):
    """Does an entry have the spec 6.3 shape and these values?"""
    return (isinstance(e, dict) and
            set(e) == {"path", "name", "type", "size", "mtime_ms"} and
            e["path"] == path and e["name"] == name and e["type"] == type_ and
            (size is None or e["size"] == size) and
            isinstance(e["mtime_ms"], int) and e["mtime_ms"] > 10 ** 12)


def q(path):
    return urllib.parse.quote(path, safe="")


def workspace_tests(t, a, binary, tmp):
    W = os.path.realpath(a.workdir)
    st, e, _ = a.call("PUT", "/fastapi/workspace/file?path=d/a.txt",
                      "héllo\n".encode(),
                      {"Content-Type": "text/plain; charset=utf-8"})
    t.check(st == 200 and entry_ok(e, W + "/d/a.txt", "a.txt", "file", 7),
            "PUT file: entry JSON, parents created", e)
    st, body, r = a.request("GET", "/fastapi/workspace/file?path=d%2Fa.txt")
    t.eq((st, body, r.getheader("Content-Type")),
         (200, "héllo\n".encode(), "text/plain; charset=utf-8"),
         "GET file format=text (encoded path)")
    allbytes = bytes(range(256))
    a.request("PUT", "/workspace/file?path=" + q(W + "/b.bin"), allbytes,
              {"Content-Type": "application/octet-stream"})
    st, body, r = a.request("GET", "/workspace/file?path=b.bin&format=bytes")
    t.eq((st, body, r.getheader("Content-Type")),
         (200, allbytes, "application/octet-stream"),
         "GET format=bytes: 00..ff exact; absolute path under it works")
    st, body, _ = a.request("GET", "/workspace/file?path=b.bin&format=xml")
    t.eq(st, 422, "GET file: unknown format -> 422")
    st, body, _ = a.request("GET", "/workspace/file?path=nope")
    t.eq((st, body), (404, b'{"detail":"not found"}'), "GET missing -> 404")
    st, body, _ = a.request("GET", "/workspace/file?path=d")
    t.eq((st, body), (404, b'{"detail":"not found"}'), "GET a dir -> 404")
    st, body, _ = a.request("GET", "/workspace/file")
    t.eq(st, 422, "GET file without path -> 422")
    st, body, _ = a.request("PUT", "/workspace/file?path=d", b"x")
    t.eq((st, body), (409, b'{"detail":"path exists and is a directory"}'),
         "PUT onto a directory -> 409")
    st, body, _ = a.request("PUT", "/workspace/file?path=d/a.txt/x", b"x")
    t.eq(st, 409, "PUT under a file -> 409")
    st, e, _ = a.call("PUT", "/workspace/file?path=empty.txt", b"")
    t.check(st == 200 and entry_ok(e, W + "/empty.txt", "empty.txt",
                                   "file", 0), "PUT an empty body", e)

    st, res, _ = a.call("GET", "/workspace/exists?path=d/a.txt")
    st2, res2, _ = a.call("GET", "/workspace/exists?path=d/zz")
    t.eq((res, res2), ({"exists": True}, {"exists": False}),
         "exists true / false")

    # mkdir, list with depth.
    st, res, _ = a.call("POST", "/workspace/mkdir", {"path": "t/u/v"})
    st2, res2, _ = a.call("POST", "/workspace/mkdir", {"path": "t/u"})
    st3, res3, _ = a.call("POST", "/workspace/mkdir", {"path": "d/a.txt"})
    t.eq(((st, res), (st2, res2), st3),
         ((200, {"created": True}), (200, {"created": False}), 409),
         "mkdir: created, exists, 409 on a file")
    st, res, _ = a.call("POST", "/workspace/mkdir", {})
    t.eq(st, 400, "mkdir without path -> 400")
    a.request("PUT", "/workspace/file?path=t/u/v/deep.txt", b"deep")
    os.symlink(W + "/t", W + "/t-link")
    st, one, _ = a.call("GET", "/workspace/list?path=t")
    t.check(st == 200 and len(one) == 1 and
            entry_ok(one[0], W + "/t/u", "u", "dir"),
            "list depth 1: the children only", one)
    st, three, _ = a.call("GET", "/workspace/list?path=t&depth=3")
    t.eq([e["path"] for e in three],
         [W + "/t/u", W + "/t/u/v", W + "/t/u/v/deep.txt"],
         "list depth 3: pre-order")
    st, root, _ = a.call("GET", "/workspace/list?path=&depth=10")
    link = [e for e in root if e["name"] == "t-link"]
    t.check(len(link) == 1 and link[0]["type"] == "symlink" and
            not any(e["path"].startswith(W + "/t-link/") for e in root),
            "list: a symlinked directory is listed, not followed")
    st, body, _ = a.request("GET", "/workspace/list?path=d/a.txt")
    t.eq(st, 404, "list of a file -> 404")
    st, body, _ = a.request("GET", "/workspace/list?path=t&depth=0")
    t.eq(st, 422, "list depth 0 -> 422")

    # move
    st, e, _ = a.call("POST", "/workspace/move",
                      {"source": "d/a.txt", "destination": "m/n/a2.txt"})
    t.check(st == 200 and entry_ok(e, W + "/m/n/a2.txt", "a2.txt", "file") and
            not os.path.exists(W + "/d/a.txt"),
            "move: entry of the destination, parents created", e)
    st, e, _ = a.call("POST", "/workspace/move",
                      {"source": "m/n/a2.txt", "destination": "t"})
    t.check(st == 200 and e.get("path") == W + "/t/a2.txt",
            "move into an existing directory", e)
    st, body, _ = a.request("POST", "/workspace/move",
                            {"source": "zz", "destination": "yy"})
    t.eq(st, 404, "move a missing source -> 404")
    st, body, _ = a.request("POST", "/workspace/move", {"source": "t"})
    t.eq(st, 400, "move without destination -> 400")

    # delete
    st, body, r = a.request("DELETE", "/workspace/entry?path=t")
    t.check(st == 204 and body == b"" and not os.path.exists(W + "/t"),
            "delete a directory recursively -> 204")
    st, body, _ = a.request("DELETE", "/workspace/entry?path=t")
    t.eq(st, 204, "delete an absent path -> 204")
    st, body, _ = a.request("DELETE", "/workspace/entry?path=t-link")
    t.check(st == 204 and not os.path.lexists(W + "/t-link"),
            "delete a symlink removes the link")

    # Auth on the workspace routes (spec 6.2).
    st, body, _ = a.request("GET", "/workspace/exists?path=x", auth=False)
    t.eq((st, body), (403, b'{"detail":"Missing or invalid authorization '
                           b'header"}'), "workspace route without a token")
    st, body, _ = a.request("PUT", "/workspace/file?path=pwned", b"x",
                            auth=False, headers={
                                "Authorization": "Bearer wrong"})
    t.check(st == 403 and not os.path.exists(W + "/pwned"),
            "PUT with a wrong token writes nothing")


FORBIDDEN = (403, b'{"detail":"Permission error. Access restricted to '
                  b'/workspace directory."}')


def escape_tests(t, a, binary, tmp):
    for agent, how in ((a, "openat2"),
                       (start(t, binary, tmp, "walk", extra_env={
                           "SANDPOOL_AGENT_NO_OPENAT2": "1"}), "walk")):
        if agent is None:
            continue
        W = os.path.realpath(agent.workdir)
        outside = os.path.join(tmp, "outside-" + how)
        os.mkdir(outside)
        with open(os.path.join(outside, "secret"), "w") as f:
            f.write("secret")
        os.symlink("/etc", W + "/etc-link")
        os.symlink(outside + "/secret", W + "/secret-link")
        os.symlink(outside, W + "/out-dir")
        cases = [
            ("GET", "/workspace/file?path=../x", None),
            ("GET", "/workspace/file?path=" + q("a/../../x"), None),
            ("GET", "/workspace/file?path=%2Fetc%2Fpasswd", None),
            ("GET", "/workspace/file?path=" + q(W + "2/x"), None),
            ("GET", "/workspace/file?path=etc-link/passwd", None),
            ("GET", "/workspace/file?path=secret-link", None),
            ("GET", "/workspace/list?path=out-dir", None),
            ("GET", "/workspace/exists?path=etc-link/passwd", None),
            ("PUT", "/workspace/file?path=out-dir/new", b"x"),
            ("PUT", "/workspace/file?path=../new", b"x"),
            ("DELETE", "/workspace/entry?path=out-dir/secret", None),
            ("DELETE", "/workspace/entry?path=%2Ftmp", None),
            ("POST", "/workspace/mkdir", {"path": "/tmp/x-" + how}),
            ("POST", "/workspace/mkdir", {"path": "out-dir/sub"}),
            ("POST", "/workspace/move", {"source": "secret-link",
                                         "destination": "/tmp/y"}),
            ("POST", "/workspace/move", {"source": "/etc/hosts",
                                         "destination": "h"}),
        ]
        for method, path, body in cases:
            st, data, _ = agent.request(method, path, body)
            t.eq((st, data), FORBIDDEN, "%s: %s %s -> 403" % (how, method,
                                                            path))
        t.check(os.listdir(outside) == ["secret"] and
                open(outside + "/secret").read() == "secret" and
                not os.path.exists("/tmp/x-" + how) and
                not os.path.exists(os.path.join(tmp, "new")),
                "%s: nothing outside the workspace was touched" % how)
        # Links that stay inside still work with openat2.
        os.mkdir(W + "/real")
        os.symlink("real", W + "/inner-link")
        st, e, _ = agent.call("PUT", "/workspace/file?path=inner-link/f",
                              b"in")
        if how == "openat2":
            t.check(st == 200 and open(W + "/real/f").read() == "in",
                    "openat2: a relative link inside the workspace works", e)
        else:
            t.eq(st, 403, "walk: every symbolic link on the way is refused")
        st, e, _ = agent.call("PUT", "/workspace/file?path=x/y/z.txt", b"z")
        st2, body, _ = agent.request("GET", "/workspace/file?path=x/y/z.txt")
        t.eq((st, st2, body), (200, 200, b"z"),
             "%s: nested PUT and GET" % how)


def multipart(boundary, parts):
    """A multipart/form-data body of (name, filename, ctype, data)."""
    out = b""
    for name, filename, ctype, data in parts:
        out += b"--" + boundary + b"\r\n"
        disp = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            disp += b'; filename="' + filename + b'"'
        out += disp + b"\r\n"
        if ctype is not None:
            out += b"Content-Type: " + ctype + b"\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def chunked_request(a, method, path, headers, body, piece=7):
    """Sends body with Transfer-Encoding: chunked in small pieces."""
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    h = {"Authorization": "Bearer " + TOKEN}
    h.update(headers)
    try:
        conn.request(method, path, headers=h, encode_chunked=True,
                     body=(body[i:i + piece]
                           for i in range(0, len(body), piece)))
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data
    finally:
        conn.close()


def multipart_tests(t, a, binary, tmp):
    W = os.path.realpath(a.workdir)
    before = set(os.listdir(W))
    # Python requests: all paths, then all files, a random hex boundary.
    b = b"5f2e8a9c1d3b4e6f"
    body = multipart(b, [
        (b"paths", None, None, b"up/one.txt"),
        (b"paths", None, None, b"up/two.bin"),
        (b"files", b"one.txt", b"text/plain; charset=utf-8", b"first"),
        (b"files", b"two.bin", b"application/octet-stream",
         b"\x00\r\n--5f2e8a9c\r\n"),
    ])
    st, res, _ = a.call("POST", "/fastapi/workspace/files:batch", body,
                        {"Content-Type":
                         "multipart/form-data; boundary=" + b.decode()})
    t.check(st == 200 and len(res) == 2 and
            entry_ok(res[0], W + "/up/one.txt", "one.txt", "file", 5) and
            entry_ok(res[1], W + "/up/two.bin", "two.bin", "file", 15) and
            open(W + "/up/one.txt", "rb").read() == b"first" and
            open(W + "/up/two.bin", "rb").read() ==
            b"\x00\r\n--5f2e8a9c\r\n",
            "files:batch, paths then files: entries and contents", res)
    # The async client: interleaved, its boundary, body sent chunked.
    b = b"----agentscope-" + b"ab" * 16
    body = multipart(b, [
        (b"paths", None, None, b"il/1.txt"),
        (b"files", b"1.txt", b"text/plain; charset=utf-8", b"one"),
        (b"paths", None, None, b"il/2.txt"),
        (b"files", b"2.txt", b"text/plain; charset=utf-8", b"two"),
    ])
    st, res = chunked_request(a, "POST", "/workspace/files:batch", {
        "Content-Type": "multipart/form-data; boundary=" + b.decode()}, body)
    t.check(st == 200 and [e["path"] for e in res] ==
            [W + "/il/1.txt", W + "/il/2.txt"] and
            open(W + "/il/2.txt").read() == "two",
            "files:batch, interleaved and chunked", res)
    # Without paths: the file names are the targets.
    body = multipart(b"bb", [(b"files", b"named.txt", None, b"n")])
    st, res, _ = a.call("POST", "/workspace/files:batch", body, {
        "Content-Type": "multipart/form-data; boundary=bb"})
    t.check(st == 200 and res[0]["path"] == W + "/named.txt",
            "files:batch without paths: the file name is the target", res)
    # Count mismatch, a path outside, not multipart: nothing left behind.
    body = multipart(b"bb", [(b"paths", None, None, b"m1"),
                             (b"files", b"a", None, b"1"),
                             (b"files", b"b", None, b"2")])
    st, res, _ = a.call("POST", "/workspace/files:batch", body, {
        "Content-Type": "multipart/form-data; boundary=bb"})
    t.eq(st, 400, "files:batch, 1 path for 2 files -> 400")
    body = multipart(b"bb", [(b"paths", None, None, b"ok.txt"),
                             (b"paths", None, None, b"../evil.txt"),
                             (b"files", b"a", None, b"1"),
                             (b"files", b"b", None, b"2")])
    st, res, _ = a.call("POST", "/workspace/files:batch", body, {
        "Content-Type": "multipart/form-data; boundary=bb"})
    t.check(st == 403 and not os.path.exists(W + "/ok.txt") and
            not os.path.exists(os.path.join(os.path.dirname(W),
                                            "evil.txt")),
            "files:batch with a path outside -> 403, nothing written", res)
    st, res, _ = a.call("POST", "/workspace/files:batch", b"{}", {
        "Content-Type": "application/json"})
    t.eq(st, 400, "files:batch that is not multipart -> 400")
    st, res, _ = a.call("POST", "/workspace/files:batch",
                        b"--bb\r\nContent-Disposition: form-data; "
                        b"name=files; filename=x\r\n\r\nabc",
                        {"Content-Type": "multipart/form-data; boundary=bb"})
    t.eq(st, 400, "files:batch, a truncated body -> 400")
    left = [n for n in set(os.listdir(W)) - before if "sandpool" in n]
    t.eq(left, [], "no temporary upload files are left behind")


def stream_tests(t, a, binary, tmp):
    """100 MB up and down, the agent's memory bounded throughout (a fresh
    agent, so that its high-water mark is the transfers')."""
    a = start(t, binary, tmp, "stream")
    if a is None:
        return
    W = os.path.realpath(a.workdir)
    size = 100 * 1000 * 1000
    src = os.path.join(tmp, "big.bin")
    h = hashlib.sha256()
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size // len(block)):
            f.write(block)
            h.update(block)
        rest = size % len(block)
        f.write(block[:rest])
        h.update(block[:rest])
    digest = h.hexdigest()
    hwm0 = a.vm()
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    t0 = time.monotonic()
    with open(src, "rb") as f:
        conn.request("PUT", "/workspace/file?path=big/up.bin", body=f,
                     headers={"Authorization": "Bearer " + TOKEN,
                              "Content-Length": str(size),
                              "Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        e = json.loads(r.read())
    up = time.monotonic() - t0
    t.check(r.status == 200 and e.get("size") == size,
            "PUT 100 MB (Content-Length) in %.2f s" % up, e)
    t0 = time.monotonic()
    conn.request("GET", "/workspace/file?path=big/up.bin&format=bytes",
                 headers={"Authorization": "Bearer " + TOKEN})
    r = conn.getresponse()
    g = hashlib.sha256()
    n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        g.update(chunk)
        n += len(chunk)
    down = time.monotonic() - t0
    conn.close()
    t.check(r.status == 200 and n == size and g.hexdigest() == digest,
            "GET 100 MB back, same bytes, in %.2f s" % down)
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    with open(src, "rb") as f:
        conn.request("PUT", "/workspace/file?path=big/chunked.bin",
                     body=iter(lambda: f.read(1 << 16), b""),
                     encode_chunked=True,
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        e = json.loads(r.read())
    conn.close()
    with open(W + "/big/chunked.bin", "rb") as f:
        same = hashlib.sha256(f.read()).hexdigest() == digest
    t.check(r.status == 200 and e.get("size") == size and same,
            "PUT 100 MB chunked, same bytes", e)
    hwm = a.vm()
    print("# agent VmHWM before %d kB, after 300 MB moved %d kB" % (hwm0, hwm))
    t.check(0 < hwm < 16 * 1024,
            "agent memory stays bounded (VmHWM %d kB < 16 MiB)" % hwm)
    os.unlink(src)
    a.request("DELETE", "/workspace/entry?path=big")


FS_TOOLS = ["read_file", "read_multiple_files", "write_file", "edit_file",
            "create_directory", "list_directory", "directory_tree",
            "move_file", "search_files", "get_file_info",
            "list_allowed_directories"]


def text_of(res):
    return res["content"][0]["text"] if res.get("content") else None


def mcp_tests(t, a, binary, tmp):
    st, body, _ = a.request("GET", "/fastapi/mcp/list_tools")
    t.eq((st, body), (200, b"{}"), "list_tools without servers: {}")
    st, body, _ = a.request("POST", "/fastapi/mcp/call_tool",
                            {"tool_name": "read_file",
                             "arguments": {"path": "x"}})
    t.eq((st, body), (500, b'{"detail":"Tool \'read_file\' not found."}'),
         "filesystem tools are not served unless told to")
    f = start(t, binary, tmp, "fs", extra_env={
        "SANDPOOL_AGENT_MCP_FILESYSTEM": "1"})
    if f is None:
        return
    W = os.path.realpath(f.workdir)
    st, tools, _ = f.call("GET", "/mcp/list_tools")
    fs = tools.get("filesystem", {})
    t.eq((st, list(tools), sorted(fs)), (200, ["filesystem"], sorted(FS_TOOLS)),
         "list_tools: the filesystem group with its 11 tools")
    shape_ok = all(
        v["name"] == k and v["json_schema"]["type"] == "function" and
        v["json_schema"]["function"]["name"] == k and
        v["json_schema"]["function"]["description"] and
        v["json_schema"]["function"]["parameters"]["type"] == "object"
        for k, v in fs.items())
    t.check(shape_ok, "list_tools: the json_schema shape of spec 6.3")
    params = {k: v["json_schema"]["function"]["parameters"]
              for k, v in fs.items()}
    t.eq(params["edit_file"]["required"], ["path", "edits"],
         "edit_file requires path and edits")
    t.eq(params["edit_file"]["properties"]["edits"]["items"]["required"],
         ["oldText", "newText"], "edit_file edits items require both texts")
    t.eq(params["edit_file"]["properties"]["dryRun"]["default"], False,
         "edit_file dryRun defaults to false")
    t.eq(params["search_files"]["properties"]["excludePatterns"],
         {"type": "array", "items": {"type": "string"}, "default": []},
         "search_files excludePatterns schema")
    t.eq(params["list_allowed_directories"],
         {"type": "object", "properties": {}, "required": []},
         "list_allowed_directories takes nothing")

    def ok_text(res):
        return (res.get("meta", "x") is None and res.get("isError") is False
                and res["content"][0].get("annotations", "x") is None and
                res["content"][0]["type"] == "text")

    st, res = f.tool("write_file", {"path": "notes.txt",
                                    "content": "alpha\nbeta\ngamma\n"})
    t.check(st == 200 and ok_text(res) and
            text_of(res) == "Successfully wrote to notes.txt" and
            open(W + "/notes.txt").read() == "alpha\nbeta\ngamma\n",
            "write_file", res)
    st, res = f.tool("read_file", {"path": W + "/notes.txt"})
    t.eq(text_of(res), "alpha\nbeta\ngamma\n", "read_file")
    st, res = f.tool("read_file", {"path": "/etc/passwd"})
    t.check(res.get("isError") is True and text_of(res).startswith(
        "Error: Access denied - path outside allowed directories"),
        "read_file outside: isError with upstream's message", res)
    os.symlink("/etc/passwd", W + "/pw")
    st, res = f.tool("read_file", {"path": "pw"})
    t.eq(text_of(res), "Error: Access denied - symlink target outside "
         "allowed directories", "read_file through a link out: refused")
    st, res = f.tool("read_file", {"path": "missing.txt"})
    t.check(res.get("isError") and "ENOENT" in text_of(res),
            "read_file missing: ENOENT", res)
    st, res = f.tool("read_file", {})
    t.check(res.get("isError") and "Invalid arguments" in text_of(res),
            "read_file without path: invalid arguments", res)
    st, res = f.tool("read_multiple_files", {"paths": ["notes.txt", "zz"]})
    t.check(text_of(res).startswith("notes.txt:\nalpha\nbeta\ngamma\n\n"
                                    "\n---\nzz: Error - ENOENT"),
            "read_multiple_files: contents and per-file errors", res)
    st, res = f.tool("edit_file", {"path": "notes.txt", "dryRun": True,
                                   "edits": [{"oldText": "beta",
                                              "newText": "BETA"}]})
    diff = text_of(res)
    t.check(diff.startswith("```diff\nIndex: " + W + "/notes.txt\n") and
            "--- " + W + "/notes.txt\toriginal\n" in diff and
            "@@ -1,3 +1,3 @@\n alpha\n-beta\n+BETA\n gamma\n" in diff and
            diff.endswith("```\n\n") and
            open(W + "/notes.txt").read() == "alpha\nbeta\ngamma\n",
            "edit_file dryRun: a unified diff, file unchanged", res)
    st, res = f.tool("edit_file", {"path": "notes.txt", "edits": [
        {"oldText": "beta", "newText": "BETA"},
        {"oldText": "  gamma", "newText": "  delta"}]})
    t.check(not res["isError"] and
            open(W + "/notes.txt").read() == "alpha\nBETA\ndelta\n",
            "edit_file: exact and whitespace-tolerant edits applied", res)
    st, res = f.tool("edit_file", {"path": "notes.txt", "edits": [
        {"oldText": "nowhere", "newText": "x"}]})
    t.check(res["isError"] and "Could not find exact match" in text_of(res),
            "edit_file: no match -> isError", res)
    st, res = f.tool("create_directory", {"path": "p/q/r"})
    t.check(text_of(res) == "Successfully created directory p/q/r" and
            os.path.isdir(W + "/p/q/r"), "create_directory (nested)")
    st, res = f.tool("list_directory", {"path": "."})
    t.eq(text_of(res), "[FILE] notes.txt\n[DIR] p\n[FILE] pw",
         "list_directory: [FILE]/[DIR] lines")
    st, res = f.tool("directory_tree", {"path": "p"})
    t.eq(json.loads(text_of(res)),
         [{"name": "q", "type": "directory", "children": [
             {"name": "r", "type": "directory", "children": []}]}],
         "directory_tree: JSON tree")
    t.check(text_of(res).startswith('[\n  {\n    "name": "q",'),
            "directory_tree: 2-space indentation")
    st, res = f.tool("move_file", {"source": "notes.txt",
                                   "destination": "p/q/moved.txt"})
    t.check(text_of(res) == "Successfully moved notes.txt to p/q/moved.txt"
            and os.path.exists(W + "/p/q/moved.txt"), "move_file", res)
    f.tool("write_file", {"path": "p/other.txt", "content": "o"})
    st, res = f.tool("move_file", {"source": "p/other.txt",
                                   "destination": "p/q/moved.txt"})
    t.check(res["isError"] and "already exists" in text_of(res),
            "move_file onto an existing file -> isError", res)
    st, res = f.tool("search_files", {"path": ".", "pattern": "MOVED"})
    t.eq(text_of(res), W + "/p/q/moved.txt",
         "search_files: case-insensitive part of the name")
    st, res = f.tool("search_files", {"path": ".", "pattern": "o",
                                      "excludePatterns": ["q"]})
    t.eq(text_of(res), W + "/p/other.txt", "search_files: excludePatterns")
    st, res = f.tool("search_files", {"path": ".", "pattern": "zzz"})
    t.eq(text_of(res), "No matches found", "search_files: no match")
    st, res = f.tool("get_file_info", {"path": "p/q/moved.txt"})
    info = dict(line.split(": ", 1) for line in text_of(res).split("\n"))
    t.check(sorted(info) == sorted(["size", "created", "modified",
                                    "accessed", "isDirectory", "isFile",
                                    "permissions"]) and
            info["size"] == "17" and info["isFile"] == "true" and
            re.match(r"^\d{3}$", info["permissions"]) and
            info["modified"].endswith("GMT+0000 (Coordinated Universal Time)"),
            "get_file_info: key: value lines", res)
    st, res = f.tool("list_allowed_directories")
    t.eq(text_of(res), "Allowed directories:\n" + f.workdir,
         "list_allowed_directories")


MCP_SERVER = r"""
import json, os, sys
def send(o):
    sys.stdout.write(json.dumps(o) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    meth, mid = m.get("method"), m.get("id")
    if meth == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": "2025-03-26", "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1"}}})
    elif meth == "tools/list":
        if not (m.get("params") or {}).get("cursor"):
            send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
                {"name": "echo", "description": "Echo text",
                 "inputSchema": {"type": "object", "properties": {
                     "text": {"type": "string"}}, "required": ["text"]}}],
                "nextCursor": "2"}})
        else:
            send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
                {"name": "where", "inputSchema": {"type": "object"}},
                {"name": "die", "inputSchema": {"type": "object"}}]}})
    elif meth == "tools/call":
        name = m["params"]["name"]
        args = m["params"].get("arguments") or {}
        if name == "echo":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [
                {"type": "text", "text": args.get("text", "")}],
                "isError": False}})
        elif name == "where":
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [
                {"type": "text", "text": os.environ.get("TINY", "") + " " +
                 os.getcwd()}]}})
        elif name == "die":
            os._exit(4)
"""


def mcp_server_tests(t, a, binary, tmp):
    W = os.path.realpath(a.workdir)
    script = os.path.join(tmp, "tiny_mcp.py")
    with open(script, "w") as f:
        f.write(MCP_SERVER)
    cfg = {"command": "python3", "args": [script], "env": {"TINY": "yes"}}
    st, body, r = a.request("POST", "/fastapi/mcp/add_servers", {
        "server_configs": {"mcpServers": {"tiny": cfg}}})
    t.eq((st, body, r.getheader("Content-Type")),
         (200, b"OK", "text/plain; charset=utf-8"),
         "add_servers: a stdio server -> OK")
    st, tools, _ = a.call("GET", "/mcp/list_tools")
    t.eq(sorted(tools.get("tiny", {})), ["die", "echo", "where"],
         "list_tools: the server's tools, every page of tools/list")
    t.eq(tools["tiny"]["echo"]["json_schema"]["function"],
         {"name": "echo", "description": "Echo text", "parameters": {
             "type": "object", "properties": {"text": {"type": "string"}},
             "required": ["text"]}}, "list_tools: schema of spec 6.3")
    st, res = a.tool("echo", {"text": "hi there"})
    t.eq((st, res), (200, {"meta": None, "content": [
        {"type": "text", "text": "hi there", "annotations": None}],
        "isError": False}), "call_tool routed to the server, result dumped")
    st, res = a.tool("where")
    t.eq(text_of(res), "yes " + W, "the server gets env and runs in the "
         "workspace")
    st, body, _ = a.request("POST", "/mcp/add_servers", {
        "server_configs": {"mcpServers": {"tiny": {"command": "false"}}}})
    st2, res = a.tool("echo", {"text": "still"})
    t.check(st == 200 and text_of(res) == "still",
            "add_servers: an existing name is kept without overwrite")
    st, body, _ = a.request("POST", "/mcp/add_servers", {
        "server_configs": {"mcpServers": {
            "web": {"type": "streamable_http", "url": "http://x/mcp"},
            "sse": {"url": "http://x/sse"}}}})
    t.check(st == 500 and b"not supported" in body,
            "add_servers: streamable_http / SSE -> 500 not supported", body)
    st, body, _ = a.request("POST", "/mcp/add_servers", {
        "server_configs": {"mcpServers": {"bad": {
            "command": "python3", "args": ["-c", "import sys; "
                                           "sys.stderr.write('boom\\n'); "
                                           "sys.exit(2)"]}}}})
    t.check(st == 500 and b"exited with status 2: boom" in body,
            "add_servers: a server that fails to start -> 500 with stderr",
            body)
    st, body, _ = a.request("POST", "/mcp/add_servers",
                            {"server_configs": {"mcpServers": {}}})
    t.eq(st, 500, "add_servers: no servers -> 500")
    st, body, _ = a.request("POST", "/mcp/call_tool", {"tool_name": "nope"})
    t.eq((st, body), (500, b'{"detail":"Tool \'nope\' not found."}'),
         "call_tool: unknown tool -> 500")
    st, res = a.tool("die")
    t.check(st == 500 and "exited with status 4" in res.get("detail", ""),
            "call_tool: the server dies during a call -> 500", res)
    st, tools, _ = a.call("GET", "/mcp/list_tools")
    t.eq(tools, {}, "list_tools: a dead server's tools are gone")
    st, body, _ = a.request("POST", "/mcp/add_servers", {
        "server_configs": {"mcpServers": {"tiny": cfg}}, "overwrite": True})
    st2, res = a.tool("echo", {"text": "back"})
    t.check(st == 200 and text_of(res) == "back",
            "add_servers again after a death")


def watcher_tests(t, a, binary, tmp):
    if shutil.which("git") is None:
        t.skip_("watcher with git", "git is not installed on this host")
        return
    W = os.path.realpath(a.workdir)
    for name in os.listdir(W):
        p = os.path.join(W, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    with open(W + "/f.txt", "w") as f:
        f.write("one\n")
    st, c1, _ = a.call("POST", "/fastapi/watcher/commit_changes", {})
    t.check(st == 200 and re.match(r"^[0-9a-f]{40}$", c1.get("commit", ""))
            and c1.get("message") == "Automated commit",
            "commit_changes: a new repository, the default message", c1)
    with open(W + "/f.txt", "w") as f:
        f.write("two\n")
    st, c2, _ = a.call("POST", "/watcher/commit_changes",
                       {"commit_message": "second"})
    t.check(st == 200 and c2.get("message") == "second" and
            c2["commit"] != c1["commit"], "commit_changes: a second commit",
            c2)
    st, res, _ = a.call("POST", "/watcher/generate_diff",
                        {"commit_a": c1["commit"], "commit_b": c2["commit"]})
    d = res.get("diffs", {}) if isinstance(res, dict) else {}
    t.check(st == 200 and list(d) == ["f.txt"] and
            "-one\n+two\n" in d["f.txt"],
            "generate_diff: {path: unified diff}", res)
    st, res, _ = a.call("POST", "/watcher/generate_diff",
                        {"commit_a": c1["commit"]})
    t.eq(st, 422, "generate_diff without commit_b -> 422")
    st, res, _ = a.call("GET", "/watcher/git_logs")
    logs = res.get("logs", []) if isinstance(res, dict) else []
    t.check(st == 200 and [x["commit"] for x in logs] ==
            [c2["commit"], c1["commit"]] and
            logs[0]["message"] == "second\n" and
            set(logs[0]) == {"commit", "author", "date", "message", "diff"} and
            "+two" in logs[0]["diff"] and
            re.match(r"^\d{4}-\d\d-\d\dT", logs[0]["date"]),
            "git_logs: newest first, with message and diff", res)
    bare_tests(t, binary, tmp)


def concurrency_tests(t, a, binary, tmp):
    """Shell, Python, file and MCP calls at once into one agent."""
    results = {}

    def run(key, fn):
        try:
            results[key] = fn()
        except Exception as e:  # noqa: BLE001 (reported below)
            results[key] = repr(e)

    jobs = {
        "shell1": lambda: a.shell("sleep 0.5; echo s1")[1],
        "shell2": lambda: a.shell("sleep 0.5; echo s2")[1],
        "cell": lambda: a.cell("import time\ntime.sleep(0.5)\nprint('c')")[1],
        "put": lambda: a.call("PUT", "/workspace/file?path=cc.txt", b"cc")[0],
        "list": lambda: a.call("GET", "/workspace/list?path=")[0],
        "tools": lambda: a.call("GET", "/mcp/list_tools")[0],
    }
    threads = [threading.Thread(target=run, args=(k, fn))
               for k, fn in jobs.items()]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    took = time.monotonic() - t0
    t.check(items(results.get("shell1", {}))[0].get("stdout") == "s1\n" and
            items(results.get("shell2", {}))[0].get("stdout") == "s2\n" and
            items(results.get("cell", {}))[0].get("stdout") == "c\n" and
            results.get("put") == 200 and results.get("list") == 200 and
            results.get("tools") == 200 and took < 5,
            "concurrent shell, Python, file and MCP calls (%.1f s)" % took,
            results)


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
