"""sandpool-agent as the runtime of real containers (spec section 6).

Starts containers of the busybox test image (a plain image: no libc, no
python3, no git, no agentscope files) and of the base image (Debian and
python3) directly through dockerd, each with the agent bind-mounted
read-only at /sandpool/agent as its entrypoint (PID 1), no network, its
unix socket in a bind-mounted directory and a bind-mounted /workspace, and
checks every route through that socket: shell commands (timeouts,
concurrency, reaping), Python state, the workspace (escapes refused,
multipart, 100 MB up and down with the agent's memory measured), the
filesystem MCP tools, a stdio MCP server, the watcher without git, and a
clean stop. Containers carry sandpool.owner=sandpool-test and a label of
this run, and are removed whatever happens.
"""

import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=600)
docker = harness.skip_unless_docker()
BUSYBOX = harness.TEST_IMAGE
BASE = "agentscope/runtime-sandbox-base:latest"
RUN = "%d-%s" % (os.getpid(), secrets.token_hex(4))
API = harness.API


class _Sweeper:
    """Removes this run's containers; registered with the harness so that
    it runs on every way out (exit, signal, watchdog)."""

    def close(self):
        try:
            for c in docker.containers(["sandpool.test-run=" + RUN]):
                docker.remove(c["Id"])
        except OSError:
            pass


harness._servers.append(_Sweeper())


class Box:
    """One container running the agent."""

    def __init__(self, image, env=None):
        self.image = image
        self.dir = harness.mkdtemp("spd")
        self.run = os.path.join(self.dir, "run")
        self.ws = os.path.join(self.dir, "ws")
        os.mkdir(self.run)
        os.mkdir(self.ws)
        self.sock = os.path.join(self.run, "agent.sock")
        self.token = secrets.token_hex(16)
        envl = ["SECRET_TOKEN=" + self.token,
                "SANDPOOL_AGENT_SOCKET=/run/sandpool/agent.sock",
                "SANDPOOL_AGENT_MAX_OUTPUT=65536"]
        envl += ["%s=%s" % kv for kv in (env or {}).items()]
        body = {
            "Image": image,
            "Entrypoint": ["/sandpool/agent"],
            "Cmd": [],
            "Env": envl,
            "Labels": {"sandpool.owner": "sandpool-test",
                       "sandpool.test-run": RUN},
            "HostConfig": {
                "Binds": [harness.AGENT_BIN + ":/sandpool/agent:ro",
                          self.run + ":/run/sandpool",
                          self.ws + ":/workspace"],
                "NetworkMode": "none",
            },
        }
        name = "sandpool-test-%s-%s" % (RUN, secrets.token_hex(3))
        st, res = docker.request("POST", "%s/containers/create?name=%s"
                                 % (API, name), body)
        if st != 201:
            raise RuntimeError("create: %s %s" % (st, res))
        self.id = res["Id"]
        st, res = docker.request("POST", "%s/containers/%s/start"
                                 % (API, self.id))
        if st not in (204, 304):
            raise RuntimeError("start: %s %s" % (st, res))
        if not harness.wait_for(self.healthy, 20, 0.05):
            raise RuntimeError("the agent did not answer: %s" % self.logs())

    def healthy(self):
        try:
            return self.request("GET", "/fastapi/healthz")[0] == 200
        except OSError:
            return False

    def logs(self):
        st, body = docker.request(
            "GET", "%s/containers/%s/logs?stdout=1&stderr=1"
            % (API, self.id))
        return body if isinstance(body, str) else repr(body)

    def request(self, method, path, body=None, headers=None, auth=True,
                timeout=60):
        """(status, body bytes, response) over the unix socket."""
        c = harness.UnixHTTPConnection(self.sock, timeout=timeout)
        h = {"Authorization": "Bearer " + self.token} if auth else {}
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.read(), r
        finally:
            c.close()

    def call(self, method, path, body=None, headers=None):
        st, data, r = self.request(method, path, body, headers)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def shell(self, command, timeout=None):
        body = {"command": command}
        if timeout is not None:
            body["timeout"] = timeout
        st, res = self.call("POST", "/fastapi/tools/run_shell_command", body)
        return st, res

    def cell(self, code, timeout=None):
        body = {"code": code}
        if timeout is not None:
            body["timeout"] = timeout
        return self.call("POST", "/fastapi/tools/run_ipython_cell", body)

    def tool(self, name, arguments=None):
        return self.call("POST", "/fastapi/mcp/call_tool",
                         {"tool_name": name, "arguments": arguments or {}})

    def pid(self):
        return docker.inspect(self.id)["State"]["Pid"]

    def vm(self, key):
        """A memory figure (kB) of the agent, from the host's /proc."""
        with open("/proc/%d/status" % self.pid()) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return -1

    def remove(self):
        docker.remove(self.id)


