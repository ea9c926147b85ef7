"""One box: a one-shot sandboxed interpreter that runs exactly one program.

Process chain (full tier)::

    service (root, child subreaper)
      └─ bwrap                 uid 65534, empty env, in the run's cgroups, rlimits,
         │                     no_new_privs, parent-death SIGKILL
         └─ init (pid 1)       new user/pid/net/ipc/uts/mount/cgroup namespaces,
            └─ python3 -I -u   seccomp filter, ro /usr, tmpfs /tmp (size-limited),
                               waiting on stdin for the request (bootstrap.py)

A box is spawned before its request is known (warm pool) or right when it arrives
(cold); both paths are the same code. ``run`` writes the request, enforces wall/CPU
time and output caps while reading, maps the end to a verdict and tears everything
down: when the program's main process exits the pid namespace dies with it, then the
run's cgroups are killed and removed, so no process, group or file outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.code_sandbox.cgroups import CgroupTree, RunCgroup
from services.code_sandbox.reaper import ChildReaper
from services.code_sandbox.settings import SandboxSettings
from services.code_sandbox.verdict import RunFacts, decide
from shared.contracts import ExecLimits, ExecRequest, ExecResult, new_id
from shared.errors import SandboxError

BOOTSTRAP_SRC = (Path(__file__).with_name("bootstrap.py")).read_text()
BOX_EXTRA_PIDS = 3  # bwrap, its init, and the interpreter itself count against pids.max
AS_SLACK_MB = 64  # RLIMIT_AS above the cgroup limit: the cgroup decides, AS is the backstop
READ_CHUNK = 65536
DRAIN_GRACE_S = 0.2  # read this long after the main process exits, then kill the rest
NOFILE = 256


@dataclass
class BoxConfig:
    """What every box of one service shares (built once at start-up)."""

    settings: SandboxSettings
    tier: str  # "full" | "namespaces" | "degraded"
    use_bwrap: bool
    bwrap_path: str | None
    seccomp_bpf: bytes | None
    cgroups: CgroupTree | None
    reaper: ChildReaper
    setpriv_path: str | None = None

    @property
    def drop_uid(self) -> int | None:
        return self.settings.sandbox_uid if os.geteuid() == 0 else None


def bwrap_argv(cfg: BoxConfig, *, seccomp_fd: int | None, status_fd: int) -> list[str]:
    """bubblewrap's command line: every namespace, read-only system, tmpfs scratch."""
    s = cfg.settings
    argv = [
        cfg.bwrap_path or "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent",
        "--new-session", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr",
    ]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), f"/{top}"]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), f"/{top}"]
    # Debian points shared libraries at /etc/alternatives (numpy's libblas.so.3, liblapack):
    # symlinks into /usr only, so the box may read them.
    argv += ["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"]
    scratch = str(s.sandbox_scratch_mb * 1024 * 1024)
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        # the only writable places: sized tmpfs scratch and /dev/shm (multiprocessing needs it);
        # the box's root and /dev are tmpfs too, read-only once set up
        "--size", scratch, "--perms", "1777", "--tmpfs", "/tmp",
        "--size", scratch, "--perms", "1777", "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", "/tmp",
        "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8", "--setenv", "USER", "sandbox", "--setenv", "TMPDIR", "/tmp",
    ]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--", *python_argv(cfg, status_fd)]


def python_argv(cfg: BoxConfig, status_fd: int) -> list[str]:
    # -I: no PYTHON* env, no user site, no cwd on sys.path; -u: output survives a kill.
    return [str(cfg.settings.sandbox_python), "-I", "-u", "-B", "-X", "utf8", "-c", BOOTSTRAP_SRC, str(status_fd)]


