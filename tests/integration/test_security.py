"""Secure by default, robust under bad input: what a sandbox may do (pids,
memory, network, capabilities, tokens), what the API refuses (no token on
a public HOST, slow clients, too many connections, bad bodies, identities
and mount dirs, /cleanup) and what a hostile runtime cannot do to the
manager.

Servers run on loopback with the harness (own instance id, ports, dirs);
the sandbox types of this file are written to a temporary extension file:
"box" (busybox + agent, default network none, small limits), "ro"
(read-only root, non-root user) and "junk" (an image whose runtime answers
garbage, made here by committing a busybox container and removed at
exit)."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=600)
docker = harness.skip_unless_docker()
API = harness.API
LABEL = "sandpool.test.security=%d" % os.getpid()
JUNK_IMAGE = "sandpool-test/junk:%d" % os.getpid()
BOX_PIDS = 64
BOX_MEMORY = 64 << 20

# The junk runtime: answers /healthz, then garbage (an HTTP 200 with a
# body that is no JSON, truncated JSON, and bytes that are not HTTP).
JUNK_SCRIPT = r'''read -r line
len=0
while read -r h; do
  h=${h%$(printf "\r")}
  [ -z "$h" ] && break
  case "$h" in [Cc]ontent-[Ll]ength:*) len=${h#*:}; len=$((len+0));; esac
done
[ "$len" -gt 0 ] && head -c "$len" >/dev/null
case "$line" in
*healthz*) printf "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";;
*list_tools*) printf "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n[1,2";;
*run_shell_command*) printf "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n\001\377garbage<b>";;
*) printf "SSH-2.0-junk\r\n\377\376garbage without http\r\n";;
esac
'''

DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID",
                "KILL"]


def make_junk_image():
    """Commits a busybox container whose command is the junk server."""
    status, body = docker.request(
        "POST", "%s/containers/create?name=sandpool-test-junk-%d"
        % (API, os.getpid()),
        {"Image": harness.TEST_IMAGE,
         "Cmd": ["nc", "-ll", "-p", "80", "-e", "sh", "-c", JUNK_SCRIPT],
         "Labels": {"sandpool.test.security": str(os.getpid())}})
    if status != 201:
        raise RuntimeError("create junk container: %s %s" % (status, body))
    cid = body["Id"]
    try:
        repo, tag = JUNK_IMAGE.split(":")
        status, body = docker.request(
            "POST", "%s/commit?container=%s&repo=%s&tag=%s"
            % (API, cid, urllib.parse.quote(repo, safe=""), tag))
        if status != 201:
            raise RuntimeError("commit junk image: %s %s" % (status, body))
    finally:
        docker.remove(cid)


def remove_junk_image():
    docker.request("DELETE", "%s/images/%s?force=1"
                   % (API, urllib.parse.quote(JUNK_IMAGE, safe="")))


def write_types(path):
    types = [
        {"name": "box", "image": harness.TEST_IMAGE,
         "resource_limits": {"memory": BOX_MEMORY, "pids": BOX_PIDS,
                             "cpu": 0.5}},
        {"name": "ro", "image": harness.TEST_IMAGE, "read_only": True,
         "user": "1000:1000"},
        {"name": "junk", "image": JUNK_IMAGE, "inject_agent": False,
         "runtime_port": 80, "timeout": 10},
    ]
    with open(path, "w") as f:
        json.dump(types, f)


def shell(s, name, command, timeout=60):
    """run_shell_command; returns (stdout, stderr, returncode, data)."""
    data = s.call("call_tool", identity=name, tool_name="run_shell_command",
                  arguments={"command": command}, timeout=timeout)
    out = err = rc = None
    for item in (data or {}).get("content") or []:
        if item.get("description") == "stdout":
            out = item.get("text")
        elif item.get("description") == "stderr":
            err = item.get("text")
        elif item.get("description") == "returncode":
            rc = item.get("text")
    return out, err, rc, data


def create(s, sandbox_type, **kw):
    """A cold create; waits out the start-up 503 (the engine's ping and
    runtime check come after /health answers)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            name = s.call("create", sandbox_type=sandbox_type, **kw)
            break
        except harness.RpcError as e:
            if e.status != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    if not isinstance(name, str):
        raise RuntimeError("create %s gave %r; log:\n%s"
                           % (sandbox_type, name, s.log()[-3000:]))
    return name


