"""Pure logic: verdict mapping, limit clamping, tier arithmetic, the bootstrap's wire format."""

from __future__ import annotations

import signal

import pytest

from services.code_sandbox.box import encode_request
from services.code_sandbox.settings import MIN_MEMORY_MB, SandboxSettings, clamp_limits
from services.code_sandbox.tiers import DEGRADED, FULL, NAMESPACES, tier_of
from services.code_sandbox.verdict import RunFacts, decide
from shared.contracts import ExecLimits

LIM = ExecLimits(wall_s=2, cpu_s=1, memory_mb=64, processes=8, output_bytes=1000)


def facts(**kw: object) -> RunFacts:
    return RunFacts(limits=LIM, started=True, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "status", "exit_code", "sig"),
    [
        ({"exit_code": 0, "reported_exit": 0}, "ok", 0, None),
        ({"exit_code": 1, "reported_exit": 1}, "runtime_error", 1, None),
        ({"exit_code": 139, "reported_exit": 139}, "runtime_error", 139, None),  # exit(139), not a signal
        ({"exit_code": 139}, "runtime_error", None, signal.SIGSEGV),  # 128+11 from bwrap's init
        ({"exit_code": 128 + signal.SIGXCPU}, "timeout", None, signal.SIGXCPU),
        ({"exit_code": 137, "cpu_s": 1.0}, "timeout", None, signal.SIGKILL),  # hard RLIMIT_CPU
        ({"exit_code": 137, "cpu_s": 0.1}, "killed", None, signal.SIGKILL),
        ({"exit_code": 137, "oom_kills": 1}, "memory_limit", None, signal.SIGKILL),
        ({"exit_code": 1, "memory_error": True}, "memory_limit", 1, None),
        ({"signal": signal.SIGABRT, "via_init": False}, "runtime_error", None, signal.SIGABRT),
        ({"exit_code": 137, "kill_reason": "timeout"}, "timeout", None, None),
        ({"exit_code": 137, "kill_reason": "cpu"}, "timeout", None, None),
        ({"exit_code": 137, "kill_reason": "output", "oom_kills": 1}, "output_limit", None, None),
        ({"exit_code": 137, "kill_reason": "shutdown"}, "killed", None, None),
    ],
)
def test_verdict_mapping(kw: dict, status: str, exit_code: int | None, sig: int | None) -> None:
    v = decide(facts(**kw))
    assert (v.status, v.exit_code, v.signal) == (status, exit_code, sig)


def test_box_that_never_started_is_internal_error() -> None:
    v = decide(RunFacts(limits=LIM, started=False, exit_code=1))
    assert v.status == "internal_error"


def test_pids_limit_is_reported() -> None:
    v = decide(facts(exit_code=1, reported_exit=1, pids_max_hits=3))
    assert "process limit 8 reached 3 time(s)" in v.message


def test_limits_clamped_to_ceilings_never_raised() -> None:
    s = SandboxSettings(sandbox_max_wall_s=5, sandbox_max_memory_mb=128, sandbox_max_processes=10)
    asked = ExecLimits(wall_s=1e6, cpu_s=1e6, memory_mb=10**6, processes=10**6, output_bytes=10**12, file_size_mb=10**6)
    got = clamp_limits(asked, s.ceilings)
    assert got.model_dump() == s.ceilings.model_dump()
    small = clamp_limits(ExecLimits(wall_s=0.5, memory_mb=1, processes=2), s.ceilings)
    assert (small.wall_s, small.memory_mb, small.processes) == (0.5, MIN_MEMORY_MB, 2)


def test_default_limits_are_within_default_ceilings() -> None:
    s = SandboxSettings()
    assert clamp_limits(ExecLimits(), s.ceilings) == ExecLimits()


def test_unknown_layer_in_disable_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown layers"):
        SandboxSettings(sandbox_disable="bwrap,firejail")


@pytest.mark.parametrize(
    ("layers", "tier"),
    [
        ({"bwrap", "seccomp", "cgroup", "userdrop"}, FULL),
        ({"bwrap", "seccomp", "userdrop"}, NAMESPACES),
        ({"bwrap", "cgroup", "userdrop"}, DEGRADED),  # no seccomp: AF_VSOCK reaches the host
        ({"seccomp", "cgroup", "userdrop"}, DEGRADED),
        (set(), DEGRADED),
    ],
)
def test_tier_of_layers(layers: set[str], tier: str) -> None:
    assert tier_of(frozenset(layers)) == tier


def test_request_wire_format() -> None:
    data = encode_request("cpu_s=1", "print('é')", [("a.py", "x = 1")])
    size = int.from_bytes(data[:4], "big")
    assert size == len(data) - 4
    fields, i, body = [], 0, data[4:]
    while i < len(body):
        n = int.from_bytes(body[i:i + 4], "big")
        fields.append(body[i + 4:i + 4 + n].decode())
        i += 4 + n
    assert fields == ["cpu_s=1", "print('é')", "a.py", "x = 1"]
