"""The spine end to end with real processes: a real nats-server, router, coder-agent,
reasoner-agent and code-sandbox as subprocesses (scripted models), and the CLI."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.conftest import WAIT_S, Services, wait_until, write_script

pytestmark = pytest.mark.integration

CODE = "```python\ndef square(x):\n    return x * x\n```"
TESTS = "```python\nassert square(3) == 9\nassert square(-2) == 4\n```"


def wait_status(services: Services, task_id: str, status: str, timeout_s: float = WAIT_S) -> dict:
    """Poll `syndicate result` until the task reaches ``status`` (or time runs out: the
    last state seen)."""
    state: dict = {}

    def reached() -> bool:
        state.clear()
        state.update(json.loads(services.cli("result", task_id, "--json").stdout or "{}"))
        return state.get("status") == status

    with contextlib.suppress(TimeoutError):
        wait_until(reached, "", timeout_s, every_s=0.3)
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

    # Spans are written in batches: wait until every hop's spans are in.
    def every_hop() -> list[dict] | None:
        found = json.loads(services.cli("trace", result["task_id"], "--json").stdout)
        return found if {"cli", "router", "coder-agent", "code-sandbox"} <= {s["service"] for s in found} else None

    spans = wait_until(every_hop, "spans of every hop")
    assert {s["trace_id"] for s in spans} == {result["trace_id"]}
    by_id = {s["span_id"]: s for s in spans}
    # Each hop is parented across the process boundary: router and sandbox spans have
    # parents in another service.
    for svc in ("router", "coder-agent", "code-sandbox"):
        crossing = [s for s in spans if s["service"] == svc and s["parent_id"] in by_id
                    and by_id[s["parent_id"]]["service"] != svc]
        assert crossing, f"no span of {svc} is parented by another service"
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["service"] for r in roots] == ["cli"]

    # Each service exported its own series about the work: tokens, verdicts, outcomes
    # (a reply that misses one ping's window comes with a later one).
    def every_service() -> dict[str, str] | None:
        found = service_metrics(services.server.url)
        return found if {"coder-agent", "code-sandbox", "router"} <= set(found) else None

    expo = wait_until(every_service, "metrics of every service")
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
    # The scripted coder answers its first task only (its replies run out): the code task
    # comes first. A task id of the caller's own: submitting it again is the same task.
    start_spine(services, tmp_path, [CODE, TESTS])
    for _ in range(2):
        assert services.cli("submit", "--kind", "code", "--id", "my-square", "Write square(x).", "--no-wait").stdout.strip() == "my-square"
    assert wait_status(services, "my-square", "done")["status"] == "done"
    assert sum("task routed" in line and "my-square" in line for line in services.log("router").splitlines()) == 1
    task_id = services.cli("submit", "--kind", "reason", "What is the capital of France?", "--no-wait").stdout.strip()
    assert task_id.startswith("t-")
    assert wait_status(services, task_id, "done")["status"] == "done"
    status = json.loads(services.cli("status", "--json").stdout)
    names = {row["service"] for row in status["services"]}
    assert {"router", "coder-agent", "reasoner-agent", "code-sandbox"} <= names
    coder = next(r for r in status["services"] if r["service"] == "coder-agent")
    assert coder["state"] == "ready" and coder["model"]


def test_cancel_and_timeout_end_tasks_in_their_states(services: Services, tmp_path) -> None:
    slow = "```python\n" + "x = 1\n" * 4000 + "```"
    start_spine(services, tmp_path, [slow], ["slow " * 4000], delay="0.01")
    # Timeout: the deadline passes while the (slow, scripted) model is generating.
    out = services.cli("submit", "--kind", "reason", "Say a lot.", "--timeout", "2", "--json")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "timeout"
    # Cancel: submit, then cancel while running.
    task_id = services.cli("submit", "--kind", "code", "Write lots.", "--no-wait").stdout.strip()
    assert wait_status(services, task_id, "running")["status"] == "running"
    assert services.cli("cancel", task_id).returncode == 0
    assert wait_status(services, task_id, "cancelled")["status"] == "cancelled"


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
    state = wait_status(services, task.task_id, "cancelled")
    assert state.get("status") == "cancelled", state


def test_a_submitted_task_is_found_queued_until_the_router_takes_it(services: Services, tmp_path) -> None:
    """The submitter records a task `queued` once the stream holds it, so a client handed
    its id finds it at once (A2A's GetTask right after a send raced the router: "no task");
    the router then takes the task over from that record and runs it."""
    import asyncio

    import nats

    from shared import subjects
    from shared.contracts import TaskState

    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.wait_ready(["router"])  # streams and the task-state bucket exist from here on
    router = services.procs["router"]
    router.terminate()
    router.wait(30)
    task_id = services.cli("submit", "--kind", "reason", "What is the capital of France?", "--no-wait").stdout.strip()
    assert json.loads(services.cli("result", task_id, "--json").stdout)["status"] == "queued"

    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.start("reasoner-agent", "services.reasoner_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "reasoner.json", ["Paris."]))
    services.wait_ready(["router", "reasoner-agent"])
    state = wait_status(services, task_id, "done")
    assert state.get("status") == "done" and "Paris" in state["answer"], state

    async def record() -> TaskState:
        nc = await nats.connect(services.server.url)
        try:
            entry = await (await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)).get(task_id)
            return TaskState.model_validate_json(entry.value or b"")
        finally:
            await nc.close()

    assert [status for status, _ in asyncio.run(record()).history][:3] == ["queued", "routed", "running"]


def test_an_agent_takes_as_many_jobs_as_it_has_slots(services: Services, tmp_path) -> None:
    """Four reason tasks at once on a reasoner with four slots run together (its JetStream
    subscriber used to hand it one job at a time: `run 1/4` until the end). The four are
    submitted together from one client, and each scripted answer lasts minutes, so all four
    run when looked at however busy the machine is; then they are cancelled."""
    import asyncio

    import nats

    from shared import subjects
    from shared.contracts import CancelRequest, TaskSubmit
    from syndicate.cli.connect import health_replies

    services.start("router", "services.router", SYNDICATE_ROUTER_CLASSIFIER="0")
    services.start("reasoner-agent", "services.reasoner_agent",
                   SYNDICATE_ENGINE_SCRIPT=write_script(tmp_path / "reasoner.json", ["Paris is the capital of France. " * 100]),
                   SYNDICATE_ENGINE_SCRIPT_DELAY="0.4", SYNDICATE_ENGINE_SCRIPT_SLOTS="4")
    services.wait_ready(["router", "reasoner-agent"])
    tasks = [TaskSubmit(kind="reason", text=f"Question {i}?") for i in range(4)]

    async def publish(subject: str, messages: list[TaskSubmit] | list[CancelRequest]) -> None:
        nc = await nats.connect(services.server.url)
        try:
            if subject == subjects.TASK_SUBMIT:
                js = nc.jetstream()
                await asyncio.gather(*(js.publish(subject, m.model_dump_json().encode(),
                                                  headers={"Nats-Msg-Id": m.task_id}) for m in messages))
            else:
                for m in messages:
                    await nc.publish(subject, m.model_dump_json().encode())
                await nc.flush()
        finally:
            await nc.close()

    asyncio.run(publish(subjects.TASK_SUBMIT, tasks))
    most = 0

    def all_running() -> bool:
        nonlocal most
        replies = asyncio.run(health_replies(services.server.url, wait_s=0.3))
        most = max([most, *(r.running for r in replies if r.service == "reasoner-agent")])
        return most == 4

    wait_until(all_running, lambda: f"at most {most} of 4 jobs ran at once", alive=services.check_alive)
    asyncio.run(publish(subjects.TASK_CANCEL, [CancelRequest(task_id=t.task_id) for t in tasks]))
    assert all(wait_status(services, t.task_id, "cancelled")["status"] == "cancelled" for t in tasks)
