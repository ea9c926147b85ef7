"""AgentRuntime.take: jobs start only into free engine slots, each message is acked when
its job returns, nak'ed (with backoff) when it raises, nak'ed at once when the agent stops."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.nats import NatsBroker

from shared.agent import AgentRuntime
from shared.llm.base import ScriptedEngine
from shared.service import ServiceRuntime
from shared.settings import Settings


class FakeMsg:
    """What the agent uses of a FastStream NatsMessage (JetStream metadata for the backoff)."""

    def __init__(self) -> None:
        self.acks: list[str] = []
        self.raw_message = self

    async def ack(self) -> None:
        self.acks.append("ack")

    async def nack(self) -> None:
        self.acks.append("nak")

    async def nak(self, delay: float | None = None) -> None:
        self.acks.append(f"nak-later:{delay}")

    async def in_progress(self) -> None:
        self.acks.append("progress")

    @property
    def metadata(self) -> Any:
        raise AttributeError


async def agent_with(slots: int) -> AgentRuntime:
    agent = AgentRuntime("reasoner", NatsBroker(), ServiceRuntime("reasoner-agent", Settings()))
    await agent.load(Settings(), ScriptedEngine(["x"], slots=slots))
    return agent


async def test_jobs_run_together_up_to_the_free_slots_and_are_acked() -> None:
    agent = await agent_with(2)
    gate, running, most = asyncio.Event(), 0, 0

    async def job() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1

    msgs = [FakeMsg() for _ in range(3)]
    await agent.take(msgs[0], job)
    await agent.take(msgs[1], job)  # both started: take() returned at once
    third = asyncio.create_task(agent.take(msgs[2], job))
    await asyncio.sleep(0.2)
    assert not third.done() and most == 2  # no free slot for the third yet
    gate.set()
    await asyncio.wait_for(third, 5)
    await asyncio.gather(*agent.jobs)
    assert most == 2
    assert all(m.acks[-1] == "ack" for m in msgs)


async def test_a_failing_job_is_redelivered_later_and_a_stopping_agent_hands_jobs_back() -> None:
    agent = await agent_with(2)
    failing, stopped = FakeMsg(), FakeMsg()

    async def boom() -> None:
        raise RuntimeError("model crashed")

    await agent.take(failing, boom)
    await asyncio.gather(*agent.jobs, return_exceptions=True)
    assert failing.acks[-1].startswith("nak-later")
    await agent.take(stopped, lambda: asyncio.sleep(60))
    await agent.stop_jobs()
    assert stopped.acks[-1] == "nak" and not agent.jobs
