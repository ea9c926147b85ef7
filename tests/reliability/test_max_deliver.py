"""A job whose worker dies on it every time is not redelivered forever: after the
consumer's max_deliver, nats-server's advisory reaches the router, which writes a dead
letter and ends the task `failed` with the reason.

The dying worker is played by the test: it pulls the coder-agent's jobs as the
coder-agent NATS user and never acks them (what a process killed mid-job looks like to
JetStream), against the real router on the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import json

import nats
import pytest
from nats.js.api import ConsumerConfig

from shared import subjects
from shared.contracts import FINAL_STATUSES, DeadLetter, TaskState, TaskSubmit
from tests.conftest import until

from .conftest import Client

pytestmark = pytest.mark.integration

MAX_DELIVER = 2


def test_max_deliver_ends_the_task_failed_with_a_dead_letter(make_stack) -> None:
    stack = make_stack(["router"])

    async def scenario() -> None:
        worker = await nats.connect(stack.settings("coder-agent").nats_servers)
        js = worker.jetstream()
        # The coder-agent's durable, as a crashing coder-agent would have declared it.
        sub = await js.pull_subscribe(
            subjects.JOB_CODER, durable=subjects.CODER_DURABLE, stream=subjects.JOBS_STREAM,
            config=ConsumerConfig(ack_wait=1.0, max_deliver=MAX_DELIVER),
        )
        client = await Client().connect(stack.settings("cli").nats_servers)
        task = TaskSubmit(kind="code", text="Write square(x).", timeout_s=300)
        await client.submit(task)

        deliveries = 0

        async def delivered() -> bool:  # the worker "dies" on every delivery
            nonlocal deliveries
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                msgs = await sub.fetch(1, timeout=1.0)
                assert json.loads(msgs[0].data)["task_id"] == task.task_id
                deliveries += 1
            return deliveries >= MAX_DELIVER

        await until(delivered, lambda: f"{deliveries} of {MAX_DELIVER} deliveries")

        # The server tells of the exhausted message when it would deliver it once more, to a
        # waiting pull: keep pulling (nothing more may come) until the router has ended the task.
        async def ended() -> TaskState | None:
            nonlocal deliveries
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                await sub.fetch(1, timeout=1.0)
                deliveries += 1
            state = await client.state(task.task_id)
            return state if state is not None and state.status in FINAL_STATUSES else None

        state = await until(ended, f"task {task.task_id} never ended")
        assert deliveries == MAX_DELIVER  # and never again
        assert state.status == "failed"
        assert state.result is not None and state.result.error is not None
        assert state.result.error.code == "undeliverable"
        assert f"delivered {MAX_DELIVER} times" in state.result.error.message
        assert state.steps[0].status == "failed"
        assert client.result_events[task.task_id][0]["error"]["code"] == "undeliverable"

        letters = [DeadLetter.model_validate_json(d)
                   for _, d in await client.stream_messages(subjects.DEAD_LETTER_STREAM, f"{subjects.DEAD_LETTER}.>")]
        mine = [letter for letter in letters if task.task_id in letter.payload]
        assert len(mine) == 1 and mine[0].source == subjects.JOB_CODER
        assert mine[0].reason.startswith("undeliverable:")
        await worker.close()
        await client.close()

    asyncio.run(scenario())
