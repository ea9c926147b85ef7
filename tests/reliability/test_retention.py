"""Retention: a task's state (KV) and its job/result messages (JOBS stream) expire by the
configured policy, SYNDICATE_TASK_RETENTION_S — here 5 seconds."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shared import subjects
from shared.bus import stream_configs
from shared.contracts import TaskSubmit
from shared.settings import Settings
from tests.conftest import WAIT_S, until

from .conftest import CODE, Client

RETENTION_S = 5


@pytest.mark.integration
def test_task_state_and_messages_expire(make_stack, tmp_path) -> None:
    script = tmp_path / "reply.json"
    script.write_text(json.dumps([CODE]))
    stack = make_stack(["router", "reasoner-agent"], {"SYNDICATE_ENGINE_SCRIPT": str(script),
                                                      "SYNDICATE_TASK_RETENTION_S": str(RETENTION_S)})
    task = TaskSubmit(kind="reason", text="What is a square?")
    task_id = task.task_id

    async def scenario() -> None:
        client = await Client().connect(stack.settings("cli").nats_servers)
        assert client.nc is not None
        js = client.nc.jetstream()
        kv_info = await js.stream_info(f"KV_{subjects.TASK_STATE_BUCKET}")
        assert kv_info.config.max_age == RETENTION_S
        assert (await js.stream_info(subjects.JOBS_STREAM)).config.max_age == RETENTION_S

        async def present() -> tuple[bool, int]:
            state = await client.state(task_id)
            msgs = await client.stream_messages(subjects.JOBS_STREAM, f"{subjects.JOB_PREFIX}.>")
            return state is not None, sum(task_id in data.decode() for _, data in msgs)

        async def last_seq(stream: str) -> int:
            return (await js.stream_info(stream)).state.last_seq

        kv_before, jobs_before = await last_seq(f"KV_{subjects.TASK_STATE_BUCKET}"), await last_seq(subjects.JOBS_STREAM)
        await client.submit(task)
        await until(lambda: client.result_events.get(task_id), "the task's result event")
        assert client.result_events[task_id][0]["status"] == "done"
        # Its record and its job and result messages were written (sequence numbers count
        # them after they expired too: a busy machine may outlast a 5 s retention) ...
        assert await last_seq(f"KV_{subjects.TASK_STATE_BUCKET}") > kv_before
        assert await last_seq(subjects.JOBS_STREAM) - jobs_before == 2
        end = time.monotonic() + WAIT_S
        while (found := await present()) != (False, 0):  # ... and then both expire
            assert time.monotonic() < end, f"still there after {WAIT_S} s: state, messages = {found}"
            await asyncio.sleep(0.5)
        await client.close()

    asyncio.run(scenario())
    gone = stack.cli("result", task_id, "--json")
    assert gone.returncode == 2 and "retention" in gone.stderr, gone.stdout + gone.stderr


def test_stream_configs_follow_the_settings() -> None:
    settings = Settings(task_retention_s=3600, task_queue_max=50)
    cfgs = stream_configs(settings, replicas=3)
    assert {c.num_replicas for c in cfgs.values()} == {3}
    assert cfgs[subjects.JOBS_STREAM].max_age == 3600
    assert cfgs[subjects.TASKS_STREAM].max_msgs == 50
    assert cfgs[subjects.DEAD_LETTER_STREAM].max_age == 30 * 86_400  # dead letters keep their own policy
    short = stream_configs(Settings(task_retention_s=5))
    assert short[subjects.JOBS_STREAM].duplicate_window <= 5  # JetStream requires window <= max_age


@pytest.mark.integration
async def test_a_changed_policy_applies_to_existing_streams(nats_server) -> None:
    from shared.bus import ensure_jetstream, make_broker

    broker = make_broker("test", Settings(nats_url=nats_server.url), telemetry=False)
    await ensure_jetstream(broker, settings=Settings(task_retention_s=100, task_queue_max=10))
    await ensure_jetstream(broker, settings=Settings(task_retention_s=50, task_queue_max=20))
    js = broker.connection.jetstream()
    try:
        assert (await js.stream_info(f"KV_{subjects.TASK_STATE_BUCKET}")).config.max_age == 50
        assert (await js.stream_info(subjects.JOBS_STREAM)).config.max_age == 50
        assert (await js.stream_info(subjects.TASKS_STREAM)).config.max_msgs == 20
    finally:
        await broker.stop()
