"""The first program in every box (runs as ``python3 -I -u -c <this source> STATUS_FD``,
inside bubblewrap, as the unprivileged uid; stdlib only, Python >= 3.8; imports nothing
heavy, since its start-up is on every cold run's path).

It waits on fd 0 for one request: a 4-byte big-endian length, then that many bytes of
fields, each a 4-byte length and UTF-8 text: ``limits`` ("key=value ..."), ``code``, then
(path, content) pairs of extra files. The rest of fd 0 is the program's stdin, never
touched here. It lowers its rlimits to the request's values, writes the files into the
scratch directory (its cwd), and runs ``main.py`` as ``__main__`` in this same
interpreter: a pre-started (warm) box thus serves a request without interpreter
start-up. Status lines go to the fd named by argv[1]: ``start``, then ``exit N`` or
``memory`` (an uncaught MemoryError). A death by signal writes nothing, which is how
the service tells ``exit(139)`` from SIGSEGV. The program's end skips the
interpreter's module teardown (see ``_finish``): atexit handlers and non-daemon threads
still run, but ``__del__`` of objects alive at exit does not.
"""

import os
import resource
import sys

STATUS_FD = int(sys.argv[1]) if len(sys.argv) > 1 else -1


def _status(line):
    try:  # noqa: SIM105 - contextlib costs ~5 ms of import on every cold run
        os.write(STATUS_FD, (line + "\n").encode())
    except OSError:
        pass


def _read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            raise EOFError("request ended early")
        buf += chunk
    return buf


def _fields(data):
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + n].decode("utf-8"))
        i += 4 + n
    return out


def _lower(res, value):
    soft, hard = resource.getrlimit(res)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(res, (value, value))


def _apply_limits(lim):
    if "cpu_s" in lim:
        # the soft limit sends SIGXCPU (a timeout verdict), the hard one a second later SIGKILL
        soft = max(1, int(lim["cpu_s"] + 0.999))
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        top = soft + 1 if hard == resource.RLIM_INFINITY else min(soft + 1, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (min(soft, top), top))
    if lim.get("memory_as_mb"):
        _lower(resource.RLIMIT_AS, int(lim["memory_as_mb"]) * 1024 * 1024)
    if "file_size_mb" in lim:
        _lower(resource.RLIMIT_FSIZE, int(lim["file_size_mb"]) * 1024 * 1024)
    if lim.get("processes"):
        _lower(resource.RLIMIT_NPROC, int(lim["processes"]))
    if lim.get("nofile"):
        _lower(resource.RLIMIT_NOFILE, int(lim["nofile"]))
    _lower(resource.RLIMIT_CORE, 0)


def _write_files(pairs, root):
    root = os.path.realpath(root)
    for rel, text in pairs:
        path = os.path.realpath(os.path.join(root, rel))
        if not path.startswith(root + os.sep):
            raise ValueError(f"file path escapes the scratch directory: {rel!r}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def _print_user_traceback(exc, main_path):
    """The traceback without this bootstrap's frame."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != main_path:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
    sys.stderr.flush()


def main():
    if STATUS_FD >= 0:
        os.set_inheritable(STATUS_FD, False)  # the program's children do not get it
    size = int.from_bytes(_read_exact(4), "big")
    fields = _fields(_read_exact(size))
    limits = {}
    for item in fields[0].split():
        key, _, value = item.partition("=")
        limits[key] = float(value)
    code, rest = fields[1], fields[2:]
    root = os.getcwd()
    _write_files(zip(rest[0::2], rest[1::2], strict=False), root)
    main_path = os.path.join(root, "main.py")
    with open(main_path, "w", encoding="utf-8") as f:
        f.write(code)
    _apply_limits(limits)
    sys.argv = ["main.py"]
    sys.path.insert(0, root)
    module = type(sys)("__main__")
    module.__file__ = main_path
    module.__builtins__ = __builtins__
    sys.modules["__main__"] = module
    _status("start")
    try:
        exec(compile(code, main_path, "exec"), module.__dict__)
    except SystemExit as e:
        c = e.code
        if c is None:
            n = 0
        elif isinstance(c, int):
            n = c & 0xFF
        else:
            n = 1
            print(c, file=sys.stderr)
        _finish(n)
    except MemoryError as e:
        _status("memory")
        _print_user_traceback(e, main_path)
        os._exit(1)
    except BaseException as e:
        _print_user_traceback(e, main_path)
        _finish(1)
    _finish(0)


def _finish(n):
    """Exit like the interpreter would, minus the module teardown (milliseconds per run):
    join non-daemon threads, run atexit handlers, flush the standard streams."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:  # noqa: SIM105 - see _status
                stream.flush()
            except Exception:
                pass
    except BaseException as e:  # an exception or exit() in a thread join / atexit handler
        if isinstance(e, SystemExit) and isinstance(e.code, int):
            n = e.code & 0xFF
    _status(f"exit {n}")
    os._exit(n)


main()
