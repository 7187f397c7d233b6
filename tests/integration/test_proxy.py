"""/proxy/{identity}/{path} against the real dockerd (spec 1.7): routing,
auth, 404, header forwarding both ways (exactly one Authorization
upstream), query strings, Content-Length and chunked uploads, Expect,
100 MB up and down with the manager's memory measured, a client that
leaves (the upstream transfer ends), 502 when the runtime is down, and the
sandpool-agent's own routes through the proxy.

The upstream of most checks is a test-only runtime: Python's http.server
(test UPSTREAM below) as the command of an agent-less type ("cmd") on the
busybox image, with the host's /usr mounted read-only so that the host's
python3 runs in it. It checks the bearer token like a runtime does and
serves /fastapi/sink (counts and hashes a body), /fastapi/source (sends N
bytes), /fastapi/headers (echoes what it received), /fastapi/status and
/fastapi/stats."""

import hashlib
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=420)
docker = harness.skip_unless_docker()

UPSTREAM = r'''
import hashlib, json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN = os.environ.get("SECRET_TOKEN", "")
BLOCK = bytes(range(251)) * 261
STATS = {"aborted": 0, "served": 0}
LOCK = threading.Lock()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, obj, extra=()):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while n:
                    d = self.rfile.read(min(n, 65536))
                    if not d:
                        raise IOError("short chunk")
                    n -= len(d)
                    yield d
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        while n:
            d = self.rfile.read(min(n, 65536))
            if not d:
                raise IOError("short body")
            n -= len(d)
            yield d

    def route(self):
        path, _, query = self.path.partition("?")
        q = parse_qs(query)
        if self.headers.get_all("Authorization") != ["Bearer " + TOKEN]:
            for _ in self.body():
                pass
            self.reply(403, {"detail": "Invalid secret token"})
            return
        with LOCK:
            STATS["served"] += 1
        if path == "/fastapi/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")
        elif path == "/fastapi/sink":
            h, n = hashlib.sha256(), 0
            for d in self.body():
                h.update(d)
                n += len(d)
            self.reply(200, {"n": n, "sha256": h.hexdigest(),
                             "method": self.command, "query": query,
                             "te": self.headers.get("Transfer-Encoding"),
                             "cl": self.headers.get("Content-Length")})
        elif path == "/fastapi/source":
            n = int(q["n"][0])
            chunked = "chunked" in q
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                while n:
                    d = BLOCK[:min(n, len(BLOCK))]
                    if chunked:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(d), d))
                    else:
                        self.wfile.write(d)
                    n -= len(d)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                with LOCK:
                    STATS["aborted"] += 1
                self.close_connection = True
        elif path == "/fastapi/headers":
            for _ in self.body():
                pass
            self.reply(200, {"headers": [[k, v] for k, v in
                                         self.headers.items()],
                             "method": self.command})
        elif path == "/fastapi/status":
            code = int(q["code"][0])
            self.reply(code, {"code": code},
                       [("X-Keep", "1"), ("X-Hop", "secret"),
                        ("Connection", "X-Hop"),
                        ("Keep-Alive", "timeout=5")])
        elif path == "/fastapi/stats":
            with LOCK:
                self.reply(200, dict(STATS))
        else:
            self.reply(404, {"detail": "Not Found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = route


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
'''

# The host's python3 in the busybox image (Debian's merged /usr).
MOUNTS = {"/usr": "/usr", "/usr/lib": "/lib", "/usr/lib64": "/lib64"}
BLOCK = bytes(range(251)) * 261
MB = 1024 * 1024


def pattern_sha(n):
    """sha256 of the first n bytes of BLOCK repeated."""
    h = hashlib.sha256()
    while n:
        d = BLOCK[:min(n, len(BLOCK))]
        h.update(d)
        n -= len(d)
    return h.hexdigest()


def memory(s):
    """(VmRSS, VmHWM) of the server process, in bytes."""
    out = {}
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


