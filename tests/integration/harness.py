"""harness: what every integration test of sandpool shares.

TAP output (Tap), free ports, a small Docker Engine client over the unix
socket (Docker), and a private runtime-sandbox-server (Server) that runs on
a free port with its own instance id, port window and temporary directories.
Whatever a test starts is torn down on every way out (normal exit, exception,
SIGINT/SIGTERM/SIGHUP, watchdog): the server is killed by its pid, every
container labelled with its instance id is removed, and its temporary
directories are deleted.

Python 3 standard library only.
"""

import atexit
import http.client
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SANDPOOL_SRCDIR") or os.path.dirname(
    os.path.dirname(HERE))
BUILDDIR = os.environ.get("SANDPOOL_BUILDDIR") or SRCDIR
SERVER_BIN = os.path.join(BUILDDIR, "runtime-sandbox-server")
AGENT_BIN = os.path.join(BUILDDIR, "sandpool-agent")
BUSYBOX_TYPES = os.path.join(SRCDIR, "tests", "integration",
                             "busybox-types.json")
TEST_IMAGE = "sandpool/busybox:latest"
PREFIX = "runtime_sandbox_container_"  # default CONTAINER_PREFIX_KEY
API = "/v1.41"

_servers = []  # every Server made by this process, in order
_tmpdirs = []  # removed last, after the servers and their containers
_cleaning = False


def _rm_tree(path):
    """Removes a directory tree, ignoring what cannot be removed."""
    shutil.rmtree(path, ignore_errors=True)


def mkdtemp(prefix="sp"):
    """Makes a temporary directory under /tmp that is removed at exit."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    _tmpdirs.append(d)
    return d


def cleanup_all():
    """Stops every server, removes their containers, then the temp dirs."""
    global _cleaning
    if _cleaning:
        return
    _cleaning = True
    for s in reversed(_servers):
        try:
            s.close()
        except Exception:  # keep cleaning the others
            traceback.print_exc(file=sys.stderr)
    _cleanup_services()
    for d in reversed(_tmpdirs):
        _rm_tree(d)
    del _tmpdirs[:]


def _on_signal(signum, frame):
    """Tears everything down when the test is interrupted."""
    print("# interrupted by signal %d, cleaning up" % signum, flush=True)
    cleanup_all()
    os._exit(128 + signum)


atexit.register(cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# ---------------------------------------------------------------- TAP

class Tap:
    """Numbered TAP lines; the plan is printed last by done()."""

    def __init__(self, watchdog=300):
        """watchdog: seconds after which the file fails and cleans up."""
        self.n = 0
        self.failed = 0
        if watchdog:
            signal.signal(signal.SIGALRM, self._on_watchdog)
            signal.alarm(watchdog)
        self.watchdog = watchdog

    def _on_watchdog(self, signum, frame):
        self.ok(False, "test file finished within %d s (watchdog)"
                % self.watchdog)
        self.diag("".join(traceback.format_stack(frame)))
        self._dump_logs()
        print("1..%d" % self.n, flush=True)
        cleanup_all()
        os._exit(1)

    @staticmethod
    def diag(msg):
        """Prints msg as TAP diagnostics (# lines)."""
        lines = str(msg).splitlines() or [""]
        print("\n".join("# " + line for line in lines), flush=True)

    def ok(self, cond, name, info=None):
        """Reports one check, with info as diagnostics when it fails;
        returns its truth."""
        self.n += 1
        name = " ".join(str(name).split()).replace("#", "\\#")
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name),
              flush=True)
        if not cond:
            self.failed += 1
            self.diag("  failed at " + _test_line())
            if info is not None:
                self.diag(info)
        return bool(cond)

    def is_(self, got, want, name):
        """Checks got == want, printing both when they differ."""
        r = self.ok(got == want, name)
        if not r:
            self.diag("       got: %s\n  expected: %s"
                      % (_show(got), _show(want)))
        return r

    def skip(self, name, reason):
        """Reports a check that cannot run here."""
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, reason), flush=True)

    def run(self, name, fn, *args, **kwargs):
        """Runs one sub-test; an exception is a failure and the rest goes
        on. Returns fn's value, or None after an exception."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            self.ok(False, "%s: ran without exception (%s)"
                    % (name, type(e).__name__))
            self.diag(traceback.format_exc())
            return None

    def _dump_logs(self):
        for s in _servers:
            self.diag("--- last lines of the log of server %s (%s)"
                      % (s.instance_id, s.log_path))
            self.diag("\n".join(s.log().splitlines()[-60:]))

    def done(self):
        """Prints the plan (and server logs on failure); returns the exit
        status."""
        signal.alarm(0)
        if self.failed:
            self._dump_logs()
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed else 0


def _test_line():
    """file:line of the innermost frame outside this module."""
    here = os.path.abspath(__file__)
    for fr in reversed(traceback.extract_stack()):
        if os.path.abspath(fr.filename) != here:
            return "%s:%d" % (os.path.basename(fr.filename), fr.lineno)
    return "?"


def _show(v):
    try:
        return json.dumps(v, sort_keys=True)
    except (TypeError, ValueError):
        return repr(v)


# ---------------------------------------------------------------- ports

def free_port():
    """A TCP port that is free on this host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    """True if nothing listens on port, on any address."""
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