def launcher_argv(cfg: BoxConfig, procs_files: list[str], cmd: list[str]) -> list[str]:
    """Wrap ``cmd`` so that, before it runs, the process joins its cgroups (so everything
    it forks starts inside), drops core dumps, and becomes the unprivileged uid with
    no_new_privs and a parent-death SIGKILL (set after the uid change, which clears it).

    A shell and setpriv rather than a Python ``preexec_fn``: subprocess can then vfork,
    ~2 ms per spawn instead of ~10 ms for forking the service's interpreter.
    """
    script = "set -e; ulimit -c 0; " + "".join(f"printf 0 > {shlex.quote(f)}; " for f in procs_files) + 'unset PWD OLDPWD; exec "$@"'
    drop = [f"--reuid={cfg.drop_uid}", f"--regid={cfg.drop_uid}", "--clear-groups"] if cfg.drop_uid is not None else []
    setpriv = [cfg.setpriv_path or "setpriv", *drop, "--no-new-privs", "--pdeathsig=KILL", "--"]
    return ["/bin/sh", "-c", script, "sh", *setpriv, *cmd]


def encode_request(limits: str, code: str, files: list[tuple[str, str]]) -> bytes:
    """The bootstrap's wire format: length, then length-prefixed UTF-8 fields."""
    fields = [limits, code, *(x for pair in files for x in pair)]
    body = b"".join(struct.pack(">I", len(b)) + b for b in (f.encode() for f in fields))
    return struct.pack(">I", len(body)) + body


