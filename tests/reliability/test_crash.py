"""Crash safety on the real local stack: kill -9 each of router, coder-agent,
reasoner-agent, retriever and code-sandbox while tasks flow; the supervisor restarts
them, and every task still ends with exactly one final result: no task lost, no step
result recorded twice, no duplicate result message on the bus."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from shared import subjects
from shared.contracts import StepResult, TaskSubmit

from .conftest import REPLY_CODE, Client, assert_exactly_one_result

pytestmark = pytest.mark.integration

KILL_ORDER = ["router", "coder-agent", "reasoner-agent", "retriever", "code-sandbox"]


def task_for(i: int) -> TaskSubmit:
    kind = ("code", "reason", "reason-rag")[i % 3]
    if kind == "code":
        return TaskSubmit(task_id=f"t-crash-{i}", kind="code", text="Write square(x).", timeout_s=300)
    if kind == "reason":
        return TaskSubmit(task_id=f"t-crash-{i}", kind="reason", text="What is a square?", timeout_s=300)
    return TaskSubmit(task_id=f"t-crash-{i}", kind="reason", text="What do liquidators repay?",
                      collection="notes", timeout_s=300)


def test_kill_each_service_while_tasks_flow(make_stack, tmp_path) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([REPLY_CODE]))
    stack = make_stack(KILL_ORDER, {
        "SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": "0.02",
        "SYNDICATE_ACK_WAIT_S": "3",  # a dead worker's job goes to its restarted copy after 3 s
        "SYNDICATE_SANDBOX_TIMEOUT_S": "5",
    })
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "loans.md").write_text("Liquidators repay unhealthy loans and receive collateral at a discount.\n")
    ingest = stack.cli("ingest", str(docs), "--collection", "notes", "--json")
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr

    async def scenario() -> None:
        client = await Client().connect(stack.settings("cli").nats_servers)
        submitted: list[str] = []
        stop = asyncio.Event()

        async def keep_submitting() -> None:
            i = 0
            while not stop.is_set():
                task = task_for(i)
                await client.submit(task)
                submitted.append(task.task_id)
                i += 1
                await asyncio.sleep(0.5)

        feeder = asyncio.create_task(keep_submitting())
        try:
            await asyncio.sleep(2.0)
            for service in KILL_ORDER:  # one at a time, each while tasks are in flight
                t0 = time.monotonic()
                await asyncio.to_thread(stack.kill, service)
                print(f"{service} killed and back in {time.monotonic() - t0:.1f}s")
                await asyncio.sleep(1.0)
        finally:
            stop.set()
            await feeder
        t0 = time.monotonic()
        states = await client.wait_final(submitted)
        print(f"{len(submitted)} tasks; the last ended {time.monotonic() - t0:.1f}s after the kills")
        statuses = Counter(s.status for s in states.values())
        assert statuses == {"done": len(submitted)}, (
            statuses, {t: s.result.error for t, s in states.items() if s.status != "done"})
        assert_exactly_one_result(states, client)

        # No duplicate effect: one StepResult message per step in the JOBS stream (the
        # agents' publishes are deduplicated by step id), one job per step.
        results = await client.stream_messages(subjects.JOBS_STREAM, subjects.STEP_RESULT)
        per_step = Counter(StepResult.model_validate_json(data).step_id for _, data in results)
        assert per_step and max(per_step.values()) == 1, per_step.most_common(3)
        assert set(per_step) == {s.steps[-1].step_id for s in states.values()}
        for agent in ("coder", "reasoner"):
            jobs = await client.stream_messages(subjects.JOBS_STREAM, subjects.job_subject(agent))
            ids = Counter(h.get("Nats-Msg-Id") for h, _ in jobs)
            assert ids and max(ids.values()) == 1, ids.most_common(3)
        await client.close()

    asyncio.run(scenario())
    restarts = {name: entry["restarts"] for name, entry in stack.record()["services"].items()}
    assert all(restarts[name] >= 1 for name in KILL_ORDER), restarts