_windows = []


def free_window(size=200, lo=20000, hi=30000):
    """A random [a, a+size) port window inside [lo, hi) whose ports are all
    free now and that no other server of this process uses."""
    for _ in range(200):
        a = random.randrange(lo, hi - size)
        if any(a < b + n and b < a + size for b, n in _windows):
            continue
        if all(port_is_free(p) for p in range(a, a + size)):
            _windows.append((a, size))
            return a, a + size
    raise RuntimeError("no free window of %d ports in [%d, %d)"
                       % (size, lo, hi))


def wait_for(fn, timeout, interval=0.2):
    """Calls fn until it returns something true or timeout seconds pass;
    returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------- Docker

def docker_socket_path():
    """The engine's unix socket: DOCKER_HOST if unix://, else the default."""
    h = os.environ.get("DOCKER_HOST", "")
    if h.startswith("unix://"):
        return h[len("unix://"):]
    return "/var/run/docker.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX socket."""

    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Docker:
    """The few Engine API calls the tests need, one connection per call."""

    def __init__(self, path=None):
        self.path = path or docker_socket_path()

    def request(self, method, path, body=None, timeout=60):
        """Returns (status, decoded JSON or text)."""
        c = UnixHTTPConnection(self.path, timeout=timeout)
        try:
            headers = {}
            if body is not None:
                body = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        if "json" in (r.getheader("Content-Type") or "") and raw:
            return r.status, json.loads(raw)
        return r.status, raw.decode("utf-8", "replace")

    def ping(self):
        try:
            status, body = self.request("GET", "/_ping", timeout=5)
        except OSError:
            return False
        return status == 200 and body == "OK"

    def image_exists(self, ref):
        status, _ = self.request("GET", "%s/images/%s/json" % (API, ref))
        return status == 200

    def containers(self, labels=(), running_only=False):
        """Containers carrying every label ("k=v" or "k") given."""
        q = {"all": "0" if running_only else "1"}
        if labels:
            q["filters"] = json.dumps({"label": list(labels)})
        status, body = self.request(
            "GET", "%s/containers/json?%s" % (API, urllib.parse.urlencode(q)))
        if status != 200:
            raise RuntimeError("docker: list containers: %d %s"
                               % (status, body))
        return body

    def instance_containers(self, instance_id, running_only=False,
                            extra=()):
        return self.containers(["sandpool.instance=" + instance_id]
                               + list(extra), running_only)

    def inspect(self, ref):
        """The container's inspect document, or None if it does not exist."""
        status, body = self.request("GET", "%s/containers/%s/json"
                                    % (API, urllib.parse.quote(ref)))
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError("docker: inspect %s: %d %s"
                               % (ref, status, body))
        return body

    def remove(self, ref):
        """Force-removes a container (and its anonymous volumes)."""
        status, _ = self.request("DELETE", "%s/containers/%s?force=1&v=1"
                                 % (API, urllib.parse.quote(ref)))
        return status in (204, 404)


