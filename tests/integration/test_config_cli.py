"""Command line and configuration checking of runtime-sandbox-server:
--version, --help, -n (check, print the effective config, exit), file:line
errors for bad values, warnings for unknown keys, a missing --config file.
Only the last sub-test (a real start with an unknown key) needs dockerd."""

import os
import re
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

t = harness.Tap(watchdog=120)
work = harness.mkdtemp("spc")


def run(*args, timeout=20):
    """Runs the server with args; returns (status, stdout + stderr)."""
    p = subprocess.run([harness.SERVER_BIN] + list(args), cwd=work,
                       env=harness.server_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def good_settings():
    """A complete, valid configuration."""
    return {
        "HOST": "127.0.0.1",
        "PORT": harness.free_port(),
        "BEARER_TOKEN": "tok-" + secrets.token_hex(12),
        "DEFAULT_SANDBOX_TYPE": "base",
        "POOL_SIZE": 3,
        "SANDPOOL_AGENT": harness.AGENT_BIN,
        "SANDPOOL_RUN_DIR": harness.mkdtemp("spr"),
        "DEFAULT_MOUNT_DIR": harness.mkdtemp("spm"),
        "SANDPOOL_INSTANCE_ID": "test-cli-%d" % os.getpid(),
        "PORT_RANGE": "[21000,21100]",
    }


def env_file(name, settings, extra_lines=()):
    """Writes settings (one per line, after a comment line) and then
    extra_lines; returns the path and the line number of each key."""
    path = os.path.join(work, name)
    lines = {}
    with open(path, "w") as f:
        f.write("# %s\n" % name)
        n = 1
        for k, v in settings.items():
            n += 1
            f.write("%s=%s\n" % (k, v))
            lines[k] = n
        for line in extra_lines:
            n += 1
            f.write(line + "\n")
            lines[line.split("=", 1)[0]] = n
    return path, lines


def error_at(out, path, line, key, value):
    """True if out has a "path:line: ..." message that names key or
    value."""
    pat = r"(^|[\s/])%s:%d:[^\n]*(%s|%s)" % (
        re.escape(os.path.basename(path)), line, re.escape(key),
        re.escape(value))
    return re.search(pat, out, re.M) is not None


def test_version():
    status, out = run("--version")
    t.is_(status, 0, "--version exits 0")
    want = harness.configure_version()
    t.ok(want is not None and want in out,
         "--version prints the version of configure.ac (%s)" % want, out)


def test_help():
    status, out = run("--help")
    t.is_(status, 0, "--help exits 0")
    for opt in ("--config", "--extension", "--log-level", "-n"):
        t.ok(re.search(r"(^|[\s\[])%s\b" % re.escape(opt), out, re.M),
             "--help mentions %s" % opt, out)


def test_check_good():
    s = good_settings()
    path, _ = env_file("good.env", s)
    status, out = run("-n", "--config", path)
    t.is_(status, 0, "-n with a good config exits 0")
    t.ok(re.search(r"^PORT=%d$" % s["PORT"], out, re.M),
         "-n prints the effective PORT", out)
    t.ok(re.search(r"^POOL_SIZE=3$", out, re.M),
         "-n prints the effective POOL_SIZE", out)
    t.ok(re.search(r"^HEARTBEAT_TIMEOUT=300$", out, re.M),
         "-n prints defaults too (HEARTBEAT_TIMEOUT=300)", out)
    t.ok(re.search(r"^BEARER_TOKEN=", out, re.M),
         "-n prints a BEARER_TOKEN line", out)
    t.ok(s["BEARER_TOKEN"] not in out and
         s["BEARER_TOKEN"][4:] not in out,
         "-n masks BEARER_TOKEN", out)


def test_bad_values():
    cases = [
        ("PORT", "abc"),
        ("PORT_RANGE", "[5,1]"),
        ("DEFAULT_SANDBOX_TYPE", "nope"),
        ("CONTAINER_DEPLOYMENT", "k8s"),
    ]
    for key, value in cases:
        s = good_settings()
        s[key] = value
        path, lines = env_file("bad-%s.env" % key.lower(), s)
        status, out = run("-n", "--config", path)
        t.is_(status, 1, "%s=%s: exit status 1" % (key, value))
        t.ok(error_at(out, path, lines[key], key, value),
             "%s=%s: error reported as %s:%d: naming %s"
             % (key, value, os.path.basename(path), lines[key], key), out)
        t.ok(not re.search(r"^PORT=", out, re.M),
             "%s=%s: no effective config printed" % (key, value), out)
    # All problems of one file are reported before exiting.
    s = good_settings()
    for key, value in cases:
        s[key] = value
    path, lines = env_file("bad-all.env", s)
    status, out = run("-n", "--config", path)
    t.is_(status, 1, "four bad values: exit status 1")
    t.ok(all(error_at(out, path, lines[k], k, v) for k, v in cases),
         "four bad values: each reported with its own line", out)


def test_unknown_key():
    s = good_settings()
    path, lines = env_file("unknown.env", s, ["FROBNICATE_WIDGETS=1"])
    status, out = run("-n", "--config", path)
    t.is_(status, 0, "an unknown key does not fail -n")
    t.ok("FROBNICATE_WIDGETS" in out, "an unknown key is warned about", out)
    return path


def test_missing_config():
    path = os.path.join(work, "does-not-exist.env")
    status, out = run("-n", "--config", path)
    t.is_(status, 1, "--config naming a missing file: exit status 1")
    t.ok("does-not-exist.env" in out, "the missing file is named", out)
    status, out = run("--config", path)
    t.is_(status, 1, "--config naming a missing file, no -n: exit 1")


def test_bad_extension():
    s = good_settings()
    path, _ = env_file("ext.env", s)
    ext = os.path.join(work, "broken-types.json")
    with open(ext, "w") as f:
        f.write('{"name": "base", "image": ')
    status, out = run("-n", "--config", path, "--extension", ext)
    t.is_(status, 1, "a malformed --extension file: exit status 1")
    t.ok("broken-types.json" in out, "the malformed extension is named", out)


def test_unknown_key_starts():
    """An unknown key warns, and the server still starts and serves."""
    d = harness.Docker()
    if not d.ping() or not d.image_exists(harness.TEST_IMAGE):
        if os.environ.get("SANDPOOL_TEST_DOCKER"):
            t.ok(False, "docker is usable for a real start")
        else:
            t.skip("server starts despite an unknown key", "no docker")
        return
    s = harness.Server(env={"FROBNICATE_WIDGETS": "1"})
    status, _, body = s.request("GET", "/health")
    t.is_(status, 200, "server with an unknown key answers /health")
    t.ok("FROBNICATE_WIDGETS" in s.log(),
         "its log warns about the unknown key", s.log())
    t.is_(s.stop(), 0, "and stops with status 0 on SIGTERM")


if not os.access(harness.SERVER_BIN, os.X_OK):
    t.ok(False, "%s is built" % harness.SERVER_BIN)
    sys.exit(t.done())

for name, fn in [("--version", test_version), ("--help", test_help),
                 ("-n good", test_check_good), ("bad values", test_bad_values),
                 ("unknown key", test_unknown_key),
                 ("missing config", test_missing_config),
                 ("bad extension", test_bad_extension),
                 ("unknown key start", test_unknown_key_starts)]:
    t.run(name, fn)
sys.exit(t.done())
