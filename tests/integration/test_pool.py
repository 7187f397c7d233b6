"""Sandboxes against the real dockerd (spec sections 3, 4.1, 5): the warm
pool and its refill, claims, the container record, tool calls (their
arguments, add_mcp_servers, 20 at once into one sandbox), cold creates, the _async twins, release, labels and port publishing, and a
missing image or an exhausted port range (nothing leaks).

Server P: POOL_SIZE=2. Server T: POOL_SIZE=0 with a one-port PORT_RANGE and
a type whose image does not exist."""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=480)
docker = harness.skip_unless_docker()
SESSION = "pool-session-%d" % os.getpid()
MISSING_IMAGE = "sandpool/does-not-exist:1"
RECORD_KEYS = {"session_id", "container_id", "container_name", "url", "ports",
               "mount_dir", "storage_path", "runtime_token", "version",
               "meta", "timeout", "sandbox_type", "state", "session_ctx_id",
               "last_active_at", "recycled_at", "released_at", "updated_at",
               "recycle_reason", "redirect_to"}


def _tool(name, desc, prop, prop_desc):
    return {"name": name, "json_schema": {"type": "function", "function": {
        "name": name, "description": desc, "parameters": {
            "type": "object",
            "properties": {prop: {"type": "string",
                                  "description": prop_desc}},
            "required": [prop]}}}}


GENERIC = {
    "run_ipython_cell": _tool("run_ipython_cell", "Run an IPython cell.",
                              "code", "IPython code to execute"),
    "run_shell_command": _tool("run_shell_command", "Run a shell command.",
                               "command", "Shell command to execute"),
}


def text(t_, desc):
    return {"type": "text", "text": t_, "annotations": None,
            "description": desc}


def shell(s, name, command, method="call_tool"):
    return s.call(method, identity=name, tool_name="run_shell_command",
                  arguments={"command": command})


def cname(c):
    return c["Names"][0].lstrip("/")


def warm_names(s, claimed, sbtype="base"):
    """Running containers of the type that nobody claimed."""
    return {cname(c) for c in s.containers(
        running_only=True, extra=["sandpool.type=" + sbtype])} - claimed


def gone(s, container_id):
    return s.docker.inspect(container_id) is None


def check_usable(s, name, label, method="call_tool"):
    """A sandbox that runs shell commands."""
    data = shell(s, name, "echo usable", method)
    t.ok(isinstance(data, dict) and data.get("isError") is False and
         data.get("content", [{}])[0].get("text") == "usable\n",
         "%s: %s runs a shell command" % (label, method), data)


# ---------------------------------------------------------------- server P

def test_prewarm(s):
    n = harness.wait_for(lambda: len(warm_names(s, set())) >= 2, 60)
    names = warm_names(s, set())
    t.is_(len(names), 2, "POOL_SIZE=2: two running containers within 60 s")
    for c in s.containers():
        t.is_(c["Labels"].get("sandpool.type"), "base",
              "pool container %s is of type base" % cname(c))
    # Running is not yet warm: wait until both have a warm record.
    def state_of(x):
        status, _, doc = s.rpc("get_info", {"identity": x})
        return doc["data"].get("state") if status == 200 else None

    def warm_records():
        return all(state_of(x) == "warm" for x in names)
    t.ok(n and harness.wait_for(warm_records, 60),
         "both pool containers have a warm record")
    time.sleep(0.5)
    return names


def test_claim(s, warm):
    name = s.call("create_from_pool", sandbox_type="base",
                  meta={"session_ctx_id": SESSION})
    t.ok(isinstance(name, str) and
         re.fullmatch(re.escape(harness.PREFIX) + "[0-9a-z]{25}", name),
         "create_from_pool: a name <prefix><25 chars of [0-9a-z]>", name)
    t.ok(name in warm, "create_from_pool claimed a warm container",
         "%s not in %s" % (name, sorted(warm)))
    return name