def skip_unless_docker(need_image=True):
    """Returns a Docker client, or ends the test file: skipped when
    SANDPOOL_TEST_DOCKER is unset and dockerd does not answer, failed when it
    is set."""
    d = Docker()
    problem = None
    if not d.ping():
        problem = "dockerd does not answer on %s" % d.path
    elif need_image and not d.image_exists(TEST_IMAGE):
        problem = ("image %s is missing (./runtime-sandbox-builder busybox)"
                   % TEST_IMAGE)
    if problem is None:
        return d
    if os.environ.get("SANDPOOL_TEST_DOCKER"):
        print("not ok 1 - docker is usable (SANDPOOL_TEST_DOCKER is set)")
        print("# " + problem)
        print("1..1", flush=True)
        sys.exit(1)
    print("1..0 # SKIP " + problem, flush=True)
    sys.exit(0)


# ---------------------------------------------------------------- Server

RANDOM = object()  # "make up a random token"
DEFAULT = object()  # "the server's own token"

# What of the test's environment the server may see; everything else (a
# developer's BEARER_TOKEN, POOL_SIZE, ...) would change its configuration.
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "DOCKER_HOST",
             "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
             "SANDPOOL_BENCH_RECORDS")


def server_env():
    """A minimal environment for the server process."""
    return {k: os.environ[k] for k in _PASS_ENV if k in os.environ}


def write_env(path, settings):
    """Writes a KEY=VALUE file; a None value leaves the key out."""
    with open(path, "w") as f:
        f.write("# written by tests/integration/harness.py\n")
        for k, v in settings.items():
            if v is not None:
                f.write("%s=%s\n" % (k, v))


class RpcError(Exception):
    """An RPC answered something other than 200."""

    def __init__(self, method, status, body):
        super().__init__("%s: HTTP %s: %s" % (method, status, _show(body)))
        self.status = status
        self.body = body