def cgroup_file(cid, controller, name):
    """A cgroup file of a container (v1 cgroupfs, v2, or systemd)."""
    for p in ("/sys/fs/cgroup/%s/docker/%s/%s" % (controller, cid, name),
              "/sys/fs/cgroup/docker/%s/%s" % (cid, name),
              "/sys/fs/cgroup/system.slice/docker-%s.scope/%s" % (cid, name),
              "/sys/fs/cgroup/%s/system.slice/docker-%s.scope/%s"
              % (controller, cid, name)):
        if os.path.exists(p):
            return p
    return None


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


# ---------------------------------------------------------------- checks

def test_defaults(s):
    box = create(s, "box")
    base = create(s, "base")
    try:
        hc = docker.inspect(box)["HostConfig"]
        t.is_(hc.get("CapDrop"), ["ALL"], "box: CapDrop ALL")
        t.is_(sorted(hc.get("CapAdd") or []), sorted(DEFAULT_CAPS),
              "box: CapAdd the six a shell needs")
        t.is_(hc.get("SecurityOpt"), ["no-new-privileges"],
              "box: no-new-privileges")
        t.is_(hc.get("PidsLimit"), BOX_PIDS, "box: PidsLimit")
        t.is_((hc.get("Memory"), hc.get("MemorySwap")),
              (BOX_MEMORY, BOX_MEMORY), "box: Memory = MemorySwap")
        t.is_(hc.get("NanoCpus"), 500000000, "box: NanoCpus")
        t.is_(hc.get("NetworkMode"), "none", "box: agent type, network none")
        t.ok(not hc.get("PortBindings"), "box: no published port",
             hc.get("PortBindings"))
        t.is_(s.call("get_info", identity=box).get("url"), "",
              "box: get_info url empty (no network)")
        hcb = docker.inspect(base)["HostConfig"]
        binds = [b for v in (hcb.get("PortBindings") or {}).values()
                 for b in v]
        t.ok(binds and all(b.get("HostIp") == "127.0.0.1" for b in binds),
             "bridged base: runtime port published on 127.0.0.1 only",
             binds)
        t.is_((hcb.get("PidsLimit"), hcb.get("Memory"), hcb.get("NanoCpus")),
              (256, 1 << 30, 1000000000),
              "base without limits in its entry: 256 pids, 1 GiB, 1 CPU")
        out, _, rc, _ = shell(s, box, "grep -E '^(CapEff|NoNewPrivs)' "
                              "/proc/self/status")
        t.ok(rc == "0" and "NoNewPrivs:\t1" in (out or ""),
             "inside: NoNewPrivs 1", out)
        capeff = [ln.split()[1] for ln in (out or "").splitlines()
                  if ln.startswith("CapEff")]
        t.is_(capeff, ["00000000000000eb"],
              "inside: effective capabilities are the six (0xeb)")
        out, err, rc, _ = shell(s, box, "ping -c 1 -W 1 127.0.0.1")
        t.ok(rc != "0", "inside: no raw sockets (ping fails)", (out, err))
        out, err, rc, _ = shell(
            s, box, "touch f && chown 1000:1000 f && chmod 600 f && "
            "su -s /bin/sh nobody -c 'id -u' && "
            "(su -s /bin/sh nobody -c 'exec sleep 30' >/dev/null 2>&1 &) && "
            "sleep 0.3 && kill $(pidof sleep) && echo ok")
        t.ok((out or "").endswith("ok\n") and rc == "0",
             "inside: chown, chmod, su and kill (another user's process) "
             "work as root", (out, err, rc))
    finally:
        s.call("release", identity=box)
        s.call("release", identity=base)


