"""Burst load on the real local stack: hundreds of tasks submitted at once. Every task
ends `done` or explicitly `rejected` by admission control (error `overloaded`, a
back-pressure message for the submitter), and the processes' memory stays bounded.
The submitter sees back-pressure too: the CLI exits 75 (EX_TEMPFAIL) with the reason,
both when the router is at its active-task limit and when the task queue is full."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from shared.contracts import TaskSubmit
from tests.conftest import WAIT_S

from .conftest import REPLY_CODE, Client, assert_exactly_one_result, rss_mb

pytestmark = pytest.mark.integration

MAX_ACTIVE = 50
RSS_GROWTH_MAX_MB = 60.0  # per process, across the whole burst


@pytest.mark.parametrize("n", [200, pytest.param(1000, marks=pytest.mark.slow)])
def test_burst_ends_every_task_done_or_rejected(make_stack, tmp_path, n: int) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([REPLY_CODE]))
    stack = make_stack(["router", "reasoner-agent"], {
        "SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": "0.005",
        "SYNDICATE_MAX_ACTIVE_TASKS": str(MAX_ACTIVE),
    })
    pids = {name: stack.pid(name) for name in ("router", "reasoner-agent")}

    async def scenario() -> dict[str, object]:
        client = await Client().connect(stack.settings("cli").nats_servers)
        warm = [TaskSubmit(task_id=f"t-warm-{i}", kind="reason", text="What is a square?") for i in range(20)]
        for task in warm:
            await client.submit(task)
        await client.wait_final([t.task_id for t in warm])
        before = {name: rss_mb(pid) for name, pid in pids.items()}

        tasks = [TaskSubmit(task_id=f"t-burst-{i}", kind="reason", text="What is a square?", timeout_s=600)
                 for i in range(n)]
        await asyncio.gather(*(client.submit(t) for t in tasks))  # all at once
        states = await client.wait_final([t.task_id for t in tasks], timeout_s=WAIT_S + n * 0.5)
        after = {name: rss_mb(pid) for name, pid in pids.items()}
        await client.close()

        statuses = Counter(s.status for s in states.values())
        assert set(statuses) <= {"done", "rejected"}, statuses
        assert statuses["done"] >= MAX_ACTIVE and statuses["rejected"] >= 1, statuses
        for state in states.values():
            if state.status == "rejected":
                assert state.result is not None and state.result.error is not None
                assert state.result.error.code == "overloaded"
                assert f"limit of {MAX_ACTIVE} active tasks" in state.result.error.message
        assert_exactly_one_result(states, client)
        for name in pids:
            assert after[name] - before[name] < RSS_GROWTH_MAX_MB, (name, before[name], after[name])
        return {"n": n, "statuses": dict(statuses), "rss_before_mb": before, "rss_after_mb": after}

    numbers = asyncio.run(scenario())
    print(json.dumps(numbers))  # the closing note quotes these


def test_backpressure_reaches_the_cli(make_stack, tmp_path) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps(["slow " * 400]))  # 500 pieces x 20 ms: a 10 s answer
    stack = make_stack(["router", "reasoner-agent"], {
        "SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_ENGINE_SCRIPT_DELAY": "0.02",
        "SYNDICATE_MAX_ACTIVE_TASKS": "1",
    })
    busy = stack.cli("submit", "--kind", "reason", "Say a lot.", "--no-wait")
    assert busy.returncode == 0, busy.stderr
    out = stack.cli("submit", "--kind", "reason", "And one more?", "--json")
    assert out.returncode == 75, out.stdout + out.stderr + stack.log("router")[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "rejected" and result["error"]["code"] == "overloaded"
    assert "limit of 1 active tasks" in result["error"]["message"]
    stack.cli("cancel", busy.stdout.strip())


def test_full_task_queue_refuses_the_publish(make_stack, tmp_path) -> None:
    """No router consumes the queue: its bound (SYNDICATE_TASK_QUEUE_MAX, discard=new)
    makes the next submit fail at once with a clear message, not wait forever."""
    script = tmp_path / "reply.json"
    script.write_text(json.dumps(["unused"]))
    # The reasoner declares the streams; without a router nothing leaves the task queue.
    stack = make_stack(["reasoner-agent"], {"SYNDICATE_ENGINE_SCRIPT": str(script), "SYNDICATE_TASK_QUEUE_MAX": "3"})
    for _ in range(3):
        queued = stack.cli("submit", "--kind", "reason", "Anyone there?", "--no-wait")
        assert queued.returncode == 0, queued.stderr
    full = stack.cli("submit", "--kind", "reason", "Anyone there?", "--no-wait")
    assert full.returncode == 75, full.stdout + full.stderr
    assert "task queue is full" in full.stderr