class Server:
    """A private runtime-sandbox-server.

    pool_size: POOL_SIZE. token: BEARER_TOKEN (RANDOM by default, "" turns
    auth off). env: extra or overriding keys for the .env file (None drops
    a key). extensions: extra --extension files after busybox-types.json.
    ports: the size of its PORT_RANGE window.
    like: another Server whose instance id, port, token, directories and
    settings are reused (a restart after a crash)."""

    def __init__(self, pool_size=0, token=RANDOM, env=None, extensions=(),
                 like=None, start=True, args=(), ports=200):
        self.closed = False
        self.proc = None
        self._conn = None
        self._conn_used = False
        self.work = mkdtemp("spw")
        self.env_path = os.path.join(self.work, "server.env")
        self.log_path = os.path.join(self.work, "server.log")
        self._logf = None
        self.docker = Docker()
        if like is not None:
            self.instance_id = like.instance_id
            self.port = like.port
            self.token = like.token
            self.run_dir = like.run_dir
            self.mount_dir = like.mount_dir
            self.port_range = like.port_range
            self.extensions = list(like.extensions)
            self.settings = dict(like.settings)
        else:
            self.instance_id = "test-%d-%s" % (os.getpid(),
                                               secrets.token_hex(4))
            self.port = free_port()
            self.token = (secrets.token_hex(16) if token is RANDOM
                          else token)
            self.run_dir = mkdtemp("spr")
            self.mount_dir = mkdtemp("spm")
            self.port_range = free_window(ports)
            self.extensions = [BUSYBOX_TYPES] + list(extensions)
            self.settings = {
                "HOST": "127.0.0.1",
                "PORT": self.port,
                "BEARER_TOKEN": self.token,
                "DEFAULT_SANDBOX_TYPE": "base",
                "POOL_SIZE": pool_size,
                "SANDPOOL_AGENT": AGENT_BIN,
                "SANDPOOL_RUN_DIR": self.run_dir,
                "DEFAULT_MOUNT_DIR": self.mount_dir,
                "SANDPOOL_INSTANCE_ID": self.instance_id,
                "PORT_RANGE": "[%d,%d]" % self.port_range,
            }
        self.settings.update(env or {})
        self.args = list(args)
        write_env(self.env_path, self.settings)
        _servers.append(self)
        if start:
            self.start()

    def command(self):
        cmd = [SERVER_BIN, "--config", self.env_path]
        for e in self.extensions:
            cmd += ["--extension", e]
        return cmd + self.args

    def start(self, timeout=30):
        """Starts the process and waits until GET /health answers 200."""
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.work, env=server_env(),
            stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "server exited with status %d before answering "
                    "/health; its log:\n%s" % (self.proc.returncode,
                                               self.log()))
            try:
                status, _, _ = self.request("GET", "/health", timeout=2,
                                            fresh=True)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError("server did not answer /health within "
                                   "%d s; its log:\n%s" % (timeout,
                                                           self.log()))
            time.sleep(0.1)

    def log(self):
        """Everything the server wrote so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- HTTP

    def connect(self, timeout=120):
        """A new keep-alive connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def auth_headers(self, token=DEFAULT):
        if token is DEFAULT:
            token = self.token
        return {"Authorization": "Bearer " + token} if token else {}

    def request(self, method, path, body=None, headers=None, timeout=120,
                fresh=False):
        """One request; returns (status, headers with lower-case names,
        body bytes). Uses the shared keep-alive connection unless fresh."""
        if isinstance(body, str):
            body = body.encode()
        if fresh:
            c = self.connect(timeout)
            try:
                return _exchange(c, method, path, body, headers or {})
            finally:
                c.close()
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = self.connect(timeout)
                self._conn_used = False
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            try:
                r = _exchange(self._conn, method, path, body, headers or {})
                self._conn_used = True
                return r
            except (ConnectionError, http.client.HTTPException):
                # A kept-alive connection the server closed: retry once.
                stale = self._conn_used
                self.close_connection()
                if attempt or not stale:
                    raise

    def close_connection(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def rpc(self, method, body=None, token=DEFAULT, timeout=120):
        """POST /<method>; body is an object (sent as JSON), or bytes/str
        sent as they are. Returns (status, headers, JSON or None)."""
        if body is None:
            body = {}
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json"}
        headers.update(self.auth_headers(token))
        status, hdrs, raw = self.request("POST", "/" + method, body, headers,
                                         timeout)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return status, hdrs, doc

    def call(self, method, timeout=120, **body):
        """An RPC that must answer 200 {"data": ...}; returns the data."""
        status, _, doc = self.rpc(method, body, timeout=timeout)
        if status != 200 or not isinstance(doc, dict) or "data" not in doc:
            raise RpcError(method, status, doc)
        return doc["data"]

    # -- process

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig; returns the exit status, or None if the process is
        still running after timeout seconds."""
        self.close_connection()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill9(self):
        """Kills the process with SIGKILL, leaving its containers behind."""
        self.close_connection()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def containers(self, running_only=False, extra=()):
        return self.docker.instance_containers(self.instance_id,
                                               running_only, extra)

    def close(self):
        """Kills the server by pid, removes every container labelled with its
        instance id. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self.close_connection()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._logf is not None:
            self._logf.close()
        try:
            for c in self.containers():
                self.docker.remove(c["Id"])
        except OSError:
            pass  # no dockerd: nothing can have been created


def _exchange(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, raw


def raw_exchange(port, pieces, pause=0.05, timeout=60):
    """Sends the byte strings in pieces on a new connection, pausing between
    them, and returns (status, headers, body) of the response. A response
    that comes before everything is sent (an early 413) is read as well."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for i, p in enumerate(pieces):
            if i:
                time.sleep(pause)
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    break
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                break
        r = http.client.HTTPResponse(s, method="POST")
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        s.close()


def http_get(url, headers=None, timeout=10):
    """GET url with http.client (no proxy from the environment); returns
    (status, body), or (error text, None) if it cannot connect."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        c.request("GET", u.path + ("?" + u.query if u.query else ""),
                  headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    except OSError as e:
        return str(e), None
    finally:
        c.close()


def load_json_or_none(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def configure_version():
    """The version in configure.ac's AC_INIT."""
    with open(os.path.join(SRCDIR, "configure.ac")) as f:
        m = re.search(r"AC_INIT\(\[[^]]*\],\s*\[([^]]*)\]", f.read())
    return m.group(1) if m else None


# ---------------------------------------------------------------- Redis

_redises = []
_balancers = []


def _stop_pid_file(path, timeout=10):
    """Sends SIGTERM to the pid in path, waits for it to go; SIGKILL after
    timeout. Returns True if a process was stopped."""
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


class Redis:
    """A private redis-server on a free loopback port, without persistence,
    stopped by its pid. call() speaks RESP2 on a fresh connection."""

    def __init__(self, port=None):
        self.dir = mkdtemp("spredis")
        self.port = port or free_port()
        self.pidfile = os.path.join(self.dir, "redis.pid")
        _redises.append(self)
        self.start()

    def start(self, timeout=10):
        subprocess.run(
            ["redis-server", "--bind", "127.0.0.1", "--port",
             str(self.port), "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--pidfile", self.pidfile,
             "--dir", self.dir, "--logfile",
             os.path.join(self.dir, "redis.log")], check=True,
            stdout=subprocess.DEVNULL)
        if not wait_for(lambda: self._ping(), timeout, 0.05):
            raise RuntimeError("redis-server did not answer on %d"
                               % self.port)

    def _ping(self):
        try:
            return self.call("PING") == "PONG"
        except OSError:
            return False

    def stop(self):
        """Stops the server (its data is gone: no persistence)."""
        _stop_pid_file(self.pidfile)
        wait_for(lambda: not self._ping(), 10, 0.05)

    def close(self):
        self.stop()

    def call(self, *args, db=0):
        """Runs one command (after SELECT db); returns str, int, list or
        None. An error reply raises RuntimeError."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=10) as s:
            f = s.makefile("rb")
            out = b""
            cmds = ([("SELECT", str(db))] if db else []) + [args]
            for cmd in cmds:
                out += b"*%d\r\n" % len(cmd)
                for a in cmd:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            r = None
            for _ in cmds:
                r = _resp_read(f)
            return r

    def env(self, db=0):
        """The .env keys that point a server at this Redis."""
        return {"REDIS_ENABLED": "true", "REDIS_SERVER": "127.0.0.1",
                "REDIS_PORT": self.port, "REDIS_DB": db}


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:].rstrip(b"\r\n")
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data.decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP line %r" % line)


class Haproxy:
    """haproxy on a free loopback port balancing round-robin over servers'
    ports; stopped by its pid."""

    def __init__(self, ports):
        self.dir = mkdtemp("sphap")
        self.port = free_port()
        self.pidfile = os.path.join(self.dir, "haproxy.pid")
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 256\n"
                    "defaults\n  mode http\n  timeout connect 5s\n"
                    "  timeout client 120s\n  timeout server 120s\n"
                    "  option http-server-close\n"
                    "frontend fe\n  bind 127.0.0.1:%d\n"
                    "  default_backend be\n"
                    "backend be\n  balance roundrobin\n" % self.port)
            for i, p in enumerate(ports):
                f.write("  server s%d 127.0.0.1:%d\n" % (i, p))
        _balancers.append(self)
        subprocess.run(["haproxy", "-D", "-f", cfg, "-p", self.pidfile],
                       check=True, stdout=subprocess.DEVNULL)
        if not wait_for(lambda: not port_is_free(self.port), 10, 0.05):
            raise RuntimeError("haproxy did not listen")

    def close(self):
        _stop_pid_file(self.pidfile)


def _cleanup_services():
    """Stops the balancers and Redis servers a test started."""
    for b in _balancers:
        try:
            b.close()
        except Exception:
            traceback.print_exc(file=sys.stderr)
    for r in _redises:
        try:
            r.close()
        except Exception:
            traceback.print_exc(file=sys.stderr)
    del _balancers[:]
    del _redises[:]


class Via:
    """RPC calls through another port (a load balancer) with a server's
    token; the same call()/rpc() as Server."""

    def __init__(self, port, token):
        self.port = port
        self.token = token

    def rpc(self, method, body=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port,
                                       timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = "Bearer " + self.token
            status, hdrs, raw = _exchange(c, "POST", "/" + method,
                                          json.dumps(body or {}), headers)
        finally:
            c.close()
        return status, hdrs, load_json_or_none(raw) if raw else None

    def call(self, method, timeout=120, **body):
        status, _, doc = self.rpc(method, body, timeout)
        if status != 200 or not isinstance(doc, dict) or "data" not in doc:
            raise RpcError(method, status, doc)
        return doc["data"]
