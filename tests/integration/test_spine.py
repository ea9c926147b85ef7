"""The spine end to end with real processes: a real nats-server, router, coder-agent,
reasoner-agent and code-sandbox as subprocesses (scripted models), and the CLI."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Services, write_script

pytestmark = pytest.mark.integration

CODE = "```python\ndef square(x):\n    return x * x\n```"
TESTS = "```python\nassert square(3) == 9\nassert square(-2) == 4\n```"


def wait_status(services: Services, task_id: str, status: str, timeout_s: float) -> dict:
    """Poll `syndicate result` until the task reaches ``status`` (or time runs out)."""
    deadline = time.time() + timeout_s
    state: dict = {}
    while time.time() < deadline:
        state = json.loads(services.cli("result", task_id, "--json").stdout or "{}")
        if state.get("status") == status:
            break
        time.sleep(0.3)
    return state


def start_spine(services: Services, tmp_path, coder_replies: list[str], reasoner_replies: list[str] | None = None,
                delay: str = "0", **coder_env: str) -> None:
    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.start("code-sandbox", "services.code_sandbox", SYNDICATE_SANDBOX_ALLOW_DEGRADED="1")
    services.start("coder-agent", "services.coder_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "coder.json", coder_replies), SYNDICATE_ENGINE_SCRIPT_DELAY=delay,
                   **coder_env)
    services.start("reasoner-agent", "services.reasoner_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "reasoner.json", reasoner_replies or ["Paris."]),
                   SYNDICATE_ENGINE_SCRIPT_DELAY=delay)
    services.wait_ready(["router", "code-sandbox", "coder-agent", "reasoner-agent"])


def test_code_task_is_done_with_one_trace_across_hops(services: Services, tmp_path) -> None:
    start_spine(services, tmp_path, [CODE, TESTS])
    out = services.cli("submit", "--kind", "code", "Write square(x).", "--json")
    assert out.returncode == 0, out.stderr + services.log("coder-agent")[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "done"
    assert result["kind"] == "code"
    assert "x * x" in result["code"]
    assert result["tests"][0]["status"] == "ok"

    spans = json.loads(services.cli("trace", result["task_id"], "--json").stdout)
    assert {s["trace_id"] for s in spans} == {result["trace_id"]}
    by_id = {s["span_id"]: s for s in spans}
    services_seen = {s["service"] for s in spans}
    assert {"cli", "router", "coder-agent", "code-sandbox"} <= services_seen
    # Each hop is parented across the process boundary: router and sandbox spans have
    # parents in another service.
    for svc in ("router", "coder-agent", "code-sandbox"):
        crossing = [s for s in spans if s["service"] == svc and s["parent_id"] in by_id
                    and by_id[s["parent_id"]]["service"] != svc]
        assert crossing, f"no span of {svc} is parented by another service"
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["service"] for r in roots] == ["cli"]

    # Each service exported its own series about the work: tokens, verdicts, outcomes.
    expo = service_metrics(services.server.url)
    assert 'syndicate_engine_tokens_total{direction="out"}' in expo["coder-agent"]
    assert 'syndicate_sandbox_runs_total{verdict="ok"} 1.0' in expo["code-sandbox"]
    assert 'syndicate_task_outcomes_total{kind="code",status="done"} 1.0' in expo["router"]


def service_metrics(url: str) -> dict[str, str]:
    import asyncio

    import nats

    from shared import subjects
    from shared.bus import scatter
    from shared.contracts import MetricsPing, MetricsReply

    async def go() -> dict[str, str]:
        nc = await nats.connect(url)
        try:
            raw = await scatter(nc, subjects.METRICS_PING, MetricsPing().model_dump_json().encode(), wait_s=1.0)
        finally:
            await nc.close()
        replies = [MetricsReply.model_validate_json(r) for r in raw]
        return {r.service: r.exposition for r in replies}

    return asyncio.run(go())


def test_candidates_are_ranked_by_the_models_tests(services: Services, tmp_path) -> None:
    # Four candidates at once (the greedy one wrong), then the model's tests: the code most
    # candidates agree on wins, and the wrong one's verdict names what it got wrong.
    broken = "```python\ndef square(x):\n    return x + x\n```"
    start_spine(services, tmp_path, [broken, CODE, CODE, CODE, TESTS], SYNDICATE_CANDIDATES="4")
    out = services.cli("submit", "--kind", "code", "Write a function square(x).", "--json")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "done", result
    assert [a["chosen"] for a in result["attempts"]] == [False, True, False, False]
    assert "x * x" in result["code"] and result["tests"][0]["status"] == "ok"
    assert "passes both tests the model wrote itself; chosen from 4 candidates" in result["answer"]
    stderr = result["attempts"][0]["verdicts"][0]["stderr"]
    assert "assert square(3) == 9" in stderr and "evaluated to 6" in stderr


def test_a_traceback_is_repaired(services: Services, tmp_path) -> None:
    crash = "```python\ndef square(x):\n    return x * y\n```"
    start_spine(services, tmp_path, [crash, TESTS, CODE], SYNDICATE_CANDIDATES="1")
    out = services.cli("submit", "--kind", "code", "Write a function square(x).", "--json")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "done", result
    assert [(a["origin"], a["passed"], a["chosen"]) for a in result["attempts"]] == [
        ("greedy", False, False), ("repair of 1", True, True)]
    assert "NameError" in result["attempts"][0]["verdicts"][0]["stderr"]


def test_reason_task_and_result_command(services: Services, tmp_path) -> None:
    start_spine(services, tmp_path, [CODE], ["The capital of France is Paris."])
    out = services.cli("submit", "What is the capital of France?", "--json")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "done" and result["kind"] == "reason"
    assert "Paris" in result["answer"]
    again = json.loads(services.cli("result", result["task_id"], "--json").stdout)
    assert again["answer"] == result["answer"] and again["status"] == "done"


def test_no_wait_prints_the_id_and_status_lists_services(services: Services, tmp_path) -> None:
    start_spine(services, tmp_path, [CODE, TESTS])
    out = services.cli("submit", "--kind", "code", "Write square(x).", "--no-wait")
    task_id = out.stdout.strip()
    assert task_id.startswith("t-")
    assert wait_status(services, task_id, "done", 60)["status"] == "done"
    status = json.loads(services.cli("status", "--json").stdout)
    names = {row["service"] for row in status["services"]}
    assert {"router", "coder-agent", "reasoner-agent", "code-sandbox"} <= names
    coder = next(r for r in status["services"] if r["service"] == "coder-agent")
    assert coder["state"] == "ready" and coder["model"]


def test_cancel_and_timeout_end_tasks_in_their_states(services: Services, tmp_path) -> None:
    slow = "```python\n" + "x = 1\n" * 4000 + "```"
    start_spine(services, tmp_path, [slow], ["slow " * 4000], delay="0.01")
    # Timeout: the deadline passes while the (slow, scripted) model is generating.
    out = services.cli("submit", "--kind", "reason", "Say a lot.", "--timeout", "2", "--json", timeout=60)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "timeout"
    # Cancel: submit, then cancel while running.
    task_id = services.cli("submit", "--kind", "code", "Write lots.", "--no-wait").stdout.strip()
    assert wait_status(services, task_id, "running", 60)["status"] == "running"
    assert services.cli("cancel", task_id).returncode == 0
    assert wait_status(services, task_id, "cancelled", 30)["status"] == "cancelled"


def test_a_cancel_that_overtakes_its_task_still_cancels_it(services: Services, tmp_path) -> None:
    """Cancel travels on core NATS, the task on JetStream: the cancel can arrive first."""
    import asyncio

    import nats

    from shared import subjects
    from shared.contracts import CancelRequest, TaskSubmit

    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.wait_ready(["router"])
    task = TaskSubmit(kind="reason", text="never answered: no reasoner runs in this test")

    async def go() -> None:
        nc = await nats.connect(services.server.url)
        try:
            await nc.publish(subjects.TASK_CANCEL, CancelRequest(task_id=task.task_id).model_dump_json().encode())
            await nc.flush()
            await asyncio.sleep(0.5)
            await nc.jetstream().publish(subjects.TASK_SUBMIT, task.model_dump_json().encode())
        finally:
            await nc.close()

    asyncio.run(go())
    state = wait_status(services, task.task_id, "cancelled", 30)
    assert state.get("status") == "cancelled", state


def test_an_agent_takes_as_many_jobs_as_it_has_slots(services: Services, tmp_path) -> None:
    """Four reason tasks at once on a reasoner with four slots run together (its JetStream
    subscriber used to hand it one job at a time: `run 1/4` until the end)."""
    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.start("reasoner-agent", "services.reasoner_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "reasoner.json", ["Paris is the capital of France. " * 6]),
                   SYNDICATE_ENGINE_SCRIPT_DELAY="0.4", SYNDICATE_ENGINE_SCRIPT_SLOTS="4")
    services.wait_ready(["router", "reasoner-agent"])
    ids = [services.cli("submit", "--kind", "reason", f"Question {i}?", "--no-wait").stdout.strip() for i in range(4)]
    most = 0
    end = time.time() + 60
    while time.time() < end and most < 4:
        status = json.loads(services.cli("status", "--json").stdout)
        row = next((r for r in status["services"] if r["service"] == "reasoner-agent"), {})
        most = max(most, int(row.get("running", 0)))
    assert most == 4, f"at most {most} of 4 jobs ran at once"
    assert all(wait_status(services, t, "done", 60)["status"] == "done" for t in ids)
