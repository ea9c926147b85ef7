"""Ordinary programs through the real core (bwrap + seccomp + cgroups): verdicts, I/O,
files, tests appended to code, limits honoured and clamped."""

from __future__ import annotations

import signal

from services.code_sandbox.pool import BoxPool
from shared.contracts import ExecLimits, ExecRequest, FileIn
from tests.sandbox.conftest import TEST_SETTINGS, assert_clean

FAST = ExecLimits(wall_s=5, cpu_s=3, memory_mb=64, processes=8)


async def run(pool: BoxPool, code: str, **kw: object):
    kw.setdefault("limits", FAST)
    return await pool.run(ExecRequest(code=code, **kw))  # type: ignore[arg-type]


async def test_ok_prints_and_reports_full_isolation(pool: BoxPool) -> None:
    r = await run(pool, "print('hello', 6 * 7)")
    assert (r.status, r.exit_code, r.signal, r.stdout, r.stderr) == ("ok", 0, None, "hello 42\n", "")
    assert r.isolation == "full"
    assert r.wall_s > 0 and r.memory_peak_mb > 0
    assert_clean(pool.host)


async def test_exception_is_runtime_error_with_user_traceback(pool: BoxPool) -> None:
    r = await run(pool, "def f():\n    raise ValueError('bad input')\nf()\n")
    assert (r.status, r.exit_code, r.signal) == ("runtime_error", 1, None)
    assert r.stderr.startswith("Traceback") and "ValueError: bad input" in r.stderr
    assert 'File "/tmp/main.py", line 2, in f' in r.stderr
    assert "bootstrap" not in r.stderr and "<string>" not in r.stderr


async def test_exit_codes(pool: BoxPool) -> None:
    r = await run(pool, "import sys; print('x'); sys.exit(3)")
    assert (r.status, r.exit_code, r.stdout) == ("runtime_error", 3, "x\n")
    r = await run(pool, "import sys; sys.exit(139)")  # a high exit code is not a signal
    assert (r.status, r.exit_code, r.signal) == ("runtime_error", 139, None)
    r = await run(pool, "exit(0)")  # site's exit() exists in the box
    assert (r.status, r.exit_code) == ("ok", 0)
    r = await run(pool, "raise SystemExit('goodbye')")
    assert (r.status, r.exit_code, r.stderr) == ("runtime_error", 1, "goodbye\n")


async def test_sigsegv_is_runtime_error_with_signal(pool: BoxPool) -> None:
    r = await run(pool, "import ctypes\nprint('before', flush=True)\nctypes.string_at(0)\n")
    assert (r.status, r.exit_code, r.signal) == ("runtime_error", None, signal.SIGSEGV)
    assert r.stdout == "before\n"  # -u: output written before the crash survives
    r = await run(pool, "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    assert (r.status, r.signal) == ("runtime_error", signal.SIGABRT)
    assert_clean(pool.host)


async def test_stdin_files_and_test_code(pool: BoxPool) -> None:
    r = await run(
        pool, "from helper import double\nimport sys\ndata = sys.stdin.read()\nprint(double(len(data)))\n",
        stdin="four", files=[FileIn(path="helper.py", content="def double(x):\n    return 2 * x\n"),
                             FileIn(path="data/in.txt", content="x")],
        test_code="import os\nassert double(2) == 4\nassert open('data/in.txt').read() == 'x'\nprint('tests passed')\n",
    )
    assert (r.status, r.stdout) == ("ok", "8\ntests passed\n")
    r = await run(pool, "def add(a, b):\n    return a - b\n", test_code="assert add(2, 2) == 4, 'add is wrong'\n")
    assert r.status == "runtime_error" and "AssertionError: add is wrong" in r.stderr


async def test_file_path_escaping_scratch_is_refused(pool: BoxPool) -> None:
    for path in ("../../etc/evil", "/etc/evil", "a/../../b", "main.py"):
        r = await run(pool, "print(1)", files=[FileIn(path=path, content="x")])
        assert r.status == "rejected" and r.stdout == "" and repr(path) in r.message


async def test_unicode_and_large_stdin(pool: BoxPool) -> None:
    big = "é" * 150_000  # 300 kB: more than a pipe buffer
    r = await run(pool, "import sys\ns = sys.stdin.read()\nprint(len(s), s[:3])\n", stdin=big)
    assert (r.status, r.stdout) == ("ok", "150000 ééé\n")
    r = await run(pool, "print('ok')", stdin=big)  # never reads its stdin
    assert (r.status, r.stdout) == ("ok", "ok\n")


async def test_limits_reach_the_box_and_are_clamped(pool: BoxPool) -> None:
    code = (
        "import resource as r\n"
        "print(r.getrlimit(r.RLIMIT_NPROC)[0], r.getrlimit(r.RLIMIT_FSIZE)[0] >> 20, r.getrlimit(r.RLIMIT_CPU)[0])\n"
    )
    r = await run(pool, code, limits=ExecLimits(processes=5, file_size_mb=3, cpu_s=2))
    assert r.stdout.split() == ["5", "3", "2"]
    huge = ExecLimits(wall_s=1e6, cpu_s=1e6, memory_mb=10**6, processes=10**6, output_bytes=10**12, file_size_mb=10**6)
    r = await run(pool, code, limits=huge)
    ceil_cpu = int(TEST_SETTINGS["sandbox_max_cpu_s"])
    assert r.stdout.split() == [str(TEST_SETTINGS["sandbox_max_processes"]), str(TEST_SETTINGS["sandbox_max_file_size_mb"]), str(ceil_cpu)]
    # memory above the ceiling is not granted: 200 MB does not fit in the 96 MB ceiling
    r = await run(pool, "x = bytearray(200 * 1024 * 1024)\nprint(len(x))", limits=huge)
    assert r.status == "memory_limit"


async def test_file_size_limit(pool: BoxPool) -> None:
    r = await run(pool, "open('big', 'wb').write(b'x' * (3 * 1024 * 1024))", limits=ExecLimits(file_size_mb=1))
    assert r.status == "runtime_error" and "File too large" in r.stderr


async def test_concurrent_runs_are_isolated(pool: BoxPool) -> None:
    import asyncio

    codes = [f"import os\nopen('/tmp/mine', 'w').write('{i}')\nimport time; time.sleep(0.2)\nprint(open('/tmp/mine').read())" for i in range(4)]
    results = await asyncio.gather(*(run(pool, c) for c in codes))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert_clean(pool.host)


async def test_warm_pool_serves_and_never_reuses_a_box(host) -> None:
    from tests.sandbox.conftest import make_settings

    p = BoxPool(make_settings(sandbox_warm_pool=2), host=host, subreaper=True)
    await p.start()
    try:
        outs = []
        for _ in range(4):
            r = await p.run(ExecRequest(code="import os, sys\nprint(os.path.exists('/tmp/seen'))\nopen('/tmp/seen', 'w')", limits=FAST))
            outs.append(r.stdout)
        assert outs == ["False\n"] * 4  # every request got a fresh scratch
        assert p.served == 4
    finally:
        await p.close()
    assert_clean(host)


async def test_numpy_imports_in_the_box(pool: BoxPool) -> None:
    # Evolution scorers (examples/evolve/binpack-*) use Debian's numpy, whose BLAS is found
    # through /etc/alternatives symlinks: the box must resolve them.
    r = await run(pool, "import numpy as np\nprint(int(np.ones(3) @ np.ones(3)))\n",
                  limits=ExecLimits(wall_s=10, cpu_s=5, memory_mb=96, processes=8))
    assert (r.status, r.stdout) == ("ok", "3\n"), r.stderr[-500:]