def test_record(s, name):
    info = s.call("get_info", identity=name)
    t.ok(isinstance(info, dict) and RECORD_KEYS <= set(info),
         "get_info: every key of spec 4.1",
         sorted(RECORD_KEYS - set(info)) if isinstance(info, dict) else info)
    sid = name[len(harness.PREFIX):]
    t.is_(info.get("container_name"), name, "record: container_name")
    t.is_(info.get("session_id"), sid, "record: session_id is the suffix")
    ins = s.docker.inspect(name)
    t.ok(ins is not None and info.get("container_id") == ins["Id"] and
         re.fullmatch("[0-9a-f]{64}", info.get("container_id") or ""),
         "record: container_id is the docker id", info.get("container_id"))
    ports = info.get("ports")
    port = ports[0] if isinstance(ports, list) and ports else None
    t.ok(isinstance(port, int) and ports == [port] and
         s.port_range[0] <= port < s.port_range[1],
         "record: ports is [one port of PORT_RANGE]", ports)
    t.is_(info.get("url"), "http://localhost:%s" % port,
          "record: url http://localhost:<port>")
    t.is_(info.get("mount_dir"), os.path.join(s.mount_dir, sid),
          "record: mount_dir is DEFAULT_MOUNT_DIR/<session_id>")
    t.ok(os.path.isdir(info.get("mount_dir") or "/nonexistent"),
         "record: mount_dir exists on the host")
    t.ok(re.fullmatch("[0-9a-f]{32}", str(info.get("runtime_token"))),
         "record: runtime_token is 32 hex", info.get("runtime_token"))
    t.is_(info.get("version"), harness.TEST_IMAGE, "record: version (image)")
    t.is_(info.get("meta"), {"session_ctx_id": SESSION}, "record: meta")
    t.ok(isinstance(info.get("timeout"), int) and info["timeout"] > 0,
         "record: timeout is a positive integer", info.get("timeout"))
    t.is_(info.get("sandbox_type"), "base", "record: sandbox_type")
    t.is_(info.get("state"), "running", "record: state running")
    t.is_(info.get("session_ctx_id"), SESSION, "record: session_ctx_id")
    now = time.time()
    for k in ("last_active_at", "updated_at"):
        v = info.get(k)
        t.ok(isinstance(v, (int, float)) and abs(v - now) < 300,
             "record: %s is unix seconds of now" % k, v)
    t.is_([info.get(k) for k in ("recycled_at", "released_at",
                                 "recycle_reason", "redirect_to")],
          [None] * 4, "record: recycle/release fields null")
    return info


def test_call_tool(s, name, info):
    data = shell(s, name, "echo hello")
    t.is_(data, {"meta": None, "content": [text("hello\n", "stdout"),
                                           text("0", "returncode")],
                 "isError": False},
          "call_tool run_shell_command 'echo hello': spec 5.3 result")
    data = shell(s, name, "echo out; echo err >&2; exit 3")
    t.is_(data, {"meta": None, "content": [text("out\n", "stdout"),
                                           text("err\n", "stderr"),
                                           text("3", "returncode")],
                 "isError": True},
          "call_tool with stderr and status 3: stderr item, isError true")
    data = shell(s, name, "exit 4")
    t.is_(data, {"meta": None, "content": [text("", "stdout"),
                                           text("4", "returncode")],
                 "isError": False},
          "call_tool 'exit 4': empty stdout, isError false")
    data = shell(s, name, "pwd; echo data > probe.txt")
    t.is_(data.get("content", [{}])[0].get("text"), "/workspace\n",
          "commands run in /workspace")
    probe = os.path.join(info.get("mount_dir") or "/nonexistent",
                         "probe.txt")
    try:
        with open(probe) as f:
            got = f.read()
    except OSError as e:
        got = str(e)
    t.is_(got, "data\n", "/workspace is the host's mount_dir")