def out(res):
    """{description: text} of a CallToolResult."""
    if not isinstance(res, dict):
        return {}
    d = {i.get("description"): i.get("text") for i in res.get("content", [])}
    d["isError"] = res.get("isError")
    return d


def text(res):
    return res["content"][0]["text"] if isinstance(res, dict) and \
        res.get("content") else None


FORBIDDEN = (403, b'{"detail":"Permission error. Access restricted to '
                  b'/workspace directory."}')


def common(b, what):
    """Checks that hold in any image."""
    st, body, r = b.request("GET", "/fastapi/healthz")
    t.is_((st, body, r.getheader("content-type")), (200, b"OK", None),
          "%s: healthz over the bind-mounted unix socket" % what)
    st, body, _ = b.request("GET", "/fastapi/healthz", auth=False)
    t.is_((st, body), (403, b'{"detail":"Missing or invalid authorization '
                            b'header"}'), "%s: no token -> 403" % what)
    rss = b.vm("VmRSS")
    t.diag("%s: agent idle VmRSS %d kB, VmHWM %d kB"
           % (what, rss, b.vm("VmHWM")))
    t.ok(0 < rss < 8 * 1024, "%s: agent idle RSS %d kB < 8 MiB" % (what, rss))

    st, res = b.shell("tr '\\0' ' ' < /proc/1/cmdline; echo; "
                      "echo x > /sandpool/agent")
    o = out(res)
    t.ok(o.get("stdout") == "/sandpool/agent \n" and
         "Read-only file system" in (o.get("stderr") or ""),
         "%s: the agent is PID 1, mounted read-only" % what, res)

    # Orphans are reaped by PID 1.
    b.shell("(sleep 0.3 &) ; (sleep 0.2 &) ; sleep 0.1 &")
    time.sleep(1.0)
    st, res = b.shell("cat /proc/[0-9]*/stat | cut -d' ' -f3")
    states = (out(res).get("stdout") or "").split()
    t.ok(states and "Z" not in states,
         "%s: no zombies after orphaned background jobs" % what, states)

    # A long command is killed by its timeout, group and all.
    t0 = time.monotonic()
    st, res = b.shell("sleep 30 & sleep 30; echo never", timeout=1)
    o = out(res)
    t.ok(time.monotonic() - t0 < 5 and o.get("returncode") == "-9" and
         "command timed out after 1 s" in (o.get("stderr") or ""),
         "%s: timeout 1 kills sleep 30 and says so" % what, res)
    time.sleep(0.3)
    st, res = b.shell("cat /proc/[0-9]*/comm | grep -c '^sleep$'")
    t.is_((out(res).get("stdout") or "").strip(), "0",
          "%s: the timed-out command's whole group is gone" % what)

    # Concurrent tool calls into one sandbox.
    results = [None] * 6

    def one(i):
        results[i] = b.shell("sleep 1; echo %d" % i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    took = time.monotonic() - t0
    t.ok(all(r and out(r[1]).get("stdout") == "%d\n" % i
             for i, r in enumerate(results)) and took < 3,
         "%s: 6 concurrent 1 s commands answer in %.1f s" % (what, took))

    # Workspace routes, seen from both sides of the bind mount.
    st, e = b.call("PUT", "/fastapi/workspace/file?path=d/a.txt", b"hello",
                   {"Content-Type": "text/plain; charset=utf-8"})
    t.ok(st == 200 and e.get("path") == "/workspace/d/a.txt" and
         e.get("size") == 5 and
         open(os.path.join(b.ws, "d/a.txt")).read() == "hello",
         "%s: PUT file: entry with the container path, file on the host"
         % what, e)
    st, body, _ = b.request("GET", "/fastapi/workspace/file?path="
                            "%2Fworkspace%2Fd%2Fa.txt&format=bytes")
    t.is_((st, body), (200, b"hello"), "%s: GET file back" % what)
    st, res = b.call("GET", "/fastapi/workspace/list?path=&depth=2")
    t.is_([x["path"] for x in res] if st == 200 else res,
          ["/workspace/d", "/workspace/d/a.txt"], "%s: list depth 2" % what)
    st, res = b.call("POST", "/fastapi/workspace/mkdir", {"path": "e"})
    st2, e = b.call("POST", "/fastapi/workspace/move",
                    {"source": "d/a.txt", "destination": "e/b.txt"})
    st3, ex = b.call("GET", "/fastapi/workspace/exists?path=e/b.txt")
    st4, _, _ = b.request("DELETE", "/fastapi/workspace/entry?path=d")
    t.ok(res == {"created": True} and e.get("path") == "/workspace/e/b.txt"
         and ex == {"exists": True} and st4 == 204 and
         not os.path.exists(os.path.join(b.ws, "d")),
         "%s: mkdir, move, exists, delete" % what)
    b.shell("ln -s /etc /workspace/etc-link; ln -s /etc/passwd "
            "/workspace/pw")
    for path in ("../etc/passwd", "%2Fetc%2Fpasswd", "etc-link%2Fpasswd",
                 "pw", "%2Fworkspace%2F..%2Fetc%2Fhosts"):
        st, body, _ = b.request("GET", "/fastapi/workspace/file?path=" + path)
        t.is_((st, body), FORBIDDEN, "%s: GET %s refused" % (what, path))
    st, body, _ = b.request("PUT", "/fastapi/workspace/file?path="
                            "etc-link%2Fsandpool-test", b"x")
    st2, res = b.shell("test -e /etc/sandpool-test && echo yes || echo no")
    t.ok((st, body) == FORBIDDEN and out(res).get("stdout") == "no\n",
         "%s: PUT through a link to /etc refused, nothing written" % what)

    # Multipart, both orders.
    parts_sync = (b"--bnd\r\nContent-Disposition: form-data; name=\"paths\""
                  b"\r\n\r\nm/1.txt\r\n--bnd\r\nContent-Disposition: "
                  b"form-data; name=\"paths\"\r\n\r\nm/2.txt\r\n--bnd\r\n"
                  b"Content-Disposition: form-data; name=\"files\"; "
                  b"filename=\"1.txt\"\r\n\r\none\r\n--bnd\r\n"
                  b"Content-Disposition: form-data; name=\"files\"; "
                  b"filename=\"2.txt\"\r\n\r\ntwo\r\n--bnd--\r\n")
    st, res = b.call("POST", "/fastapi/workspace/files:batch", parts_sync,
                     {"Content-Type": "multipart/form-data; boundary=bnd"})
    parts_async = (b"--bnd\r\nContent-Disposition: form-data; name=\"paths\""
                   b"\r\n\r\nn/1.txt\r\n--bnd\r\nContent-Disposition: "
                   b"form-data; name=\"files\"; filename=\"1.txt\"\r\n\r\n"
                   b"uno\r\n--bnd\r\nContent-Disposition: form-data; "
                   b"name=\"paths\"\r\n\r\nn/2.txt\r\n--bnd\r\n"
                   b"Content-Disposition: form-data; name=\"files\"; "
                   b"filename=\"2.txt\"\r\n\r\ndos\r\n--bnd--\r\n")
    st2, res2 = b.call("POST", "/fastapi/workspace/files:batch",
                       parts_async,
                       {"Content-Type": "multipart/form-data; boundary=bnd"})
    t.ok(st == 200 and st2 == 200 and
         [x["path"] for x in res] == ["/workspace/m/1.txt",
                                      "/workspace/m/2.txt"] and
         open(os.path.join(b.ws, "m/2.txt")).read() == "two" and
         open(os.path.join(b.ws, "n/2.txt")).read() == "dos",
         "%s: files:batch, paths first and interleaved" % what, (res, res2))

    # The watcher without git.
    st, body, _ = b.request("GET", "/fastapi/watcher/git_logs")
    t.is_((st, body), (500, b'{"detail":"git is not available in this '
                            b'sandbox"}'), "%s: watcher without git" % what)


def transfer(b, what):
    """100 MB up and down through the agent; its VmHWM measured."""
    size = 100 * 1000 * 1000
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    for i in range(size // len(block)):
        digest.update(block)
    digest.update(block[:size % len(block)])

    def body():
        sent = 0
        while sent < size:
            n = min(len(block), size - sent)
            yield block[:n]
            sent += n

    c = harness.UnixHTTPConnection(b.sock, timeout=120)
    t0 = time.monotonic()
    c.request("PUT", "/fastapi/workspace/file?path=big.bin", body=body(),
              headers={"Authorization": "Bearer " + b.token,
                       "Content-Length": str(size),
                       "Content-Type": "application/octet-stream"})
    r = c.getresponse()
    e = json.loads(r.read())
    up = time.monotonic() - t0
    hwm_up = b.vm("VmHWM")
    t.ok(r.status == 200 and e.get("size") == size,
         "%s: PUT 100 MB in %.2f s" % (what, up), e)
    t0 = time.monotonic()
    c.request("GET", "/fastapi/workspace/file?path=big.bin&format=bytes",
              headers={"Authorization": "Bearer " + b.token})
    r = c.getresponse()
    got = hashlib.sha256()
    n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got.update(chunk)
        n += len(chunk)
    down = time.monotonic() - t0
    c.close()
    hwm = b.vm("VmHWM")
    t.ok(r.status == 200 and n == size and
         got.hexdigest() == digest.hexdigest(),
         "%s: GET 100 MB back, same bytes, in %.2f s" % (what, down))
    t.diag("%s: agent VmHWM after the 100 MB PUT %d kB, after the GET %d kB"
           % (what, hwm_up, hwm))
    t.ok(0 < hwm < 16 * 1024,
         "%s: agent VmHWM %d kB < 16 MiB through 100 MB each way"
         % (what, hwm))
    b.request("DELETE", "/fastapi/workspace/entry?path=big.bin")


FS_TOOLS = ["create_directory", "directory_tree", "edit_file",
            "get_file_info", "list_allowed_directories", "list_directory",
            "move_file", "read_file", "read_multiple_files", "search_files",
            "write_file"]


def fs_tools(b, what):
    """Every filesystem MCP tool, served by the agent itself."""
    st, res = b.call("GET", "/fastapi/mcp/list_tools")
    t.is_(sorted(res.get("filesystem", {})) if st == 200 else res, FS_TOOLS,
          "%s: list_tools serves the filesystem group natively" % what)
    calls = [
        ("write_file", {"path": "f.txt", "content": "a\nb\n"},
         "Successfully wrote to f.txt"),
        ("read_file", {"path": "/workspace/f.txt"}, "a\nb\n"),
        ("read_multiple_files", {"paths": ["f.txt"]}, "f.txt:\na\nb\n\n"),
        ("edit_file", {"path": "f.txt", "edits": [{"oldText": "b",
                                                    "newText": "c"}]},
         re.compile(r"^```diff\nIndex: /workspace/f.txt\n=+\n--- /workspace/"
                    r"f.txt\toriginal\n\+\+\+ /workspace/f.txt\tmodified\n"
                    r"@@ -1,2 \+1,2 @@\n a\n-b\n\+c\n```\n\n$")),
        ("create_directory", {"path": "g/h"},
         "Successfully created directory g/h"),
        ("list_directory", {"path": "/workspace"}, "[FILE] f.txt\n[DIR] g"),
        ("directory_tree", {"path": "g"},
         '[\n  {\n    "name": "h",\n    "type": "directory",\n'
         '    "children": []\n  }\n]'),
        ("move_file", {"source": "f.txt", "destination": "g/h/f.txt"},
         "Successfully moved f.txt to g/h/f.txt"),
        ("search_files", {"path": "/workspace", "pattern": "F.T"},
         "/workspace/g/h/f.txt"),
        ("get_file_info", {"path": "g/h/f.txt"},
         re.compile(r"^size: 4\ncreated: .*\nmodified: .*\naccessed: .*\n"
                    r"isDirectory: false\nisFile: true\npermissions: "
                    r"\d{3}$")),
        ("list_allowed_directories", {}, "Allowed directories:\n/workspace"),
    ]
    for name, args, want in calls:
        st, res = b.tool(name, args)
        got = text(res)
        good = (want.match(got or "") is not None
                if hasattr(want, "match") else got == want)
        t.ok(st == 200 and good and res.get("isError") is False,
             "%s: %s" % (what, name), res)
    st, res = b.tool("read_file", {"path": "/etc/passwd"})
    t.ok(res.get("isError") is True and "outside allowed directories" in
         (text(res) or ""), "%s: read_file outside: isError" % what, res)


MCP_SERVER = r"""
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    meth, mid = m.get("method"), m.get("id")
    if meth == "initialize":
        r = {"protocolVersion": "2025-03-26", "capabilities": {"tools": {}},
             "serverInfo": {"name": "tiny", "version": "1"}}
    elif meth == "tools/list":
        r = {"tools": [{"name": "echo", "description": "Echo",
                        "inputSchema": {"type": "object", "properties": {
                            "text": {"type": "string"}},
                            "required": ["text"]}}]}
    elif meth == "tools/call":
        r = {"content": [{"type": "text",
                          "text": m["params"]["arguments"]["text"]}]}
    else:
        continue
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": mid,
                                 "result": r}) + "\n")
    sys.stdout.flush()
"""


def python_base(b):
    """The base image: python3 without IPython."""
    what = "base"
    st, res = b.cell("a = 20\nimport os\ndef f(x):\n    return x + 1")
    st, res = b.cell("f(a) * 2")
    t.is_(out(res), {"stdout": "Out[2]: 42\n", "isError": False},
          "base: Python state persists; Out[n] of the plain executor")
    st, res = b.cell("print(os.getcwd())\nimport sys\n"
                     "print('warn', file=sys.stderr)")
    t.is_(out(res), {"stdout": "/workspace\n", "stderr": "warn\n",
                     "isError": True},
          "base: cells run in /workspace, stderr captured")
    st, res = b.cell("import time\ntime.sleep(30)", timeout=1)
    st2, res2 = b.cell("print(a)")
    t.ok("timed out after 1 s: interrupted" in
         (out(res).get("stderr") or "") and out(res2).get("stdout") == "20\n",
         "base: a cell's timeout interrupts it; state survives", (res, res2))
    st, res = b.cell("os._exit(3)")
    st2, res2 = b.cell("print('a' in dir())")
    t.ok("died while running this cell" in (out(res).get("stderr") or "") and
         out(res2).get("stdout") == "False\n",
         "base: a dead interpreter is reported and restarted clean",
         (res, res2))
    with open(os.path.join(b.ws, "tiny_mcp.py"), "w") as f:
        f.write(MCP_SERVER)
    st, body, _ = b.request("POST", "/fastapi/mcp/add_servers", {
        "server_configs": {"mcpServers": {"tiny": {
            "command": "python3", "args": ["/workspace/tiny_mcp.py"]}}}})
    st2, res = b.tool("echo", {"text": "from the container"})
    st3, tools = b.call("GET", "/fastapi/mcp/list_tools")
    t.ok(st == 200 and body == b"OK" and
         text(res) == "from the container" and list(tools) == ["tiny"],
         "%s: add_servers runs a stdio MCP server from the image" % what,
         (st, body, res, tools))


def busybox_only(b):
    """The plain image: nothing of agentscope, no python3."""
    what = "busybox"
    st, res = b.shell("ls -d /agentscope_runtime /usr/bin/python3 "
                      "/lib/*libc* 2>&1 | wc -l; ls /agentscope_runtime")
    t.ok((out(res).get("stdout") or "").startswith("3\n") and
         out(res).get("returncode") != "0",
         "busybox: a plain image (no agentscope files, python3 or libc)",
         res)
    st, res = b.cell("print(1)")
    t.ok(st == 200 and out(res).get("isError") is True and
         "python3 is not available in this sandbox" in
         (out(res).get("stderr") or ""),
         "busybox: run_ipython_cell gives a clear error result", res)
    st, res = b.call("POST", "/fastapi/mcp/add_servers", {
        "server_configs": {"mcpServers": {"x": {"command": "python3"}}}})
    t.ok(st == 500 and "not available" in res.get("detail", ""),
         "busybox: add_servers with a command the image lacks -> 500", res)


def stop(b, what):
    """docker stop: SIGTERM to PID 1, a clean and quick exit."""
    t0 = time.monotonic()
    st, _ = docker.request("POST", "%s/containers/%s/stop?t=10"
                           % (API, b.id), timeout=30)
    took = time.monotonic() - t0
    state = docker.inspect(b.id)["State"]
    t.ok(st in (204, 304) and state["ExitCode"] == 0 and took < 5,
         "%s: docker stop: exit 0 in %.1f s" % (what, took), state)
    b.remove()


def through_manager():
    """The filesystem type through runtime-sandbox-server: its environment
    tells the agent to serve the filesystem tools (spec 8.1, item 4)."""
    s = harness.Server(pool_size=0)
    try:
        name = s.call("create", sandbox_type="filesystem")
        tools = s.call("list_tools", identity=name)
        t.ok(isinstance(tools, dict) and
             sorted(tools.get("filesystem", {})) == FS_TOOLS and
             "generic" in tools,
             "manager: a filesystem sandbox lists the filesystem tools",
             tools)
        res = s.call("call_tool", identity=name,
                     tool_name="create_directory",
                     arguments={"path": "test"})
        res2 = s.call("call_tool", identity=name,
                      tool_name="list_allowed_directories", arguments={})
        t.ok(text(res) == "Successfully created directory test" and
             text(res2) == "Allowed directories:\n/workspace",
             "manager: create_directory and list_allowed_directories",
             (res, res2))
        s.call("release", identity=name)
    finally:
        s.close()


def main():
    have_base = docker.image_exists(BASE)
    through_manager()
    b = Box(BUSYBOX)
    common(b, "busybox")
    busybox_only(b)
    transfer(b, "busybox")
    stop(b, "busybox")
    b = Box(BUSYBOX, {"SANDPOOL_AGENT_MCP_FILESYSTEM": "1"})
    fs_tools(b, "busybox")
    b.remove()
    if not have_base:
        t.skip("base image checks", "%s is missing "
               "(runtime-sandbox-builder base)" % BASE)
        return
    b = Box(BASE)
    common(b, "base")
    python_base(b)
    stop(b, "base")


t.run("runtime in containers", main)
left = docker.containers(["sandpool.test-run=" + RUN])
for c in left:
    docker.remove(c["Id"])
t.is_(len(left), 0, "every container of the run was removed by the test")
sys.exit(t.done())
