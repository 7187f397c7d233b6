#!/usr/bin/env python3
"""bench_toolcall.py: runs tests/bench/bench_toolcall (build it with
`make bench`) against a private runtime-sandbox-server on busybox
sandboxes (the integration tests' harness: free port, own instance id and
run dir, everything removed at the end). Arguments after the script's name
are passed to the program (-n 200 by default). From the build tree:
    make bench && python3 tests/bench/bench_toolcall.py [-n 200]
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import harness  # noqa: E402

BIN = os.path.join(harness.BUILDDIR, "tests", "bench", "bench_toolcall")


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit("bench_toolcall.py: %s is missing: run `make bench`" % BIN)
    harness.skip_unless_docker()
    s = harness.Server(pool_size=0)
    try:
        args = [BIN, "--server", "http://127.0.0.1:%d" % s.port,
                "--token", s.token, "--run-dir", s.run_dir]
        rest = sys.argv[1:] or ["-n", "200"]
        return subprocess.call(args + rest)
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