def test_tool_arguments(s, name):
    """The built-in tools' arguments are splatted into one parameter (spec
    5.2): anything but exactly that member is a 500 at the manager."""
    status, _, doc = s.rpc("call_tool", {
        "identity": name, "tool_name": "run_shell_command",
        "arguments": {"command": "true", "x": 1}})
    t.is_((status, doc), (500, {
        "detail": "Error in call_tool: run_shell_command() got an "
                  "unexpected keyword argument 'x'"}),
        "call_tool with an extra argument: 500")
    for args in ({}, None):
        status, _, doc = s.rpc("call_tool", {
            "identity": name, "tool_name": "run_ipython_cell",
            "arguments": args})
        t.is_((status, doc), (500, {
            "detail": "Error in call_tool: Object of type FieldInfo is not "
                      "JSON serializable"}),
            "call_tool run_ipython_cell with arguments %s: 500"
            % json.dumps(args))
    data = shell(s, name, "echo only")
    t.is_(data.get("content", [{}])[0].get("text"), "only\n",
          "exactly {command} still runs")


def test_mcp(s, name):
    """add_mcp_servers against sandpool-agent, which has no MCP support
    yet: the runtime's 404 comes back as the isError object (spec 5.1)."""
    cfg = {"mcpServers": {"time": {"command": "uvx",
                                   "args": ["mcp-server-time"]}}}
    for method in ("add_mcp_servers", "add_mcp_servers_async"):
        status, _, doc = s.rpc(method, {"identity": name,
                                        "server_configs": cfg,
                                        "overwrite": True})
        data = (doc or {}).get("data") or {}
        t.ok(status == 200 and data.get("isError") is True and
             isinstance(data.get("content"), list) and
             data["content"][0].get("type") == "text" and
             "/fastapi/mcp/add_servers" in data["content"][0].get("text", ""),
             "%s: 200 with the isError object naming the runtime URL"
             % method, doc)
    status, _, doc = s.rpc("add_mcp_servers", {"identity": name})
    t.is_((status, doc), (500, {
        "detail": "Error in add_mcp_servers: add_mcp_servers() missing 1 "
                  "required positional argument: 'server_configs'"}),
        "add_mcp_servers without server_configs: 500")
    status, _, doc = s.rpc("add_mcp_servers", {"args": [name, cfg, False]})
    t.ok(status == 200 and ((doc or {}).get("data") or {}).get("isError"),
         "add_mcp_servers with positional args", doc)
    t.is_(s.call("list_tools", identity=name, tool_type=""),
          {"generic": GENERIC}, "list_tools tool_type='': every group")


def test_concurrent_calls(s, name):
    """20 tool calls into one sandbox at once, each on its own connection:
    every answer is its own, and they overlap."""
    n, out = 20, {}

    def one(i):
        c = s.connect(timeout=60)
        try:
            c.request("POST", "/call_tool", json.dumps({
                "identity": name, "tool_name": "run_shell_command",
                "arguments": {"command": "sleep 0.5; echo call-%d" % i}}),
                dict(s.auth_headers(), **{"Content-Type":
                                          "application/json"}))
            r = c.getresponse()
            out[i] = (r.status, json.loads(r.read()))
        except Exception as e:  # reported below
            out[i] = (0, str(e))
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    secs = time.monotonic() - start
    good = [i for i in range(n) if out.get(i, (0,))[0] == 200 and
            out[i][1]["data"]["content"][0]["text"] == "call-%d\n" % i]
    t.is_(len(good), n, "%d concurrent call_tool into one sandbox: each "
          "got its own answer" % n)
    t.ok(secs < n * 0.5 / 2, "they ran concurrently (%.2f s for %d calls of "
         "0.5 s)" % (secs, n))


def test_runtime_url(s, info):
    """The published port serves the runtime, behind the runtime token."""
    url = "%s/fastapi/healthz" % info["url"]
    status = harness.http_get(url, {
        "Authorization": "Bearer " + info["runtime_token"]})[0]
    t.is_(status, 200, "GET <url>/fastapi/healthz with the runtime token")
    status = harness.http_get(url)[0]
    t.is_(status, 403, "GET <url>/fastapi/healthz without a token: 403")