def test_fork_bomb(s):
    bomb = create(s, "box")
    other = create(s, "box")
    try:
        cid = docker.inspect(bomb)["Id"]
        load_before = os.getloadavg()[0]
        out, err, rc, _ = shell(
            s, bomb, "i=0; while [ $i -lt 1000 ]; do "
            "sleep 120 >/dev/null 2>&1 & i=$((i+1)); done; echo spawned $i",
            timeout=60)
        t.ok(rc not in (None, "0") and "fork" in (err or "").lower(),
             "fork bomb: the shell runs out of processes (can't fork)",
             (out, (err or "")[:300], rc))
        path = cgroup_file(cid, "pids", "pids.current")
        if path is None:
            t.skip("fork bomb: pids.current at the limit", "no cgroup file")
        else:
            cur = read_int(path)
            t.ok(BOX_PIDS - 4 <= cur <= BOX_PIDS,
                 "fork bomb: pids.current %d is at the limit %d"
                 % (cur, BOX_PIDS))
        t0 = time.monotonic()
        status, _, _ = s.request("GET", "/health", fresh=True)
        t.ok(status == 200 and time.monotonic() - t0 < 1,
             "fork bomb: the server answers at once")
        out, _, rc, _ = shell(s, other, "echo alive")
        t.is_((out, rc), ("alive\n", "0"),
              "fork bomb: another sandbox still works")
        t.ok(os.getloadavg()[0] < load_before + 4,
             "fork bomb: host load stays sane (%.2f -> %.2f)"
             % (load_before, os.getloadavg()[0]))
        t.is_(s.call("release", identity=bomb), True,
              "fork bomb: the bombed sandbox is released")
        t.ok(docker.inspect(cid) is None, "fork bomb: its container is gone")
    finally:
        s.call("release", identity=bomb)
        s.call("release", identity=other)


def test_memory_hog(s):
    name = create(s, "box")
    try:
        cid = docker.inspect(name)["Id"]
        out, err, rc, data = shell(
            s, name, "dd if=/dev/zero of=/dev/null bs=200M count=1")
        t.ok(rc in ("137", "-9"),
             "memory hog: killed by the OOM killer (returncode %s)" % rc,
             (out, err, data))
        path = cgroup_file(cid, "memory", "memory.oom_control")
        if path is not None:
            with open(path) as f:
                kills = [ln for ln in f.read().splitlines()
                         if ln.startswith("oom_kill ")]
            t.ok(kills and int(kills[0].split()[1]) >= 1,
                 "memory hog: the cgroup counted an OOM kill", kills)
        else:
            path = cgroup_file(cid, "memory", "memory.events")
            if path is None:
                t.skip("memory hog: OOM counted", "no cgroup file")
            else:
                with open(path) as f:
                    ev = dict(ln.split() for ln in f.read().splitlines())
                t.ok(int(ev.get("oom_kill", 0)) >= 1,
                     "memory hog: the cgroup counted an OOM kill", ev)
        out, _, rc, _ = shell(s, name, "echo recovered")
        t.is_((out, rc), ("recovered\n", "0"),
              "memory hog: the sandbox recovers (agent survived)")
        st = docker.inspect(name)["State"]
        t.is_(st.get("Status"), "running", "memory hog: container running")
    finally:
        s.call("release", identity=name)


def test_network_none(s):
    box = create(s, "box")
    base = create(s, "base")
    lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lis.bind(("0.0.0.0", 0))
    lis.listen(8)
    port = lis.getsockname()[1]
    stop = threading.Event()

    def serve():
        """Greets and hangs up, so that nc ends."""
        lis.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lis.accept()
            except (socket.timeout, OSError):
                continue
            c.sendall(b"hello from the host\n")
            c.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        gw = docker.inspect(base)["NetworkSettings"]["Networks"]["bridge"][
            "Gateway"]
        out, err, rc, _ = shell(s, base, "timeout 5 nc -w 3 %s %d "
                                "</dev/null" % (gw, port))
        t.ok("hello from the host" in (out or ""),
             "control: a bridged sandbox reaches the host at %s:%d"
             % (gw, port), (out, err, rc))
        for target in ("%s %d" % (gw, port), "127.0.0.1 %d" % s.port,
                       "1.1.1.1 53"):
            out, err, rc, _ = shell(s, box, "timeout 5 nc -w 3 %s "
                                    "</dev/null" % target)
            t.ok("hello" not in (out or "") and rc != "0",
                 "network none: cannot connect to %s" % target,
                 (out, err, rc))
        out, _, rc, _ = shell(s, box, "ip -o link | cut -d: -f2; "
                              "ip route | wc -l")
        t.is_([w.strip() for w in (out or "").split("\n") if w.strip()],
              ["lo", "0"], "network none: only lo, no route")
    finally:
        stop.set()
        th.join()
        lis.close()
        s.call("release", identity=box)
        s.call("release", identity=base)


