"""How the end of a run becomes a status (Judge0-like), as a pure function.

Precedence, first match wins:

| what happened | status | notes |
|---|---|---|
| stdout or stderr passed output_bytes (we killed) | output_limit | the kept output is truncated |
| wall time passed wall_s, or cgroup CPU time passed cpu_s (we killed) | timeout | TLE |
| the service stopped the run (shutdown, cancel) | killed | |
| the program never started (box set-up failed) | internal_error | stderr in message |
| cgroup OOM kill, or an uncaught MemoryError (RLIMIT_AS) | memory_limit | |
| SIGXCPU (RLIMIT_CPU), or SIGKILL with CPU time at the limit | timeout | |
| any other signal (SIGSEGV, SIGABRT, SIGFPE, SIGBUS, unexplained SIGKILL) | runtime_error, or killed for SIGKILL | ``signal`` set, ``exit_code`` None |
| exit 0 | ok | |
| exit != 0 (exception, sys.exit(n)) | runtime_error | ``exit_code`` set |

Inside bubblewrap the visible status is the box init's: a signal N shows as exit
128+N. The in-box bootstrap reports every normal exit on its status pipe, so an
exit >= 128 without that report is a signal; a program that calls ``os._exit(139)``
directly is reported as SIGSEGV (documented limit).
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

from shared.contracts import ExecLimits


@dataclass
class RunFacts:
    """Everything the box observed about one run."""

    limits: ExecLimits
    kill_reason: str | None = None  # "output" | "timeout" | "cpu" | "shutdown"
    started: bool = False  # the bootstrap reached the program
    reported_exit: int | None = None  # the bootstrap's "exit N"
    memory_error: bool = False  # the bootstrap's "memory"
    exit_code: int | None = None  # of the process we waited for
    signal: int | None = None
    via_init: bool = True  # the process we waited for is bwrap (signals folded to 128+N)
    cpu_s: float = 0.0
    oom_kills: int = 0
    pids_max_hits: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    status: str
    exit_code: int | None
    signal: int | None
    message: str


def _signame(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def decide(f: RunFacts) -> Verdict:
    """Map facts to (status, exit_code, signal, message); see the module table."""
    exit_code, sig = f.exit_code, f.signal
    if f.via_init and sig is None and exit_code is not None and 128 < exit_code < 128 + 65 and f.reported_exit is None:
        exit_code, sig = None, exit_code - 128
    lim = f.limits
    notes = list(f.notes)
    if f.pids_max_hits:
        notes.append(f"process limit {lim.processes} reached {f.pids_max_hits} time(s)")

    def out(status: str, msg: str, *, code: int | None = exit_code, s: int | None = sig) -> Verdict:
        return Verdict(status, code, s, "; ".join([m for m in [msg, *notes] if m]))

    if f.kill_reason == "output":
        return out("output_limit", f"output limit of {lim.output_bytes} bytes exceeded", code=None, s=None)
    if f.kill_reason == "timeout":
        return out("timeout", f"wall time limit of {lim.wall_s:g} s exceeded", code=None, s=None)
    if f.kill_reason == "cpu":
        return out("timeout", f"CPU time limit of {lim.cpu_s:g} s exceeded", code=None, s=None)
    if f.kill_reason is not None:
        return out("killed", f"run stopped by the service ({f.kill_reason})", code=None, s=None)
    if not f.started:
        return out("internal_error", "the box failed before the program started")
    if f.oom_kills or f.memory_error:
        return out("memory_limit", f"memory limit of {lim.memory_mb} MB exceeded")
    if sig == _signal.SIGXCPU or (sig == _signal.SIGKILL and f.cpu_s >= lim.cpu_s - 0.05):
        return out("timeout", f"CPU time limit of {lim.cpu_s:g} s exceeded", code=None)
    if sig is not None:
        status = "killed" if sig == _signal.SIGKILL else "runtime_error"
        return out(status, f"terminated by {_signame(sig)}", code=None)
    if exit_code == 0:
        return out("ok", "")
    return out("runtime_error", f"exit code {exit_code}")
