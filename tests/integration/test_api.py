"""The manager's HTTP surface (spec section 1): /health, bearer auth, 404 and
405, request bodies (malformed, non-object, unknown key, too large,
chunked), keep-alive, and the answers of every RPC for an unknown identity.

Two servers: A with a token and a warm pool of one, B without a token and
without a pool (so that "nothing was created" can be checked exactly)."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=300)
docker = harness.skip_unless_docker()
MAX_BODY = 65536
UNKNOWN = "runtime_sandbox_container_nosuchthing0000000000"


def detail(doc):
    return doc.get("detail") if isinstance(doc, dict) else None


def check_401(s, headers, want_detail, name):
    status, hdrs, raw = s.request("POST", "/list_session_keys", b"{}",
                                  dict(headers, **{
                                      "Content-Type": "application/json"}))
    t.is_(status, 401, "%s: 401" % name)
    t.is_(harness.load_json_or_none(raw), {"detail": want_detail},
          "%s: detail" % name)
    t.is_(hdrs.get("www-authenticate"), "Bearer",
          "%s: WWW-Authenticate: Bearer" % name)


def test_health(s):
    status, hdrs, raw = s.request("GET", "/health")
    t.is_(status, 200, "/health without Authorization: 200")
    doc = harness.load_json_or_none(raw)
    t.ok(isinstance(doc, dict) and doc.get("status") == "healthy" and
         isinstance(doc.get("version"), str) and set(doc) == {"status",
                                                              "version"},
         '/health body is {"status":"healthy","version":"..."}', raw)
    t.ok("application/json" in hdrs.get("content-type", ""),
         "/health answers application/json", hdrs)


def test_auth(s):
    check_401(s, {}, "Authentication required", "no Authorization")
    check_401(s, {"Authorization": "Basic " + s.token},
              "Authentication required", "scheme Basic")
    check_401(s, {"Authorization": "Bearer"}, "Authentication required",
              "Bearer without credentials")
    check_401(s, {"Authorization": "Bearer wrong" + s.token},
              "Invalid authentication credentials", "wrong token")
    check_401(s, {"Authorization": "Bearer  " + s.token},
              "Invalid authentication credentials",
              "Bearer with two spaces")
    status, _, doc = s.rpc("list_session_keys")
    t.is_(status, 200, "right token: 200")
    status, _, doc = s.rpc("list_session_keys", token=None)
    t.is_(status, 401, "rpc() without a token: 401")
    status, _, raw = s.request("POST", "/list_session_keys", b"{}", {
        "Authorization": "bearer " + s.token,
        "Content-Type": "application/json"})
    t.is_(status, 200, "scheme is case-insensitive (bearer)")


def test_no_token(b):
    status, _, doc = b.rpc("list_session_keys")
    t.is_(status, 200, "BEARER_TOKEN empty: no Authorization needed")
    t.ok(isinstance(doc, dict) and isinstance(doc.get("data"), list),
         "BEARER_TOKEN empty: list_session_keys gives a list", doc)
    status, _, doc = b.rpc("list_session_keys", token="anything")
    t.is_(status, 200, "BEARER_TOKEN empty: any Authorization accepted")


def test_routes(s):
    auth = s.auth_headers()
    for method, path in (("GET", "/nope"), ("POST", "/nope"),
                         ("POST", "/get_info/extra")):
        status, _, raw = s.request(method, path, b"{}" if method == "POST"
                                   else None, auth)
        t.is_((status, harness.load_json_or_none(raw)),
              (404, {"detail": "Not Found"}), "%s %s: 404" % (method, path))
    status, _, raw = s.request("GET", "/nope")
    t.is_(status, 404, "unknown route without Authorization: 404 as well")
    for path in ("/get_info", "/create_from_pool", "/release"):
        status, _, raw = s.request("GET", path, None, auth)
        t.is_((status, harness.load_json_or_none(raw)),
              (405, {"detail": "Method Not Allowed"}), "GET %s: 405" % path)
    status, _, raw = s.request("PUT", "/list_tools", b"{}", auth)
    t.is_(status, 405, "PUT /list_tools: 405")


def bad_body(b, body, name):
    """POSTs body to /create on B; it must be a 500 from create."""
    status, _, doc = b.rpc("create", body)
    t.is_(status, 500, "%s: 500" % name)
    d = detail(doc)
    t.ok(isinstance(d, str) and d.startswith("Error in create: ") and
         len(d) > len("Error in create: "),
         "%s: detail 'Error in create: <why>'" % name, doc)


def test_bodies(b):
    bad_body(b, b'{"sandbox_type": "base", ', "truncated JSON")
    bad_body(b, b"{sandbox_type: base}", "invalid JSON")
    bad_body(b, b"", "empty body")
    bad_body(b, b'["base"]', "a JSON array")
    bad_body(b, b"null", "JSON null")
    bad_body(b, {"sandbox_type": "base", "bogus": 1}, "an unknown key")
    bad_body(b, {"sandbox_type": 7}, "sandbox_type of the wrong type")

    pad = "x" * (MAX_BODY + 1000)
    body = json.dumps({"sandbox_type": "base", "meta": {"pad": pad}})
    head = ("POST /create HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (b.port, len(body))).encode()
    data = body.encode()
    pieces = [head] + [data[i:i + 16384] for i in range(0, len(data), 16384)]
    status, _, raw = harness.raw_exchange(b.port, pieces, pause=0.01)
    t.is_(status, 413, "body over SANDPOOL_MAX_BODY: 413")

    # Nothing of the above may have made a container.
    time.sleep(1)
    t.is_(len(b.containers()), 0, "bad bodies created no container")
    status, _, _ = b.request("GET", "/health", fresh=True)
    t.is_(status, 200, "server still healthy after the bad bodies")


def test_keepalive(s):
    c = s.connect(30)
    try:
        statuses = []
        socks = set()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(s.auth_headers())
        for i in range(20):
            c.request("POST", "/list_session_keys", b"{}", hdrs)
            r = c.getresponse()
            r.read()
            statuses.append(r.status)
            socks.add(id(c.sock))
            if c.sock is None:
                break
        t.is_(statuses, [200] * 20, "20 RPCs on one connection: all 200")
        t.is_(len(socks), 1, "20 RPCs on one connection: never reconnected")
    finally:
        c.close()


def test_unknown_identity(s):
    def err(method, body, want):
        status, _, doc = s.rpc(method, body)
        t.is_((status, doc), (500, {"detail": want}),
              "%s of an unknown identity: 500 %s" % (method, want))

    def data(method, body, want):
        status, _, doc = s.rpc(method, body)
        t.is_((status, doc), (200, {"data": want}),
              "%s of an unknown identity: %s" % (method, json.dumps(want)))

    x = UNKNOWN
    err("get_info", {"identity": x},
        "Error in get_info: No container found with id: %s." % x)
    err("get_info_async", {"identity": x},
        "Error in get_info_async: No container found with id: %s." % x)
    err("check_health", {"identity": x},
        "Error in check_health: No container found with id: %s." % x)
    err("list_tools", {"identity": x, "tool_type": None},
        "Error in list_tools: No container found with id: %s." % x)
    err("call_tool", {"identity": x, "tool_name": "run_shell_command",
                      "arguments": {"command": "true"}},
        "Error in call_tool: No container found with id: %s." % x)
    err("add_mcp_servers", {"identity": x, "server_configs": {}},
        "Error in add_mcp_servers: No container found with id: %s." % x)
    err("add_mcp_servers_async", {"identity": x, "server_configs": {}},
        "Error in add_mcp_servers_async: No container found with id: %s."
        % x)
    data("release", {"identity": x}, True)
    data("release_async", {"identity": x}, True)
    data("get_session_mapping", {"session_ctx_id": "no-such-session"}, [])
    data("start", {"identity": x}, False)
    data("stop", {"identity": x}, False)
    data("get_status", {"identity": x}, None)
    status, _, doc = s.rpc("list_session_keys")
    t.ok(status == 200 and isinstance(doc, dict) and
         isinstance(doc.get("data"), list),
         "list_session_keys: a list", doc)
    status, _, doc = s.rpc("create_from_pool", {"sandbox_type": "nope"})
    t.is_((status, doc), (500, {"detail": "Error in create_from_pool: "
                                "'nope' is not a valid SandboxType"}),
          "create_from_pool of an unknown type: 500")
    status, _, doc = s.rpc("create", {"sandbox_type": "nope"})
    t.is_((status, doc), (500, {"detail": "Error in create: "
                                "'nope' is not a valid SandboxType"}),
          "create of an unknown type: 500")


def chunked_create(s, session):
    """create_from_pool with a chunked body sent by hand; returns the name."""
    body = json.dumps({"sandbox_type": "base",
                       "meta": {"session_ctx_id": session}}).encode()
    head = ("POST /create_from_pool HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % (s.port, s.token)).encode()
    cut = [0, 7, 20, len(body)]
    pieces = [head]
    for a, z in zip(cut, cut[1:]):
        pieces.append(b"%x\r\n%s\r\n" % (z - a, body[a:z]))
    pieces.append(b"0\r\n\r\n")
    status, _, raw = harness.raw_exchange(s.port, pieces, pause=0.05,
                                          timeout=120)
    doc = harness.load_json_or_none(raw)
    t.is_(status, 200, "chunked create_from_pool: 200")
    name = doc.get("data") if isinstance(doc, dict) else None
    t.ok(isinstance(name, str) and name.startswith(harness.PREFIX),
         "chunked create_from_pool: returns a container name", raw)
    return name if isinstance(name, str) else None


def test_chunked_and_args(s):
    session = "api-chunked-%d" % os.getpid()
    name = chunked_create(s, session)
    if name is None:
        return
    try:
        info = s.call("get_info", identity=name)
        t.is_(info.get("session_ctx_id"), session,
              "the chunked body's meta reached the record")
        status, _, doc = s.rpc("get_info_async", {"args": name})
        t.is_(status, 200, 'get_info_async {"args": id}: 200')
        data = doc.get("data") if isinstance(doc, dict) else None
        t.ok(isinstance(data, dict) and data.get("container_name") == name,
             'get_info_async {"args": id}: the record of id', doc)
    finally:
        t.is_(s.call("release", identity=name), True,
              "release of the chunked sandbox")


a = t.run("start server A", harness.Server, pool_size=1,
          env={"SANDPOOL_MAX_BODY": MAX_BODY})
b = t.run("start server B", harness.Server, pool_size=0, token="",
          env={"SANDPOOL_MAX_BODY": MAX_BODY})
if a is not None:
    t.run("health", test_health, a)
    t.run("auth", test_auth, a)
    t.run("routes", test_routes, a)
    t.run("keep-alive", test_keepalive, a)
    t.run("unknown identity", test_unknown_identity, a)
    t.run("chunked body, args body", test_chunked_and_args, a)
if b is not None:
    t.run("no token", test_no_token, b)
    t.run("bodies", test_bodies, b)
sys.exit(t.done())