def agent_get(sock_path, token, path="/fastapi/healthz"):
    c = harness.UnixHTTPConnection(sock_path, timeout=10)
    try:
        headers = {"Authorization": "Bearer " + token} if token is not None \
            else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, harness.load_json_or_none(r.read())
    finally:
        c.close()


def test_tokens(s):
    a = create(s, "box")
    b = create(s, "box")
    try:
        ia = s.call("get_info", identity=a)
        ib = s.call("get_info", identity=b)
        sock_b = os.path.join(s.run_dir, ib["session_id"], "agent.sock")
        t.ok(ia["runtime_token"] != ib["runtime_token"],
             "each sandbox has its own token")
        t.is_(agent_get(sock_b, ib["runtime_token"])[0], 200,
              "B's runtime accepts B's token")
        t.is_(agent_get(sock_b, ia["runtime_token"]),
              (403, {"detail": "Invalid secret token"}),
              "B's runtime refuses A's token")
        t.is_(agent_get(sock_b, None),
              (403, {"detail": "Missing or invalid authorization header"}),
              "B's runtime refuses a request without a token")
        t.is_(agent_get(sock_b, ib["runtime_token"] + "x")[0], 403,
              "B's runtime refuses a longer token")
        t.is_(agent_get(sock_b, ib["runtime_token"][:-1])[0], 403,
              "B's runtime refuses a prefix of its token")
        mode = os.stat(sock_b).st_mode
        t.ok(stat.S_IMODE(os.stat(os.path.dirname(sock_b)).st_mode) == 0o700
             and stat.S_IMODE(mode) & 0o077 == 0,
             "the runtime's socket is for its owner only")
    finally:
        s.call("release", identity=a)
        s.call("release", identity=b)


def test_read_only_user(s):
    name = create(s, "ro")
    try:
        hc = docker.inspect(name)
        t.is_((hc["HostConfig"].get("ReadonlyRootfs"), hc["Config"]["User"]),
              (True, "1000:1000"), "ro: ReadonlyRootfs, user 1000:1000")
        t.ok("/tmp" in (hc["HostConfig"].get("Tmpfs") or {}) and
             "size=64m" in hc["HostConfig"]["Tmpfs"]["/tmp"],
             "ro: /tmp is a 64 MiB tmpfs", hc["HostConfig"].get("Tmpfs"))
        out, err, rc, _ = shell(s, name, "id -u; touch /etc/x 2>&1; "
                                "touch /workspace/w /tmp/t && echo wrote")
        lines = (out or "").splitlines()
        t.ok(lines[:1] == ["1000"] and "wrote" in lines and
             any("Read-only" in ln or "Permission" in ln for ln in lines),
             "ro: runs as 1000, root read-only, workspace and /tmp "
             "writable", (out, err))
        info = s.call("get_info", identity=name)
        ws = os.path.join(s.mount_dir, info["session_id"])
        t.is_(os.stat(ws).st_uid, 1000, "ro: workspace given to uid 1000")
    finally:
        s.call("release", identity=name)


def test_junk_runtime(s):
    name = create(s, "junk")
    try:
        data = s.call("call_tool", identity=name,
                      tool_name="run_shell_command",
                      arguments={"command": "x"})
        text = json.dumps(data)
        t.ok(isinstance(data, dict) and data.get("isError") is True and
             "not a JSON object" in text,
             "garbage 200 body: isError naming it", data)
        data = s.call("call_tool", identity=name, tool_name="other",
                      arguments={})
        t.ok(isinstance(data, dict) and data.get("isError") is True,
             "bytes that are not HTTP: isError", data)
        data = s.call("list_tools", identity=name, tool_type=None)
        t.ok(isinstance(data, dict) and data.get("isError") is True,
             "truncated JSON tool list: isError", data)
        status, _, _ = s.request("GET", "/health", fresh=True)
        t.is_(status, 200, "the server is fine after the junk")
    finally:
        t.is_(s.call("release", identity=name), True, "junk released")


