"""code-sandbox as a real service: a real nats-server and the service subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import nats
import pytest

from shared import subjects
from shared.contracts import ErrorReply, ExecLimits, ExecRequest, ExecResult
from tests.conftest import WAIT_S

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
CGROUP_BASES = [Path("/sys/fs/cgroup") / h / "syndicate-sandbox" for h in ("memory", "pids", "cpu", "cpuacct", "unified")]
FAST_START = {"SYNDICATE_LOG_LEVEL": "WARNING"}


async def exec_raw(url: str, payload: bytes, wait_s: float = 20.0) -> dict:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subjects.SANDBOX_EXEC, payload, timeout=wait_s)
        return json.loads(msg.data)
    finally:
        await nc.close()


def instance_dirs(pid: int) -> list[Path]:
    return [d for base in CGROUP_BASES if base.is_dir() for d in base.glob(f"i-{pid}-*")]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_service_runs_code_answers_errors_and_reports_tier(services, tmp_path: Path) -> None:
    svc = services.start("code-sandbox", "services.code_sandbox", **FAST_START)
    services.wait_ready(["code-sandbox"])
    url = services.server.url
    ok = ExecResult.model_validate(asyncio.run(exec_raw(url, ExecRequest(code="print(6 * 7)").model_dump_json().encode())))
    assert (ok.status, ok.stdout, ok.isolation) == ("ok", "42\n", "full")
    seg = ExecResult.model_validate(asyncio.run(exec_raw(url, ExecRequest(code="import ctypes; ctypes.string_at(0)").model_dump_json().encode())))
    assert (seg.status, seg.signal) == ("runtime_error", 11)
    for bad in (b"not json", b'{"code": 5}', b'{"code": "x", "limits": {"wall_s": -1}}', b'{"code": "x", "surprise": 1}'):
        err = ErrorReply.model_validate(asyncio.run(exec_raw(url, bad)))
        assert err.error.code == "invalid_payload"
    health = services.health("code-sandbox")
    assert health.state == "ready" and health.details["isolation"] == "full"
    assert health.details["isolation_layers"] == ["bwrap", "cgroup", "seccomp", "userdrop"]
    # the CLI: plain (program output + verdict, exit 1 when not ok) and --json
    prog, data = tmp_path / "prog.py", tmp_path / "in.txt"
    prog.write_text("import sys\nprint(sys.stdin.read()[::-1])\nsys.exit(int(len(sys.argv) > 5))\n")
    data.write_text("abc")
    out = services.cli("exec", str(prog), "--stdin", str(data), "--timeout", "5", "--memory", "64")
    assert out.returncode == 0 and out.stdout == "cba\n" and "ok" in out.stderr and "isolation full" in out.stderr
    bomb = tmp_path / "bomb.py"
    bomb.write_text("x = []\nwhile True:\n    x.append(bytearray(2**20))\n")
    out = services.cli("exec", str(bomb), "--memory", "48", "--json")
    assert out.returncode == 1
    reply = ExecResult.model_validate_json(out.stdout)
    assert (reply.status, reply.isolation) == ("memory_limit", "full")
    assert svc.poll() is None  # nothing above crashed it


def test_service_on_a_host_without_isolation_refuses(services) -> None:
    services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_DISABLE="bwrap", **FAST_START)
    services.wait_ready(["code-sandbox"])
    url = services.server.url
    r = ExecResult.model_validate(asyncio.run(exec_raw(url, ExecRequest(code="print(1)").model_dump_json().encode())))
    assert (r.status, r.stdout) == ("rejected", "") and "no isolation available" in r.message
    health = services.health("code-sandbox")
    assert health.state == "degraded" and health.details["isolation"] == "degraded (refusing code)"


def test_kill_9_of_the_service_mid_run_leaves_nothing(services) -> None:
    svc = services.start("code-sandbox", "services.code_sandbox", **FAST_START)
    services.wait_ready(["code-sandbox"])
    url = services.server.url
    req = ExecRequest(code="import time\nprint('sleeping', flush=True)\ntime.sleep(1000)\n", limits=ExecLimits(wall_s=30, cpu_s=5))

    async def scenario() -> list[int]:
        pending = asyncio.ensure_future(exec_raw(url, req.model_dump_json().encode(), wait_s=60))
        box_pids: list[int] = []
        end = time.monotonic() + WAIT_S
        while not box_pids and time.monotonic() < end:  # wait for the box to be running
            await asyncio.sleep(0.05)
            for d in instance_dirs(svc.pid):
                for run in d.iterdir():
                    if run.is_dir() and (run / "cgroup.procs").exists():
                        box_pids += [int(x) for x in (run / "cgroup.procs").read_text().split()]
        assert box_pids, "the box never started"
        os.kill(svc.pid, signal.SIGKILL)
        pending.cancel()
        return box_pids

    box_pids = asyncio.run(scenario())
    svc.wait(10)
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end and (any(alive(p) for p in box_pids) or instance_dirs(svc.pid)):
        time.sleep(0.05)
    assert not [p for p in box_pids if alive(p)], "box processes survived the service"
    assert not instance_dirs(svc.pid), "cgroups survived the service"
    # a new instance sweeps whatever a dead one left and serves
    services.procs.pop("code-sandbox")
    services.start("code-sandbox", "services.code_sandbox", **FAST_START)
    services.wait_ready(["code-sandbox"])
    r = ExecResult.model_validate(asyncio.run(exec_raw(url, ExecRequest(code="print('back')").model_dump_json().encode())))
    assert (r.status, r.stdout) == ("ok", "back\n")
