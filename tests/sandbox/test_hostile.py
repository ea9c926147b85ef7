"""The hostile-program suite (notes/SANDBOX.md): each program is contained with an exact
verdict, and after each run no process, cgroup or file is left and the pool still serves."""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.code_sandbox.pool import BoxPool
from shared.contracts import ExecLimits, ExecRequest
from tests.sandbox.conftest import assert_clean

SHORT = ExecLimits(wall_s=2, cpu_s=1, memory_mb=64, processes=8, output_bytes=100_000)


async def contained(pool: BoxPool, code: str, limits: ExecLimits = SHORT, **kw: object):
    """Run ``code``, check nothing is left, and that the pool still answers."""
    r = await pool.run(ExecRequest(code=code, limits=limits, **kw))  # type: ignore[arg-type]
    assert r.isolation == "full"
    assert_clean(pool.host)
    after = await pool.run(ExecRequest(code="print('still serving')", limits=SHORT))
    assert (after.status, after.stdout) == ("ok", "still serving\n")
    return r


class Listener:
    """A host listener that counts accepted connections."""

    def __init__(self, family: int, address: object) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def tcp_listener() -> Iterator[Listener]:
    lst = Listener(socket.AF_INET, ("127.0.0.1", 0))
    # prove the listener works from the host, so a refusal inside the box means something
    with socket.create_connection(lst.sock.getsockname(), timeout=2):
        pass
    yield lst
    lst.close()


async def test_infinite_loop_is_timeout(pool: BoxPool) -> None:
    r = await contained(pool, "while True:\n    pass\n")
    assert (r.status, r.exit_code) == ("timeout", None)
    assert r.cpu_s >= 0.9


async def test_multithreaded_cpu_burn_is_stopped_by_group_cpu_time(pool: BoxPool) -> None:
    code = "import threading\ndef burn():\n    while True: pass\nfor _ in range(4): threading.Thread(target=burn).start()\n"
    r = await contained(pool, code, limits=ExecLimits(wall_s=4, cpu_s=1, memory_mb=64, processes=8))
    assert r.status == "timeout"


async def test_sleep_is_wall_timeout(pool: BoxPool) -> None:
    r = await contained(pool, "import time\nprint('going to sleep')\ntime.sleep(1000)\n",
                        limits=ExecLimits(wall_s=1, cpu_s=1))
    assert (r.status, r.stdout) == ("timeout", "going to sleep\n")
    assert "wall time limit of 1 s" in r.message


async def test_memory_bomb_is_memory_limit(pool: BoxPool) -> None:
    r = await contained(pool, "x = []\nwhile True:\n    x.append(bytearray(1024 * 1024))\n")
    assert r.status == "memory_limit"
    assert r.memory_peak_mb <= 64 + 1


async def test_single_huge_allocation_is_memory_limit(pool: BoxPool) -> None:
    r = await contained(pool, "x = bytearray(10 ** 10)\n")
    assert r.status == "memory_limit" and "MemoryError" in r.stderr