def test_bad_input(s):
    before = len(s.containers())
    for body, name in (
            (b"[" * 100 + b"]" * 100, "100-deep array"),
            (b'{"meta":' + b'{"a":' * 80 + b"1" + b"}" * 81,
             "80-deep meta object"),
            (b"[" * 200000, "200000 open brackets"),
            (b'{"sandbox_type": "\xff\xfe"}', "invalid UTF-8"),
            (b'{"sandbox_type": "base", "sandbox_type": 3}',
             "a key twice"),
            (b"\x00\x01\x02", "binary")):
        status, _, doc = s.rpc("create", body)
        d = doc.get("detail") if isinstance(doc, dict) else None
        t.ok(status == 500 and isinstance(d, str) and
             d.startswith("Error in create: "),
             "%s: 500 Error in create" % name, (status, doc))
    status, _, doc = s.rpc("get_info", {"identity": "a\x00b"})
    t.ok(status == 500 and "NUL" in (doc or {}).get("detail", ""),
         "an identity with a NUL: 500, named (not cut to 'a')", doc)
    for ident in ("../x", "..", "%2e%2e", "a/b", "/etc/passwd",
                  "x" * 200, "", " x", "a\nb", "-x", ".x"):
        status, _, doc = s.rpc("get_info", {"identity": ident})
        d = (doc or {}).get("detail", "")
        t.ok(status == 500 and
             d.startswith("Error in get_info: No container found with id:")
             and len(d) < 250 and "\n" not in d,
             "get_info %r: unknown, short detail" % ident[:20], doc)
        status, _, doc = s.rpc("release", {"identity": ident})
        t.is_((status, doc), (200, {"data": True}),
              "release %r: true, nothing done" % ident[:20])
        status, _, doc = s.rpc("get_status", {"identity": ident})
        t.is_((status, doc), (200, {"data": None}),
              "get_status %r: null" % ident[:20])
    for body, name in (({"identity": 7}, "identity a number"),
                       ({"identity": ["x"]}, "identity a list"),
                       ({"identity": None}, "identity null")):
        status, _, doc = s.rpc("get_info", body)
        t.ok(status == 500 and "must be a string" in
             ((doc or {}).get("detail") or ""), "%s: 500" % name, doc)
    # /proxy: the same identities are unknown, without a lookup.
    for ident in ("..", "%2e%2e", "x" * 200, "%0Ax", "-x", ".x"):
        status, _, raw = s.request("GET", "/proxy/%s/healthz" % ident, None,
                                   s.auth_headers(), fresh=True)
        try:
            d = json.loads(raw).get("detail", "")
        except ValueError:
            d = ""
        t.ok(status == 404 and d.startswith("sandbox not found: ") and
             len(d) < 250 and "\n" not in d,
             "/proxy/%s/: 404 sandbox not found, short detail" % ident[:20],
             (status, raw[:300]))
    status, _, doc = s.rpc("create", {"environment": {"A": 1}})
    t.ok(status == 500 and "must be a string" in doc.get("detail", ""),
         "environment value not a string: 500", doc)
    status, _, doc = s.rpc("create", {"environment": {"A=B": "1"}})
    t.ok(status == 500 and "not a valid environment" in doc.get("detail", ""),
         "environment name with '=': 500", doc)
    for method, path in (("DELETE", "/create"), ("TRACE", "/health"),
                         ("GET", "/../../etc/passwd"),
                         ("GET", "/%2e%2e/%2e%2e/etc/passwd")):
        status, _, raw = s.request(method, path, None, s.auth_headers(),
                                   fresh=True)
        t.ok(status in (404, 405, 501, 400), "%s %s: %d" % (method, path,
                                                            status))
    huge = "x" * (20 * 1024)
    try:
        status, _, _ = s.request("GET", "/health", None, {"X-Big": huge},
                                 fresh=True)
    except (ConnectionError, OSError) as e:
        status = str(e)
    t.ok(status in (400, 413, 431) or isinstance(status, str),
         "a 20 KiB header: refused (%s)" % status)
    time.sleep(0.5)
    t.is_(len(s.containers()), before, "bad input created no container")
    status, _, _ = s.request("GET", "/health", fresh=True)
    t.is_(status, 200, "server healthy after the bad input")