def test_list_tools(s, name):
    t.is_(s.call("list_tools", identity=name, tool_type=None),
          {"generic": GENERIC}, "list_tools: the generic group of spec 5.2")
    t.is_(s.call("list_tools", identity=name, tool_type="generic"),
          {"generic": GENERIC}, "list_tools tool_type=generic")
    t.is_(s.call("list_tools", identity=name, tool_type="nosuch"),
          {"nosuch": {}}, "list_tools tool_type=nosuch: {nosuch: {}}")


def test_sessions(s, name):
    t.is_(s.call("check_health", identity=name), True, "check_health: true")
    t.is_(s.call("check_health", identity=name[len(harness.PREFIX):]), True,
          "check_health by bare session_id: true")
    t.is_(s.call("get_session_mapping", session_ctx_id=SESSION), [name],
          "get_session_mapping: [name]")
    keys = s.call("list_session_keys")
    t.ok(isinstance(keys, list) and SESSION in keys,
         "list_session_keys has the session", keys)
    t.is_(s.call("get_status", identity=name), "running",
          "get_status: running")


def test_labels_publish(s, name, info):
    ins = s.docker.inspect(name) or {}
    labels = (ins.get("Config") or {}).get("Labels") or {}
    want = {"sandpool.owner": "sandpool",
            "sandpool.instance": s.instance_id,
            "sandpool.type": "base",
            "sandpool.name": name,
            "sandpool.session_id": info.get("session_id"),
            "sandpool.port": str((info.get("ports") or [None])[0])}
    t.is_({k: labels.get(k) for k in want}, want,
          "container carries the labels of contracts.md")
    port = str((info.get("ports") or [None])[0])
    binds = ((ins.get("HostConfig") or {}).get("PortBindings") or {})
    t.is_(binds.get("80/tcp"), [{"HostIp": "127.0.0.1", "HostPort": port}],
          "80/tcp is published on 127.0.0.1:<port> only")
    live = ((ins.get("NetworkSettings") or {}).get("Ports") or {})
    t.ok(live.get("80/tcp") and all(b.get("HostIp") == "127.0.0.1" and
                                    b.get("HostPort") == port
                                    for b in live["80/tcp"]),
         "docker reports the binding on 127.0.0.1 only", live)


def test_refill(s, claimed):
    harness.wait_for(lambda: len(warm_names(s, claimed)) >= 2, 60)
    t.is_(len(warm_names(s, claimed)), 2,
          "pool refilled to 2 warm containers after a claim")
    time.sleep(3)
    t.is_(len(warm_names(s, claimed)), 2, "and does not overfill")


def test_cold_create(s, claimed):
    session = SESSION + "-cold"
    warm = warm_names(s, claimed)
    name = s.call("create", sandbox_type="base",
                  meta={"session_ctx_id": session})
    t.ok(isinstance(name, str) and name.startswith(harness.PREFIX),
         "create: a container name", name)
    if not isinstance(name, str):
        return
    claimed.add(name)
    try:
        t.ok(name not in warm, "create does not take from the pool")
        info = s.call("get_info", identity=name)
        t.is_((info.get("state"), info.get("sandbox_type"),
               info.get("session_ctx_id")), ("running", "base", session),
              "create: record running, base, bound to its session")
        check_usable(s, name, "create")
        t.is_(s.call("stop", identity=name), True, "stop: true")
        t.is_(s.call("get_status", identity=name), "exited",
              "get_status after stop: exited")
        t.is_(s.call("start", identity=name), True, "start: true")
        # start answers once the agent serves again: /proxy makes no
        # establish retry, so its healthz shows it.
        status, _, raw = s.request("GET", "/proxy/%s/healthz" % name,
                                   headers=s.auth_headers())
        t.is_((status, raw), (200, b"OK"),
              "right after start: the runtime answers healthz")
        t.is_(s.call("get_status", identity=name), "running",
              "get_status after start: running")
        check_usable(s, name, "create, after stop and start")
    finally:
        t.is_(s.call("release", identity=name), True, "release cold: true")