def sanitized(s):
    """True if the server runs with AddressSanitizer, whose quarantine of
    freed memory makes RSS say nothing about buffering."""
    try:
        with open("/proc/%d/maps" % s.proc.pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def bounded(s, grew, limit, name):
    """Checks a peak RSS growth against limit (skipped under ASan)."""
    if sanitized(s):
        t.skip(name, "AddressSanitizer build: RSS is not meaningful")
    else:
        t.ok(grew < limit, "%s grew %d kB (< %d kB)"
             % (name, grew // 1024, limit // 1024))


def reset_peak(s):
    """Resets VmHWM to the current RSS (Linux clear_refs 5); False if the
    kernel does not let us."""
    try:
        with open("/proc/%d/clear_refs" % s.proc.pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def connect(s):
    return socket.create_connection(("127.0.0.1", s.port), timeout=120)


def read_response(sock, method="GET"):
    r = http.client.HTTPResponse(sock, method=method)
    r.begin()
    return r


def upload(s, name, n, chunked=False, expect=False, path="sink"):
    """Streams n pattern bytes to /proxy/<name>/<path> by hand; returns
    (status, document, sha256 of what was sent, saw 100 Continue)."""
    sock = connect(s)
    try:
        head = ["PUT /proxy/%s/%s?x=1 HTTP/1.1" % (name, path),
                "Host: 127.0.0.1", "Authorization: Bearer " + s.token,
                "Content-Type: application/octet-stream"]
        head.append("Transfer-Encoding: chunked" if chunked
                    else "Content-Length: %d" % n)
        if expect:
            head.append("Expect: 100-continue")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        saw100 = False
        if expect:
            f = sock.makefile("rb")
            saw100 = f.readline().startswith(b"HTTP/1.1 100")
            f.readline()
            f.close()
        h = hashlib.sha256()
        left = n
        while left:
            d = BLOCK[:min(left, len(BLOCK))]
            h.update(d)
            sock.sendall(b"%x\r\n%s\r\n" % (len(d), d) if chunked else d)
            left -= len(d)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        r = read_response(sock, "PUT")
        return r.status, harness.load_json_or_none(r.read()), \
            h.hexdigest(), saw100
    finally:
        sock.close()


def download(s, name, n, chunked=False):
    """GETs /proxy/<name>/source?n=N; returns (status, headers, bytes
    received, their sha256)."""
    c = s.connect()
    try:
        c.request("GET", "/proxy/%s/source?n=%d%s"
                  % (name, n, "&chunked=1" if chunked else ""),
                  headers=s.auth_headers())
        r = c.getresponse()
        h, got = hashlib.sha256(), 0
        while True:
            d = r.read(MB)
            if not d:
                break
            h.update(d)
            got += len(d)
        return r.status, {k.lower(): v for k, v in r.getheaders()}, got, \
            h.hexdigest()
    finally:
        c.close()


def test_route(s, name, info):
    auth = s.auth_headers()
    status, hdrs, raw = s.request("GET", "/proxy/%s/healthz" % name,
                                  headers=auth)
    t.is_((status, raw), (200, b"OK"), "GET /proxy/<id>/healthz: 200 OK")
    status, _, raw = s.request("GET", "/proxy/nope/healthz", headers=auth)
    t.is_((status, harness.load_json_or_none(raw)),
          (404, {"detail": "sandbox not found: nope"}),
          "unknown identity: 404 sandbox not found")
    status, hdrs, raw = s.request("GET", "/proxy/%s/healthz" % name)
    t.is_((status, harness.load_json_or_none(raw),
           hdrs.get("www-authenticate")),
          (401, {"detail": "Authentication required"}, "Bearer"),
          "no token: 401 with WWW-Authenticate")
    status, _, raw = s.request("GET", "/proxy/%s/healthz" % name,
                               headers={"Authorization": "Bearer nope"})
    t.is_((status, harness.load_json_or_none(raw)),
          (401, {"detail": "Invalid authentication credentials"}),
          "wrong token: 401")
    status, _, raw = s.request("GET", "/proxy/nope/healthz",
                               headers={"Authorization": "Bearer nope"})
    t.is_(status, 401, "auth comes before the lookup")
    status, hdrs, _ = s.request("HEAD", "/proxy/%s/healthz" % name,
                                headers=auth)
    t.is_((status, hdrs.get("allow")), (405, "DELETE, GET, PATCH, POST, PUT"),
          "HEAD: 405 with Allow")
    status, _, raw = s.request("GET", "/proxy/%s" % name, headers=auth)
    t.is_(status, 404, "no path after the identity: 404")
    status, _, raw = s.request("GET", "/proxy/%s/nosuch" % name,
                               headers=auth)
    t.is_((status, harness.load_json_or_none(raw)),
          (404, {"detail": "Not Found"}), "the runtime's own 404 passes")
    status, _, raw = s.request("GET", "/proxy/%s/stats" % info["session_id"],
                               headers=auth)
    t.is_(status, 200, "the bare session_id is resolved too")
    # Ordinary RPCs and proxied requests share a kept-alive connection.
    for i in range(3):
        st1, _, _ = s.request("GET", "/proxy/%s/healthz" % name,
                              headers=auth)
        data = s.call("get_status", identity=name)
        if st1 != 200 or data != "running":
            break
    t.ok(st1 == 200 and data == "running",
         "proxy and RPC alternate on one connection")


def test_headers(s, name, info):
    c = s.connect()
    try:
        c.putrequest("GET", "/proxy/%s/headers?q=a%%2Fb&r=1" % name,
                     skip_accept_encoding=True)
        c.putheader("Authorization", "Bearer " + s.token)
        c.putheader("X-Custom", "kept")
        c.putheader("Connection", "keep-alive, X-Drop-Me")
        c.putheader("X-Drop-Me", "dropped")
        c.putheader("Keep-Alive", "timeout=5")
        c.putheader("TE", "trailers")
        c.putheader("Proxy-Authorization", "Basic eA==")
        c.putheader("Upgrade", "h2c")
        c.endheaders()
        r = c.getresponse()
        doc = json.loads(r.read())
    finally:
        c.close()
    got = {}
    for k, v in doc["headers"]:
        got.setdefault(k.lower(), []).append(v)
    t.is_(got.get("authorization"), ["Bearer " + info["runtime_token"]],
          "exactly one Authorization upstream: the runtime token")
    t.is_(got.get("x-custom"), ["kept"], "other headers are forwarded")
    dropped = [h for h in ("x-drop-me", "keep-alive", "te",
                           "proxy-authorization", "upgrade", "connection")
               if h in got]
    t.is_(dropped, [], "hop-by-hop request headers are dropped")
    t.ok(got.get("host") and "127.0.0.1:%d" % s.port not in got["host"],
         "Host names the runtime, not the manager", got.get("host"))
    status, _, raw = s.request(
        "POST", "/proxy/%s/sink?q=a%%2Fb&r=1" % name, b"xyz",
        dict(s.auth_headers(), **{"Content-Type": "text/plain"}))
    doc = harness.load_json_or_none(raw) or {}
    t.is_((status, doc.get("query"), doc.get("n"), doc.get("method")),
          (200, "q=a%2Fb&r=1", 3, "POST"),
          "the raw query string and a small POST body get through")
    status, hdrs, raw = s.request("GET", "/proxy/%s/status?code=201" % name,
                                  headers=s.auth_headers())
    t.is_((status, harness.load_json_or_none(raw), hdrs.get("x-keep"),
           hdrs.get("content-type")),
          (201, {"code": 201}, "1", "application/json"),
          "the runtime's status, body and headers come back")
    t.is_([h for h in ("x-hop", "keep-alive") if h in hdrs], [],
          "hop-by-hop response headers are dropped")
    status, hdrs, raw = s.request(
        "GET", "/proxy/%s/healthz" % name,
        headers=dict(s.auth_headers(), Origin="http://example.org"))
    t.is_((status, hdrs.get("access-control-allow-origin")),
          (200, "http://example.org"), "CORS headers on proxied replies")
    for method in ("DELETE", "PATCH"):
        status, _, raw = s.request(method, "/proxy/%s/headers" % name,
                                   headers=s.auth_headers())
        t.is_((status, (harness.load_json_or_none(raw) or {}).get("method")),
              (200, method), "%s is proxied" % method)


def test_uploads(s, name):
    status, doc, sha, _ = upload(s, name, 3 * MB + 7, chunked=True)
    doc = doc or {}
    t.is_((status, doc.get("n"), doc.get("sha256"), doc.get("te")),
          (200, 3 * MB + 7, sha, "chunked"),
          "chunked upload by hand: the runtime gets every byte (chunked)")
    status, doc, sha, saw100 = upload(s, name, 2 * MB, expect=True)
    doc = doc or {}
    t.is_((saw100, status, doc.get("n"), doc.get("sha256")),
          (True, 200, 2 * MB, sha), "Expect: 100-continue is honoured")
    status, doc, sha, _ = upload(s, name, 0)
    t.is_((status, (doc or {}).get("n"), (doc or {}).get("cl")),
          (200, 0, "0"), "an empty PUT arrives with Content-Length: 0")


def test_big(s, name):
    """100 MB up and down; the manager's peak RSS must not grow by more
    than 16 MB (it would by 100 MB if either direction were buffered)."""
    limit = 16 * MB
    rss0, _ = memory(s)
    precise = reset_peak(s)
    start = time.monotonic()
    status, doc, sha, _ = upload(s, name, 100 * MB)
    secs = time.monotonic() - start
    doc = doc or {}
    t.is_((status, doc.get("n"), doc.get("sha256")),
          (200, 100 * MB, sha), "100 MB upload arrives intact")
    rss1, hwm1 = memory(s)
    t.diag("100 MB up in %.2f s; manager RSS %d kB before, %d kB after, "
           "peak %d kB (%s)" % (secs, rss0 // 1024, rss1 // 1024,
                                hwm1 // 1024,
                                "peak reset" if precise else "lifetime"))
    bounded(s, hwm1 - rss0, limit, "upload: manager peak RSS")
    precise = reset_peak(s)
    rss0, _ = memory(s)
    start = time.monotonic()
    status, hdrs, got, gsha = download(s, name, 100 * MB)
    secs = time.monotonic() - start
    t.is_((status, got, gsha, hdrs.get("content-length")),
          (200, 100 * MB, pattern_sha(100 * MB), str(100 * MB)),
          "100 MB download arrives intact, with its Content-Length")
    rss1, hwm1 = memory(s)
    t.diag("100 MB down in %.2f s; manager RSS %d kB before, %d kB after, "
           "peak %d kB" % (secs, rss0 // 1024, rss1 // 1024, hwm1 // 1024))
    bounded(s, hwm1 - rss0, limit, "download: manager peak RSS")
    status, hdrs, got, gsha = download(s, name, 10 * MB + 3, chunked=True)
    t.is_((status, got, gsha, hdrs.get("transfer-encoding")),
          (200, 10 * MB + 3, pattern_sha(10 * MB + 3), "chunked"),
          "a download without a length comes chunked")


def stats(s, name):
    status, _, raw = s.request("GET", "/proxy/%s/stats" % name,
                               headers=s.auth_headers())
    return harness.load_json_or_none(raw) or {}


def test_client_leaves(s, name):
    before = stats(s, name).get("aborted", 0)
    sock = connect(s)
    try:
        sock.sendall(("GET /proxy/%s/source?n=%d HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer %s\r\n\r\n"
                      % (name, 20 * 1024 * MB, s.token)).encode())
        got = 0
        while got < 4 * MB:
            d = sock.recv(65536)
            if not d:
                break
            got += len(d)
    finally:
        sock.close()
    aborted = harness.wait_for(
        lambda: stats(s, name).get("aborted", 0) > before, 15)
    t.ok(aborted, "a client leaving a 20 GB download ends the upstream "
         "transfer")
    status, _, raw = s.request("GET", "/proxy/%s/healthz" % name,
                               headers=s.auth_headers())
    t.is_(status, 200, "the manager serves on afterwards")


def test_agent(s, base_name):
    """The sandpool-agent's own routes, over its unix socket."""
    auth = s.auth_headers()
    status, _, raw = s.request("GET", "/proxy/%s/healthz" % base_name,
                               headers=auth)
    t.is_((status, raw), (200, b"OK"), "agent: healthz through the proxy")
    status, _, raw = s.request(
        "POST", "/proxy/%s/tools/run_shell_command" % base_name,
        json.dumps({"command": "echo via-proxy"}),
        dict(auth, **{"Content-Type": "application/json"}))
    doc = harness.load_json_or_none(raw) or {}
    t.is_((status, (doc.get("content") or [{}])[0].get("text")),
          (200, "via-proxy\n"), "agent: run_shell_command through the proxy")
    status, _, raw = s.request("GET", "/proxy/%s/nosuch" % base_name,
                               headers=auth)
    t.is_(status, 404, "agent: its 404 passes through")


def test_down(s, name, base_name):
    for n, what in ((name, "published port"), (base_name, "unix socket")):
        t.is_(s.call("stop", identity=n), True, "stop (%s)" % what)
        status, _, raw = s.request("GET", "/proxy/%s/healthz" % n,
                                   headers=s.auth_headers())
        detail = (harness.load_json_or_none(raw) or {}).get("detail", "")
        t.ok(status == 502 and detail.startswith("proxy upstream error: "),
             "runtime down (%s): 502 proxy upstream error" % what,
             (status, raw))
        status, _, raw = s.request("PUT", "/proxy/%s/sink" % n, b"abc",
                                   headers=s.auth_headers())
        t.is_(status, 502, "a PUT to a stopped runtime (%s): 502" % what)


def main():
    work = harness.mkdtemp("spx")
    ext = os.path.join(work, "upstream.json")
    with open(ext, "w") as f:
        json.dump([{"name": "pyup", "image": harness.TEST_IMAGE,
                    "inject_agent": False, "runtime_port": 80,
                    "network": "bridge",
                    "description": "test upstream: python3 http.server",
                    "cmd": ["/usr/bin/python3", "-c", UPSTREAM]}], f)
    s = t.run("start the server", harness.Server, extensions=[ext],
              env={"READONLY_MOUNTS": json.dumps(MOUNTS)})
    if s is None:
        return
    name = t.run("create the upstream sandbox", s.call, "create",
                 sandbox_type="pyup")
    base_name = t.run("create an agent sandbox", s.call, "create",
                      sandbox_type="base")
    if not name or not base_name:
        t.ok(False, "sandboxes were created", (name, base_name))
        return
    info = s.call("get_info", identity=name)
    t.ok(info.get("url", "").startswith("http://"),
         "the upstream is reached over its published port", info.get("url"))
    t.run("route, auth, 404", test_route, s, name, info)
    t.run("headers both ways", test_headers, s, name, info)
    t.run("uploads", test_uploads, s, name)
    t.run("100 MB up and down", test_big, s, name)
    t.run("client leaves", test_client_leaves, s, name)
    t.run("agent routes", test_agent, s, base_name)
    t.run("runtime down", test_down, s, name, base_name)
    t.ok(s.alive(), "the server is still running")


main()
sys.exit(t.done())