async def test_fork_bomb_is_contained(pool: BoxPool) -> None:
    code = (
        "import os, time\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            continue\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    r = await contained(pool, code, limits=ExecLimits(wall_s=1.5, cpu_s=1, processes=8))
    assert r.status == "timeout"


async def test_tcp_connect_to_host_loopback_is_refused(pool: BoxPool, tcp_listener: Listener) -> None:
    port = tcp_listener.sock.getsockname()[1]
    r = await contained(pool, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n")
    assert r.status == "runtime_error" and "Errno 97" in r.stderr  # EAFNOSUPPORT from seccomp
    assert tcp_listener.accepted == 1  # only the host's own probe


async def test_dns_lookup_fails(pool: BoxPool) -> None:
    r = await contained(pool, "import socket\nprint(socket.getaddrinfo('example.com', 80))\n")
    assert r.status == "runtime_error" and "socket.gaierror" in r.stderr


async def test_abstract_unix_socket_to_host_is_unreachable(pool: BoxPool) -> None:
    name = f"\0syndicate-test-{uuid.uuid4().hex}"
    lst = Listener(socket.AF_UNIX, name)
    try:
        with socket.socket(socket.AF_UNIX) as probe:  # reachable from the host
            probe.connect(name)
        code = f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({name!r})\n"
        r = await contained(pool, code)
        assert r.status == "runtime_error" and "ConnectionRefusedError" in r.stderr
        assert lst.accepted == 1
    finally:
        lst.close()


async def test_vsock_and_other_families_are_blocked(pool: BoxPool) -> None:
    code = (
        "import socket\n"
        "for fam in ('AF_VSOCK', 'AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_PACKET'):\n"
        "    try:\n"
        "        socket.socket(getattr(socket, fam), socket.SOCK_DGRAM if fam == 'AF_NETLINK' else socket.SOCK_STREAM)\n"
        "        print(fam, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(fam, e.errno)\n"
        "socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n"
    )
    r = await contained(pool, code)
    assert r.status == "runtime_error"
    assert r.stdout.split("\n")[:5] == [f"{f} 97" for f in ("AF_VSOCK", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET")]


async def test_secrets_and_environment_are_invisible(pool: BoxPool, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("SYNDICATE_TEST_SECRET", secret)
    code = (
        "import os\n"
        "for p in ['/etc/shadow', '/etc/passwd', '/root', '/proc/1/environ', '/proc/self/environ', '/home', '/work']:\n"
        "    try:\n"
        "        print(p, 'LIST', os.listdir(p)) if os.path.isdir(p) else print(p, 'READ', repr(open(p).read()))\n"
        "    except Exception as e:\n"
        "        print(p, 'DENIED', type(e).__name__)\n"
        "print('ENV', sorted(os.environ))\n"
        "print('PROCS', sorted(int(x) for x in os.listdir('/proc') if x.isdigit()))\n"
        "print('UID', os.getuid(), os.geteuid())\n"
    )
    r = await contained(pool, code)
    assert r.status == "ok"
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines["/etc/shadow"] == "DENIED FileNotFoundError"
    assert lines["/root"] == "DENIED FileNotFoundError"
    assert lines["/work"] == "DENIED FileNotFoundError"
    assert lines["/proc/1/environ"] == "READ ''"  # bwrap itself ran with an empty environment
    assert lines["ENV"] == str(sorted(["HOME", "LANG", "PATH", "PWD", "TMPDIR", "USER"]))
    assert lines["PROCS"] == "[1, 2]"  # its own pid namespace: the box's init and itself
    assert lines["UID"] == "65534 65534"
    assert secret not in r.stdout + r.stderr


async def test_writes_outside_scratch_fail_and_scratch_vanishes(pool: BoxPool) -> None:
    marker = f"syndicate-escape-{uuid.uuid4().hex}"
    code = (
        "import os\n"
        f"for p in ['/usr/{marker}', '/{marker}', '/proc/{marker}', '/dev/{marker}']:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "        print(p, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n"
        f"open('/tmp/{marker}', 'w').write('x')\n"
        "print('scratch ok')\n"
    )
    r = await contained(pool, code)
    assert r.status == "ok"
    assert "WROTE" not in r.stdout and r.stdout.count("DENIED") == 4 and "scratch ok" in r.stdout
    for host_path in (Path("/tmp") / marker, Path("/usr") / marker, Path("/") / marker):
        assert not host_path.exists()


async def test_disk_fill_stops_at_scratch_size(pool: BoxPool) -> None:
    code = "f = open('/tmp/fill', 'wb')\nwhile True:\n    f.write(b'x' * 65536)\n    f.flush()\n"
    r = await contained(pool, code, limits=ExecLimits(wall_s=5, cpu_s=3, memory_mb=96, file_size_mb=32))
    assert r.status == "runtime_error" and "No space left on device" in r.stderr  # 16 MB tmpfs


async def test_100mb_stdout_is_output_limit(pool: BoxPool) -> None:
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1024 * 1024))\n"
    r = await contained(pool, code, limits=ExecLimits(wall_s=5, cpu_s=3, output_bytes=1_000_000))
    assert r.status == "output_limit"
    assert r.stdout_truncated and len(r.stdout) == 1_000_000 and set(r.stdout) == {"x"}


async def test_stderr_flood_is_output_limit(pool: BoxPool) -> None:
    r = await contained(pool, "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)\n",
                        limits=ExecLimits(output_bytes=50_000))
    assert r.status == "output_limit" and r.stderr_truncated and len(r.stderr) == 50_000


async def test_detached_grandchildren_do_not_survive(pool: BoxPool) -> None:
    code = (
        "import os, subprocess, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "print('parent done')\n"
    )
    r = await contained(pool, code)
    assert (r.status, r.stdout) == ("ok", "parent done\n")
    assert r.wall_s < 30  # the run did not wait for the sleepers; assert_clean proved them gone


async def test_background_child_holding_stdout_does_not_hang_the_run(pool: BoxPool) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    time.sleep(60)\n"
        "    print('late')\n"
        "else:\n"
        "    print('main exits')\n"
    )
    r = await contained(pool, code, limits=ExecLimits(wall_s=10, cpu_s=2))
    assert (r.status, r.stdout) == ("ok", "main exits\n")


async def test_segfault_via_ctypes(pool: BoxPool) -> None:
    r = await contained(pool, "import ctypes\nctypes.memset(0, 1, 1)\n")
    assert (r.status, r.signal) == ("runtime_error", signal.SIGSEGV)


async def test_namespace_mount_and_root_escapes_are_denied(pool: BoxPool) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(name, *args):\n"
        "    rc = getattr(libc, name)(*args)\n"
        "    print(name, rc, ctypes.get_errno())\n"
        "call('unshare', 0x10000000)\n"            # CLONE_NEWUSER
        "call('unshare', 0x00020000)\n"            # CLONE_NEWNS
        "call('mount', b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "call('ptrace', 16, 1, 0, 0)\n"            # PTRACE_ATTACH to init
        "try:\n"
        "    os.setuid(0)\n"
        "    print('setuid OK')\n"
        "except OSError:\n"  # EINVAL: uid 0 is not even mapped in the box's user namespace
        "    print('setuid DENIED')\n"
        "print('uid', os.getuid())\n"
    )
    r = await contained(pool, code)
    assert r.status == "ok"
    assert r.stdout.splitlines() == ["unshare -1 1", "unshare -1 1", "mount -1 1", "ptrace -1 1", "setuid DENIED", "uid 65534"]


async def test_host_processes_are_invisible_and_unkillable(pool: BoxPool) -> None:
    me = os.getpid()
    code = f"import os\ntry:\n    os.kill({me}, 9)\n    print('KILLED')\nexcept OSError as e:\n    print('no', e.errno)\n"
    r = await contained(pool, code)
    assert (r.status, r.stdout) == ("ok", "no 3\n")  # ESRCH: the host pid does not exist in the box