def test_no_pool_type(s, claimed):
    name = s.call("create_from_pool", sandbox_type="filesystem",
                  meta={"session_ctx_id": SESSION + "-fs"})
    t.ok(isinstance(name, str) and name.startswith(harness.PREFIX),
         "create_from_pool of a type without a pool: a name", name)
    if not isinstance(name, str):
        return
    claimed.add(name)
    try:
        info = s.call("get_info", identity=name)
        t.is_(info.get("sandbox_type"), "filesystem",
              "record: sandbox_type filesystem")
        ins = s.docker.inspect(name) or {}
        t.is_(((ins.get("Config") or {}).get("Labels") or {}).get(
            "sandpool.type"), "filesystem", "label sandpool.type=filesystem")
        check_usable(s, name, "filesystem")
    finally:
        t.is_(s.call("release", identity=name), True, "release fs: true")


def test_async(s, claimed):
    session = SESSION + "-async"
    name = s.call("create_from_pool_async", sandbox_type="base_async",
                  meta={"session_ctx_id": session})
    t.ok(isinstance(name, str) and name.startswith(harness.PREFIX),
         "create_from_pool_async base_async: a name", name)
    if not isinstance(name, str):
        return
    claimed.add(name)
    try:
        t.is_(s.call("list_tools_async", identity=name, tool_type=None),
              {"generic": GENERIC}, "list_tools_async")
        data = shell(s, name, "echo hello", "call_tool_async")
        t.is_(data, {"meta": None, "content": [text("hello\n", "stdout"),
                                               text("0", "returncode")],
                     "isError": False}, "call_tool_async echo hello")
        t.is_(s.call("check_health_async", identity=name), True,
              "check_health_async")
        info = s.call("get_info_async", identity=name)
        t.is_((info.get("sandbox_type"), info.get("state")),
              ("base_async", "running"), "get_info_async: base_async record")
        t.is_(s.call("get_session_mapping_async", session_ctx_id=session),
              [name], "get_session_mapping_async")
        t.ok(session in s.call("list_session_keys_async"),
             "list_session_keys_async has the session")
        t.is_(s.call("get_status_async", identity=name), "running",
              "get_status_async")
    finally:
        t.is_(s.call("release_async", identity=name), True, "release_async")
    name = s.call("create_async", sandbox_type="base")
    t.ok(isinstance(name, str) and name.startswith(harness.PREFIX),
         "create_async: a name", name)
    if isinstance(name, str):
        claimed.add(name)
        info = s.call("get_info", identity=name)
        t.is_((info.get("state"), info.get("session_ctx_id"), info["meta"]),
              ("warm", None, {}), "create_async without meta: warm, no session")
        check_usable(s, name, "create_async")
        t.is_(s.call("release_async", identity=name), True,
              "release_async of create_async")


def test_release(s, name, info):
    port = (info.get("ports") or [None])[0]
    cid = info.get("container_id")
    t.is_(s.call("release", identity=name), True, "release: true")
    t.ok(harness.wait_for(lambda: gone(s, cid), 15),
         "released container is gone from docker")
    t.ok(isinstance(port, int) and
         harness.wait_for(lambda: harness.port_is_free(port), 15),
         "released container's host port is free", port)
    after = s.call("get_info", identity=name)
    t.is_(after.get("state"), "released", "get_info after release: released")
    t.ok(harness.wait_for(lambda: not os.path.exists(info["mount_dir"]), 15),
         "released sandbox's workspace dir is removed", info["mount_dir"])
    t.is_(s.call("get_session_mapping", session_ctx_id=SESSION), [],
          "release empties the session mapping")
    t.ok(SESSION not in s.call("list_session_keys"),
         "release drops the session key")
    t.is_(s.call("release", identity=name), True, "second release: true")