def test_no_secrets_logged(s):
    name = create(s, "box")
    info = s.call("get_info", identity=name)
    shell(s, name, "echo hi")
    s.request("GET", "/desktop/%s/x?password=%s"
              % (name, info["runtime_token"]), fresh=True)
    s.rpc("list_session_keys", token="wrong-" + s.token)
    status, _, _ = s.request("GET", "/proxy/%s/healthz?token=%s"
                             % (name, info["runtime_token"]), None,
                             s.auth_headers(), fresh=True)
    t.is_(status, 200, "a /proxy request with a token in its query")
    s.request("GET", "/proxy/%s/x?password=%s" % (name, s.token), None,
              s.auth_headers("wrong-" + s.token), fresh=True)
    s.call("release", identity=name)
    log = s.log()
    t.ok("DEBUG" in log.upper() or "debug" in log,
         "the server logged at debug level", log[-500:])
    t.ok(s.token not in log, "BEARER_TOKEN never in the log")
    t.ok(info["runtime_token"] not in log,
         "the sandbox's runtime token never in the log")


def test_cleanup(s, allowed):
    status, _, doc = s.rpc("cleanup", {})
    if not allowed:
        t.ok(status == 403 and "SANDPOOL_ALLOW_CLEANUP_ROUTE" in
             (doc or {}).get("detail", ""),
             "cleanup: 403 by default, naming the key", doc)
        return
    a = create(s, "box")
    b = create(s, "box")
    status, _, doc = s.rpc("cleanup", {})
    t.is_((status, doc), (200, {"data": None}), "cleanup allowed: data null")
    t.ok(docker.inspect(a) is None and docker.inspect(b) is None,
         "cleanup: this instance's sandboxes are gone")


def test_mount_dir(s, root):
    ws = os.path.join(root, "ws")
    os.mkdir(ws)
    with open(os.path.join(ws, "hello.txt"), "w") as f:
        f.write("from the host\n")
    os.symlink("/etc", os.path.join(root, "etc-link"))
    before = len(s.containers())
    for bad, why in ((root + "/../etc", "'..' component"),
                     ("/etc", "not below"),
                     (root, "not below"),
                     (root + "/ws/", "not normalised"),
                     (root + "//ws", "not normalised"),
                     (root + "/etc-link", "not below"),
                     (root + "/nope", "not an existing directory"),
                     ("relative/dir", "not an absolute path"),
                     (root + "/a:b", "':'"),
                     (s.mount_dir, "not below")):
        status, _, doc = s.rpc("create", {"sandbox_type": "box",
                                          "mount_dir": bad})
        d = (doc or {}).get("detail", "")
        t.ok(status == 500 and d.startswith("Error in create: mount_dir: ")
             and why in d, "mount_dir %s: refused (%s)" % (bad, why), doc)
    t.is_(len(s.containers()), before, "refused mount dirs made nothing")
    name = create(s, "box", mount_dir=ws)
    try:
        out, _, rc, _ = shell(s, name, "cat /workspace/hello.txt && "
                              "echo made > /workspace/new.txt")
        t.is_((out, rc), ("from the host\n", "0"),
              "mount_dir is the sandbox's /workspace")
    finally:
        s.call("release", identity=name)
    t.ok(os.path.exists(os.path.join(ws, "hello.txt")) and
         os.path.exists(os.path.join(ws, "new.txt")),
         "release never removes a requested mount_dir")


