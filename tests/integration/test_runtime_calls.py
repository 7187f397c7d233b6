"""Calls into different sandboxes run at the same time: six tool calls,
each into its own sandbox and each blocked until the test lets it go,
must all have started before any is let go. (Every sandbox's runtime
used to share one libcurl host name, which capped the calls into all
sandboxes at four at once.) No timing is asserted: the test waits for
the calls to start, with a generous deadline."""

import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

N = 6
BLOCK = ("touch /workspace/started; "
         "while [ ! -e /workspace/go ]; do sleep 0.05; done; echo released")

t = harness.Tap(watchdog=180)
harness.skip_unless_docker()


def concurrent_calls():
    srv = harness.Server(pool_size=0)
    names = [srv.call("create_from_pool", sandbox_type="base")
             for _ in range(N)]
    dirs = [srv.call("get_info", identity=n)["mount_dir"] for n in names]
    results = [None] * N

    def call(i):
        c = srv.connect(timeout=90)
        try:
            c.request("POST", "/call_tool", body=json.dumps({
                "identity": names[i], "tool_name": "run_shell_command",
                "arguments": {"command": BLOCK}}),
                headers=dict(srv.auth_headers(),
                             **{"Content-Type": "application/json"}))
            r = c.getresponse()
            results[i] = (r.status, json.loads(r.read()))
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(N)]
    for th in threads:
        th.start()
    started = lambda: [os.path.exists(os.path.join(d, "started"))  # noqa
                       for d in dirs]
    harness.wait_for(lambda: all(started()), 30, 0.05)
    t.is_(sum(started()), N, "%d blocking calls into %d sandboxes all "
          "started before any ended" % (N, N))
    for d in dirs:
        open(os.path.join(d, "go"), "w").close()
    for th in threads:
        th.join(90)
    texts = [r[1]["data"]["content"][0]["text"] if r and r[0] == 200
             else r for r in results]
    t.is_(texts, ["released\n"] * N, "each call then answered")
    for n in names:
        srv.call("release", identity=n)
    srv.close()


t.run("concurrent calls", concurrent_calls)
sys.exit(t.done())
