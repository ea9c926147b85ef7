"""``syndicate evolve`` (mode "islands") with real processes: nats-server, router,
code-sandbox (full isolation) and two coder-agent copies with scripted models
(SYNDICATE_ENGINE_SCRIPT); the router is killed mid-run and the run resumes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import nats
import pytest

from shared import subjects
from shared.contracts import EvolveRun
from shared.evolve.store import RunStore
from tests.conftest import WAIT_S, Services, wait_until, write_script

pytestmark = pytest.mark.integration

ROUTER_ENV = {
    "SYNDICATE_ROUTER_CLASSIFIER": "0", "SYNDICATE_EVOLVE_LEASE_S": "3", "SYNDICATE_EVOLVE_HEARTBEAT_S": "1",
    "SYNDICATE_EVOLVE_SCAN_S": "1", "SYNDICATE_EVOLVE_GRACE_S": "2",
}


def code(body: str) -> str:
    return f"Sure:\n```python\ndef f_v1():\n    {body}\n```"


SCORER = """
import json, sys
from candidate import f
stage = json.loads(sys.stdin.read() or "{}").get("stage", "train")
value = f()
print('f() =', repr(value))
scale = {"quick": 1, "train": 1, "validation": 1, "test": 2}[stage]
print(json.dumps({"score": scale * value, "fingerprint": repr(value), "metrics": {"value": scale * value}}))
"""


def write_spec(tmp: Path, full: bool = True) -> Path:
    """The toy spec; ``full``: with validation, test and a baseline (the resume test needs none)."""
    (tmp / "seed.py").write_text("def f():\n    return 1\n")
    (tmp / "score.py").write_text(SCORER)
    spec = tmp / "spec.toml"
    cascade = ('[cascade]\nvalidation = "validation"\ntest = "test"\nmetric = "value"\n'
               '[baselines]\nthree = "def f():\\n    return 3\\n"\n') if full else (
        # Half the samples through the JOBS stream, half as model requests to the coders' model.
        '[[models]]\nname = ""\n[[models]]\nname = "scripted-coder"\n')
    spec.write_text(
        'name = "toy"\ntask = "Make f() return a larger number."\nfunction = "f"\nsamples = 8\nconcurrency = 4\n'
        '[seed]\nfile = "seed.py"\n[scorer]\nfile = "score.py"\n' + cascade +
        '[database]\nislands = 2\n[limits]\nscore_wall_s = 5\njob_timeout_s = 120\n'
    )
    return spec


def start(services: Services, tmp: Path, delay: str) -> None:
    services.start("router", "services.router", **ROUTER_ENV)
    services.start("code-sandbox", "services.code_sandbox")
    scripts = {
        "coder-a": [code("raise ValueError('boom')"), code("return 3"), code("return 6"), code("return 7")],
        "coder-b": [code("return 'many'"), code("return 4"), code("return 5"), code("return 9")],
    }
    for name, replies in scripts.items():
        services.start(name, "services.coder_agent", SYNDICATE_ENGINE_SCRIPT=write_script(tmp / f"{name}.json", replies),
                       SYNDICATE_ENGINE_SCRIPT_DELAY=delay)
    services.wait_ready(["router", "code-sandbox", "coder-agent"], every_process=True)
    wait_pullers(services.server.url, subjects.CODER_DURABLE, 2)


def wait_pullers(url: str, durable: str, count: int, timeout_s: float = WAIT_S) -> None:
    """Wait until ``count`` processes pull from ``durable`` (a pull request of each is
    waiting at the server), so both coder copies share the work from the first job."""

    async def go() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            end = time.monotonic() + timeout_s
            while True:
                info = await js.consumer_info(subjects.JOBS_STREAM, durable)
                if (info.num_waiting or 0) >= count:
                    return
                assert time.monotonic() < end, f"{durable}: {info.num_waiting} of {count} pulling"
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    asyncio.run(go())


def read_run(url: str, run_id: str) -> EvolveRun | None:
    async def go() -> EvolveRun | None:
        nc = await nats.connect(url)
        try:
            return await RunStore(await nc.jetstream().key_value(subjects.EVOLVE_BUCKET)).get_run(run_id)
        finally:
            await nc.close()

    return asyncio.run(go())


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_evolve_improves_with_two_coder_copies_and_traces_each_sample(services: Services, tmp_path: Path) -> None:
    start(services, tmp_path, delay="0.05")
    out = services.cli("evolve", str(write_spec(tmp_path)), "--json", "--out", str(tmp_path / "report"), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:] + services.log("router")[-3000:]
    data = last_json(out.stdout)
    assert data["status"] == "done" and data["mode"] == "islands"
    assert data["samples"] == 8 and data["candidates"] == 8 and data["seed_score"] == 1.0
    assert data["best_score"] == 9.0 and "return 9" in data["best_program"] and "def f():" in data["best_program"]
    assert {"runtime_error", "no_number"} <= set(data["verdicts"])  # each copy's first reply fails
    assert data["valid_fraction"] == 0.75 and data["minutes"] > 0
    assert data["test_value"] == 18.0 and data["seed_value"] == 2.0 and data["three_value"] == 6.0
    assert data["lineage"][0]["score"] == 9.0 and data["lineage"][-1]["program_id"] == "seed"
    assert len(data["islands"]) == 2 and sum(i["samples"] for i in data["islands"]) == 8
    assert Path(data["curve_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Scale-out: both coder-agent copies wrote candidates from the shared durable consumer.
    for name in ("coder-a", "coder-b"):
        assert "candidate written" in services.log(name), name
    # The finished run can be inspected again: --resume re-attaches and prints the report.
    again = services.cli("evolve", "--resume", data["run_id"], "--out", str(tmp_path / "again"), timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "lineage of the winner" in again.stdout and data["best_id"] in again.stdout
    listed = services.cli("evolve", "--list")
    assert data["run_id"] in listed.stdout and "done" in listed.stdout
    # One trace per sample: a router root span, the coder-agent's work and the sandbox's runs.
    trace_id = data["lineage"][0]["trace_id"]
    spans = wait_until(lambda: (found := json.loads(services.cli("trace", trace_id, "--json").stdout)) and (
        {"router", "coder-agent", "code-sandbox"} <= {s["service"] for s in found}) and found,
        "spans of every service (they are written in batches)")
    roots = [s for s in spans if s["parent_id"] is None]
    assert [(r["service"], r["name"]) for r in roots] == [("router", f"evolve sample {data['lineage'][0]['sample']}")]
    assert {"router", "coder-agent", "code-sandbox"} <= {s["service"] for s in spans}


def test_a_run_resumes_after_the_router_is_killed(services: Services, tmp_path: Path) -> None:
    start(services, tmp_path, delay="0.2")  # slow model: the kill lands mid-run
    spec = write_spec(tmp_path, full=False)
    run_id = services.cli("evolve", str(spec), "--samples", "12", "--detach").stdout.strip()
    assert run_id.startswith("evo-")
    deadline = time.time() + WAIT_S
    run = None
    while time.time() < deadline:
        run = read_run(services.server.url, run_id)
        if run is not None and run.answered >= 2:
            break
        time.sleep(0.3)
    assert run is not None and run.answered >= 2 and run.status == "running"
    services.procs["router"].send_signal(signal.SIGKILL)
    services.procs["router"].wait(10)
    killed_at = read_run(services.server.url, run_id)
    assert killed_at is not None and killed_at.status == "running" and killed_at.asked < 12

    services.start("router", "services.router", **ROUTER_ENV)
    out = services.cli("evolve", "--resume", run_id, "--json", "--out", str(tmp_path / "report"), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:] + services.log("router")[-3000:]
    data = last_json(out.stdout)
    assert data["status"] == "done" and data["samples"] == 12 and data["candidates"] == 12
    assert data["best_score"] > data["seed_score"]
    assert "asked" not in data["verdicts"] and "pending" not in data["verdicts"]
    assert set(data["models_asked"]) == {"jobs", "scripted-coder"}  # model requests too (re-asked after the kill)
    # The restarted router took the run over where the killed one left it.
    claims = [json.loads(line) for line in services.log("router").splitlines() if "evolution run claimed" in line]
    assert len(claims) == 2