def server_p():
    s = t.run("start server P", harness.Server, pool_size=2)
    if s is None:
        return
    warm = t.run("prewarm", test_prewarm, s) or set()
    name = t.run("claim", test_claim, s, warm)
    if not isinstance(name, str):
        return
    claimed = {name}
    info = t.run("record", test_record, s, name) or {}
    t.run("call_tool", test_call_tool, s, name, info)
    if info.get("url") and info.get("runtime_token"):
        t.run("runtime url", test_runtime_url, s, info)
    t.run("list_tools", test_list_tools, s, name)
    t.run("tool arguments", test_tool_arguments, s, name)
    t.run("add_mcp_servers", test_mcp, s, name)
    t.run("concurrent tool calls", test_concurrent_calls, s, name)
    t.run("sessions", test_sessions, s, name)
    t.run("labels and publishing", test_labels_publish, s, name, info)
    t.run("refill", test_refill, s, claimed)
    t.run("cold create", test_cold_create, s, claimed)
    t.run("type without pool", test_no_pool_type, s, claimed)
    t.run("async twins", test_async, s, claimed)
    if info:
        t.run("release", test_release, s, name, info)


# ---------------------------------------------------------------- server T

def test_missing_image_and_ports(dirpath):
    t.ok(not docker.image_exists(MISSING_IMAGE),
         "precondition: %s does not exist" % MISSING_IMAGE)
    ext = os.path.join(dirpath, "missing-image.json")
    with open(ext, "w") as f:
        json.dump([{"name": "gui", "image": MISSING_IMAGE, "runtime_port": 80,
                    "inject_agent": True}], f)
    s = harness.Server(pool_size=0, extensions=[ext], ports=1)
    port = s.port_range[0]
    for method in ("create", "create_from_pool"):
        status, _, doc = s.rpc(method, {"sandbox_type": "gui"})
        t.is_((status, doc), (200, {"data": None}),
              "%s of a type whose image is missing: {\"data\": null}"
              % method)
    t.ok(harness.wait_for(lambda: MISSING_IMAGE in s.log() and
                          "runtime-sandbox-builder" in s.log(), 5),
         "the log names the missing image and runtime-sandbox-builder",
         s.log()[-2000:])
    t.is_([cname(c) for c in s.containers()], [],
          "missing image: no container left")
    t.ok(harness.port_is_free(port), "missing image: no port bound")

    first = s.call("create", sandbox_type="base",
                   meta={"session_ctx_id": "one-port"})
    t.ok(isinstance(first, str), "the only port is still leasable", first)
    if not isinstance(first, str):
        return
    info = s.call("get_info", identity=first)
    t.is_(info.get("ports"), [port], "it got the one port of the range")
    check_usable(s, first, "one-port sandbox")
    status, _, doc = s.rpc("create_from_pool", {"sandbox_type": "base"})
    t.is_((status, doc), (200, {"data": None}),
          "no free port left: {\"data\": null}")
    time.sleep(1)
    t.is_([cname(c) for c in s.containers()], [first],
          "no free port left: no container left behind")
    t.is_(s.call("release", identity=first), True, "release the one-port")
    harness.wait_for(lambda: not s.containers(), 15)
    second = s.call("create", sandbox_type="base")
    t.ok(isinstance(second, str), "after release the port is leased again",
         second)
    if isinstance(second, str):
        t.is_(s.call("get_info", identity=second).get("ports"), [port],
              "the same port")
        check_usable(s, second, "second one-port sandbox")
        t.is_(s.call("release", identity=second), True, "release it")


server_p()
t.run("missing image, port exhaustion", test_missing_image_and_ports,
      harness.mkdtemp("spx"))
sys.exit(t.done())