class _Capture:
    """Reads one pipe without blocking, keeping at most ``cap`` bytes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, cap: int, on_overflow: Any):
        self.loop, self.fd, self.cap, self.on_overflow = loop, fd, cap, on_overflow
        self.buf = bytearray()
        self.truncated = False
        self.eof = loop.create_future()
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.stop()
            return
        room = self.cap - len(self.buf)
        if len(chunk) > room:
            self.buf += chunk[:room]
            self.truncated = True
            self.stop()
            self.on_overflow()
        else:
            self.buf += chunk

    def drain(self) -> None:
        """Take what is still buffered in the pipe (the writers are dead), then stop."""
        while not self.eof.done():
            before = len(self.buf)
            try:
                self._readable()
            except Exception:
                break
            if len(self.buf) == before:
                break
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        if not self.eof.done():
            self.eof.set_result(None)

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


class Box:
    """A sandboxed interpreter for one request. ``spawn`` then ``run`` (once)."""

    def __init__(self, cfg: BoxConfig):
        self.cfg = cfg
        self.run_id = new_id("box-")
        self.cgroup: RunCgroup | None = None
        self.scratch: str | None = None
        self.proc: subprocess.Popen | None = None
        self.exit: asyncio.Future | None = None
        self._fds: dict[str, int] = {}
        self.kill_reason: str | None = None
        self.used = False
        self.spawned_at = 0.0

    # --- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Start the box off the event loop (fork, exec and cgroup set-up take a few ms)."""
        await asyncio.to_thread(self.spawn)
        self.watch()

    def watch(self) -> None:
        """Register for the box's exit (on the loop thread, after ``spawn``)."""
        assert self.proc is not None
        self.exit = self.cfg.reaper.wait(self.proc.pid)
        for name in ("stdin", "stdout", "stderr", "status"):
            os.set_blocking(self._fds[name], False)

    def spawn(self) -> None:
        """Start the process (any thread); it waits for its request on stdin. Raises SandboxError."""
        cfg, s = self.cfg, self.cfg.settings
        ceil = s.ceilings
        to_close: list[int] = []
        try:
            if cfg.cgroups is not None:
                self.cgroup = cfg.cgroups.new_run(self.run_id)
                self.cgroup.set_limits(ceil.memory_mb, ceil.processes + BOX_EXTRA_PIDS, s.sandbox_cpu_cores)
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            st_r, st_w = os.pipe2(os.O_CLOEXEC)
            to_close += [in_r, out_w, err_w, st_w]
            self._fds = {"stdin": in_w, "stdout": out_r, "stderr": err_r, "status": st_r}
            pass_fds = [st_w]
            seccomp_fd = None
            if cfg.use_bwrap and cfg.seccomp_bpf is not None:
                seccomp_fd, sc_w = os.pipe2(os.O_CLOEXEC)
                to_close.append(seccomp_fd)
                os.write(sc_w, cfg.seccomp_bpf)  # a few hundred bytes: fits the pipe buffer
                os.close(sc_w)
                pass_fds.append(seccomp_fd)
            if cfg.use_bwrap:
                argv, cwd, env = bwrap_argv(cfg, seccomp_fd=seccomp_fd, status_fd=st_w), "/", {}
            else:
                self.scratch = tempfile.mkdtemp(prefix=f"syndicate-box-{os.getpid()}-")  # whose, when left behind
                if cfg.drop_uid is not None:
                    os.chown(self.scratch, cfg.drop_uid, cfg.drop_uid)
                argv, cwd = python_argv(cfg, st_w), self.scratch
                env = {"HOME": self.scratch, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": self.scratch}
            argv = launcher_argv(cfg, self.cgroup.procs_files if self.cgroup else [], argv)
            self.proc = subprocess.Popen(
                argv, stdin=in_r, stdout=out_w, stderr=err_w, pass_fds=pass_fds, close_fds=True,
                cwd=cwd, env=env, start_new_session=True,
            )
            self.spawned_at = time.monotonic()
        except Exception as exc:
            self._close_fds()
            self.destroy()
            raise SandboxError(f"could not start a box: {type(exc).__name__}: {exc}") from exc
        finally:
            for fd in to_close:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def kill(self, reason: str) -> None:
        """Stop the run now; the first reason given is the one reported."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self._kill_all()

    def _kill_all(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.proc is not None and self.proc.returncode is None:
            # bwrap's init dies with it (parent-death signal), and the pid namespace with
            # the init; without bwrap the session is the best we can do (degraded).
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def _close_fds(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = {}

    def destroy(self) -> None:
        """Kill whatever is left and remove the run's cgroups and files (idempotent)."""
        self._kill_all()
        self._close_fds()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    async def discard(self) -> None:
        """Tear down an unused box and wait for its process."""
        self._kill_all()
        if self.exit is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.exit), 2.0)
        self.destroy()

    @property
    def alive(self) -> bool:
        return self.exit is not None and not self.exit.done()

    # --- one run ---------------------------------------------------------------------
    async def run(self, req: ExecRequest, limits: ExecLimits) -> ExecResult:
        """Run ``req`` with (already clamped) ``limits``; always returns a result."""
        if self.used or self.proc is None or self.exit is None:
            raise SandboxError("a box runs exactly one program")
        self.used = True
        loop = asyncio.get_running_loop()
        s = self.cfg.settings
        facts = RunFacts(limits=limits, via_init=self.cfg.use_bwrap)
        has_cg_mem = False
        try:
            if self.cgroup is not None:
                self.cgroup.set_limits(limits.memory_mb, limits.processes + BOX_EXTRA_PIDS, s.sandbox_cpu_cores)
                has_cg_mem = "memory" in self.cfg.cgroups.layout.controllers if self.cfg.cgroups else False
            code = req.code if not req.test_code else f"{req.code}\n\n{req.test_code}\n"
            as_mb = limits.memory_mb + (AS_SLACK_MB if has_cg_mem else 0)
            header = encode_request(
                f"cpu_s={limits.cpu_s} memory_as_mb={as_mb} processes={limits.processes} "
                f"file_size_mb={limits.file_size_mb} nofile={NOFILE}",
                code, [(f.path, f.content) for f in req.files],
            )
            payload = header + req.stdin.encode()
            cpu0 = self.cgroup.stats().get("cpu_s", 0.0) if self.cgroup else 0.0
            out = _Capture(loop, self._fds["stdout"], limits.output_bytes, lambda: self.kill("output"))
            err = _Capture(loop, self._fds["stderr"], limits.output_bytes, lambda: self.kill("output"))
            status = _Capture(loop, self._fds["status"], 4096, lambda: None)
            t0 = loop.time()
            writer = asyncio.ensure_future(self._feed(payload))
            timer = loop.call_later(limits.wall_s, self.kill, "timeout")
            cpu_watch = asyncio.ensure_future(self._watch_cpu(limits.cpu_s, cpu0))
            try:
                wait_status, usage = await self.exit
            finally:
                wall = loop.time() - t0
                timer.cancel()
                cpu_watch.cancel()
                writer.cancel()
            # A background child may hold the pipes open: read briefly, then kill it all.
            await asyncio.wait([out.eof, err.eof, status.eof], timeout=DRAIN_GRACE_S)
            self._kill_all()
            for cap in (out, err, status):
                cap.drain()
            stats = self.cgroup.stats() if self.cgroup else {}
            for line in status.text().splitlines():
                if line == "start":
                    facts.started = True
                elif line == "memory":
                    facts.memory_error = True
                elif line.startswith("exit "):
                    facts.reported_exit = int(line[5:])
            if os.WIFEXITED(wait_status):
                facts.exit_code = os.WEXITSTATUS(wait_status)
            elif os.WIFSIGNALED(wait_status):
                facts.signal = os.WTERMSIG(wait_status)
            if "cpu_s" in stats:
                facts.cpu_s = max(0.0, stats["cpu_s"] - cpu0)
            elif usage is not None:
                facts.cpu_s = usage.ru_utime + usage.ru_stime
            facts.oom_kills = int(stats.get("oom_kills", 0))
            facts.pids_max_hits = int(stats.get("pids_max_hits", 0))
            peak = stats.get("memory_peak_mb", (usage.ru_maxrss / 1024) if usage is not None else 0.0)
            facts.kill_reason = self.kill_reason
            v = decide(facts)
            stderr = err.text()
            message = v.message
            if v.status == "internal_error" and stderr:
                message = f"{message}: {stderr[-500:]}"
            return ExecResult(
                status=v.status, exit_code=v.exit_code, signal=v.signal,
                stdout=out.text(), stderr=stderr,
                stdout_truncated=out.truncated, stderr_truncated=err.truncated,
                wall_s=round(wall, 4), cpu_s=round(facts.cpu_s, 4), memory_peak_mb=round(peak, 2),
                isolation=self.cfg.tier, message=message,
            )
        finally:
            if self.exit is not None and not self.exit.done():
                self._kill_all()
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self.exit), 2.0)
            self.destroy()

    async def _feed(self, payload: bytes) -> None:
        """Write the request and stdin, then close (EOF for the program's stdin)."""
        loop = asyncio.get_running_loop()
        fd = self._fds["stdin"]
        view = memoryview(payload)
        try:
            while view:
                try:
                    n = os.write(fd, view)
                    view = view[n:]
                except BlockingIOError:
                    ready = loop.create_future()
                    loop.add_writer(fd, ready.set_result, None)
                    try:
                        await ready
                    finally:
                        loop.remove_writer(fd)
        except OSError as exc:  # the program exited without reading all its stdin
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            self._fds.pop("stdin", None)

    async def _watch_cpu(self, limit_s: float, cpu0: float) -> None:
        """Kill when the whole group's CPU time passes the limit (RLIMIT_CPU is per process)."""
        if self.cgroup is None:
            return
        cores = max(self.cfg.settings.sandbox_cpu_cores, 0.01)
        await asyncio.sleep(limit_s / cores)
        while True:
            used = self.cgroup.stats().get("cpu_s")
            if used is None:
                return
            used -= cpu0
            if used >= limit_s:
                self.kill("cpu")
                return
            await asyncio.sleep(max(0.02, (limit_s - used) / cores))