def test_public_host(ext):
    work = harness.mkdtemp("spsec")
    env_path = os.path.join(work, "server.env")
    port = harness.free_port()
    settings = {"HOST": "0.0.0.0", "PORT": port, "BEARER_TOKEN": "",
                "SANDPOOL_AGENT": harness.AGENT_BIN,
                "SANDPOOL_RUN_DIR": harness.mkdtemp("spr"),
                "DEFAULT_MOUNT_DIR": harness.mkdtemp("spm"),
                "SANDPOOL_INSTANCE_ID": "test-pub-%d" % os.getpid()}
    harness.write_env(env_path, settings)
    p = subprocess.run([harness.SERVER_BIN, "--config", env_path],
                       cwd=work, env=harness.server_env(),
                       capture_output=True, timeout=30)
    err = p.stderr.decode("utf-8", "replace")
    t.ok(p.returncode == 1 and "HOST=0.0.0.0 is not a loopback address" in
         err and "SANDPOOL_ALLOW_NO_AUTH" in err,
         "HOST=0.0.0.0 without BEARER_TOKEN: refuses to start", err)
    s = harness.Server(token="", env={"HOST": "0.0.0.0",
                                      "SANDPOOL_ALLOW_NO_AUTH": "true"})
    try:
        status, _, _ = s.request("GET", "/health", fresh=True)
        t.is_(status, 200, "SANDPOOL_ALLOW_NO_AUTH=true: starts")
        t.ok("SANDPOOL_ALLOW_NO_AUTH=true" in s.log(),
             "and warns about it")
    finally:
        s.close()
    # A type naming an OCI runtime the engine lacks: no start.
    bad = os.path.join(work, "bad-runtime.json")
    with open(bad, "w") as f:
        json.dump({"name": "gv", "image": harness.TEST_IMAGE,
                   "runtime": "nosuch-runsc"}, f)
    s = harness.Server(extensions=[bad], start=False)
    p = subprocess.run(s.command(), cwd=s.work, env=harness.server_env(),
                       capture_output=True, timeout=30)
    err = p.stderr.decode("utf-8", "replace")
    t.ok(p.returncode == 1 and "needs the OCI runtime 'nosuch-runsc'" in err
         and "runc" in err,
         "a type with a missing OCI runtime: refuses to start, naming "
         "what the engine has", err[-600:])
    s.close()
    good = os.path.join(work, "runc.json")
    with open(good, "w") as f:
        json.dump({"name": "rc", "image": harness.TEST_IMAGE,
                   "runtime": "runc"}, f)
    s = harness.Server(extensions=[good])
    try:
        name = create(s, "rc")
        t.is_(docker.inspect(name)["HostConfig"].get("Runtime"), "runc",
              "runtime runc: the container runs with it")
        s.call("release", identity=name)
    finally:
        s.close()


