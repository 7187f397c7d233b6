# pydriver: the driver sandpool-agent runs with "python3 -u -c" for
# run_ipython_cell (compiled into the agent as a string, see python.c).
#
# It reads cells from fd 3 and reports on fd 4, each message a 4-byte
# big-endian length and a JSON object:
#   agent -> driver  {"id": n, "code": "..."}
#   driver -> agent  {"ready": true, "ipython": bool, "python": "3.x.y"}
#                    {"done": n}
# A cell's output goes to the process's own stdout and stderr (pipes the
# agent reads), so output of subprocesses and C extensions is captured
# too. argv[1] is "ipython" (use IPython's InteractiveShell if it can be
# imported) or "plain" (a small ast/exec executor that prints
# "Out[n]: repr" for a trailing expression, as IPython does, and writes
# tracebacks to stderr). Must run on Python 3.5 and later.
import os
import sys


def _sandpool_driver():
    import json
    import struct

    rfd, wfd = 3, 4
    for fd in (rfd, wfd):
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(encoding="utf-8",
                                   errors="backslashreplace")
            except Exception:
                pass

    import signal

    def send(obj):
        # A frame is written whole: SIGINT (a cell's timeout) waits.
        data = json.dumps(obj).encode("utf-8")
        data = struct.pack(">I", len(data)) + data
        old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
        try:
            while data:
                try:
                    n = os.write(wfd, data)
                except InterruptedError:
                    continue
                data = data[n:]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def read_exact(n):
        chunks = []
        while n > 0:
            try:
                b = os.read(rfd, n)
            except InterruptedError:
                continue
            if not b:
                return None
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def recv():
        head = read_exact(4)
        if head is None:
            return None
        body = read_exact(struct.unpack(">I", head)[0])
        if body is None:
            return None
        return json.loads(body.decode("utf-8"))

    mode = sys.argv[1] if len(sys.argv) > 1 else "ipython"
    sys.argv = [""]
    shell = None
    if mode == "ipython":
        try:
            from IPython.core.interactiveshell import InteractiveShell
            shell = InteractiveShell.instance()
        except Exception:
            shell = None

    if shell is None:
        import ast
        import builtins
        import linecache
        import traceback
        import types

        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        ns = main.__dict__
        count = [0]

        def run(code):
            count[0] += 1
            n = count[0]
            fname = "<cell-%d>" % n
            linecache.cache[fname] = (len(code), None,
                                      code.splitlines(True), fname)
            try:
                tree = ast.parse(code, fname, "exec")
            except (SyntaxError, ValueError) as e:
                sys.stderr.write(
                    "".join(traceback.format_exception_only(type(e), e)))
                return
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr) \
                    and not code.rstrip().endswith(";"):
                last = ast.Expression(tree.body.pop().value)
            try:
                exec(compile(tree, fname, "exec"), ns)
                if last is not None:
                    value = eval(compile(last, fname, "eval"), ns)
                    if value is not None:
                        ns["_"] = value
                        sys.stdout.write("Out[%d]: %s\n" % (n, repr(value)))
            except BaseException:
                etype, evalue, tb = sys.exc_info()
                sys.stderr.write("".join(
                    traceback.format_exception(etype, evalue, tb.tb_next)))
    else:
        def run(code):
            shell.run_cell(code, store_history=True)

    send({"ready": True, "ipython": shell is not None,
          "python": sys.version.split()[0]})
    while True:
        try:
            msg = recv()
        except KeyboardInterrupt:
            continue
        if msg is None:
            return
        try:
            try:
                run(msg.get("code", ""))
            except KeyboardInterrupt:
                sys.stderr.write("KeyboardInterrupt\n")
            except BaseException:
                import traceback
                traceback.print_exc()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        except KeyboardInterrupt:
            pass
        try:
            send({"done": msg.get("id")})
        except KeyboardInterrupt:
            pass


_sandpool_driver()