def slow_client(port, interval, limit, line=b"POST /list_session_keys"):
    """Sends a request header a byte at a time; returns (seconds until the
    server closed, what it sent)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=limit)
    data = (line + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-Slow: " + b"a" * 1000)
    got = b""
    t0 = time.monotonic()
    try:
        for i in range(len(data)):
            c.sendall(data[i:i + 1])
            c.settimeout(interval)
            try:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                pass
            if time.monotonic() - t0 > limit:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        c.close()
    return time.monotonic() - t0, got


def test_slowloris(s):
    worst = []
    # One slow client in the background is enough to hold a byte-timer
    # server; here it must be cut after ~2 s, while others are served.
    # The same for a /proxy request (streamed, its head is not evhttp's).
    res = {}
    ths = [threading.Thread(target=lambda: res.update(
        r=slow_client(s.port, 0.3, 15))),
        threading.Thread(target=lambda: res.update(
            p=slow_client(s.port, 0.3, 15, b"PUT /proxy/x/y")))]
    for th in ths:
        th.start()
    while any(th.is_alive() for th in ths):
        t0 = time.monotonic()
        status, _, _ = s.request("GET", "/health", fresh=True, timeout=5)
        worst.append(time.monotonic() - t0)
        time.sleep(0.2)
    for th in ths:
        th.join()
    secs, got = res.get("r", (None, b""))
    t.ok(secs is not None and secs < 6,
         "a client sending a byte every 0.3 s is cut off (after %.1f s, "
         "SANDPOOL_REQUEST_TIMEOUT=2)" % (secs or -1))
    t.ok(got.startswith(b"HTTP/1.1 408"), "it gets 408 Request Timeout",
         got[:200])
    secs, got = res.get("p", (None, b""))
    t.ok(secs is not None and secs < 6 and got.startswith(b"HTTP/1.1 408"),
         "so is a /proxy request's slow head: 408 (after %.1f s)"
         % (secs or -1), got[:200])
    t.ok(worst and max(worst) < 0.5,
         "others were served meanwhile (slowest /health %.3f s)"
         % max(worst or [9]))
    # A kept-alive connection may idle longer than the request timeout.
    c = s.connect(10)
    try:
        c.request("GET", "/health")
        c.getresponse().read()
        time.sleep(3.5)
        c.request("GET", "/health")
        r = c.getresponse()
        r.read()
        t.is_(r.status, 200, "an idle kept-alive connection (3.5 s) is kept")
    finally:
        c.close()
    # Silence is the idle timeout's (4 s here).
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    t0 = time.monotonic()
    try:
        c.sendall(b"GET /health HTTP/1.1\r\n")
        c.settimeout(10)
        data = c.recv(100)
    except (socket.timeout, ConnectionResetError):
        data = None
    finally:
        c.close()
    t.ok(data is not None and time.monotonic() - t0 < 8,
         "a half request, then silence: closed (%.1f s)"
         % (time.monotonic() - t0))


def test_max_connections(s):
    held = []
    try:
        s.close_connection()
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", s.port)))
        time.sleep(1.2)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(1.0)
        try:
            early = extra.recv(100)
        except socket.timeout:
            early = None
        t.ok(early is None,
             "SANDPOOL_MAX_CONNECTIONS=4: a fifth connection waits", early)
        held.pop().close()
        extra.settimeout(5)
        t0 = time.monotonic()
        try:
            late = extra.recv(100)
        except socket.timeout:
            late = None
        t.ok(late is not None and late.startswith(b"HTTP/1.1 200") and
             time.monotonic() - t0 < 3,
             "when one closes, the waiting one is served (%.2f s)"
             % (time.monotonic() - t0), late)
        extra.close()
    finally:
        for c in held:
            c.close()
    time.sleep(1.2)
    status, _, _ = s.request("GET", "/health", fresh=True)
    t.is_(status, 200, "served normally afterwards")


# ---------------------------------------------------------------- main

types_path = os.path.join(harness.mkdtemp("spsec"), "security-types.json")
write_types(types_path)
junk_ok = t.run("make the junk image", make_junk_image) is not False
try:
    s = t.run("start the main server", harness.Server,
              extensions=[types_path],
              env={"DEBUG": "true", "SANDPOOL_ALLOW_CLEANUP_ROUTE": None})
    if s is not None:
        t.run("container defaults", test_defaults, s)
        t.run("fork bomb", test_fork_bomb, s)
        t.run("memory hog", test_memory_hog, s)
        t.run("network none", test_network_none, s)
        t.run("runtime tokens", test_tokens, s)
        t.run("read-only root, user", test_read_only_user, s)
        t.run("junk runtime", test_junk_runtime, s)
        t.run("bad input", test_bad_input, s)
        t.run("cleanup refused", test_cleanup, s, False)
        t.run("no secrets in the log", test_no_secrets_logged, s)
        s.close()
    root = harness.mkdtemp("sproot")
    s = t.run("start the mount/cleanup server", harness.Server,
              extensions=[types_path],
              env={"ALLOW_MOUNT_DIR": "true",
                   "SANDPOOL_MOUNT_DIR_ROOTS": root,
                   "SANDPOOL_ALLOW_CLEANUP_ROUTE": "true"})
    if s is not None:
        t.run("mount_dir", test_mount_dir, s, root)
        t.run("cleanup allowed", test_cleanup, s, True)
        s.close()
    t.run("public host, OCI runtimes", test_public_host, types_path)
    s = t.run("start the limits server", harness.Server,
              env={"SANDPOOL_REQUEST_TIMEOUT": 2,
                   "SANDPOOL_IDLE_TIMEOUT": 4,
                   "SANDPOOL_MAX_CONNECTIONS": 4})
    if s is not None:
        t.run("slowloris", test_slowloris, s)
        t.run("max connections", test_max_connections, s)
        s.close()
finally:
    remove_junk_image()
sys.exit(t.done())
