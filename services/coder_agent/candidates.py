"""Several generations of one job at once, in the engine's batching slots.

Each generation gets its own request id (the first the job's task id, the rest
``<task_id>.<k>``, the sub-ids the agent's cancel reaches too, shared/agent.py) so the
engine can tell them apart; all of them stop together: when one is cancelled or passes
its deadline the rest are cancelled too, and a cancel that reached the agent between
generations (``is_cancelled``) is noticed before the next one starts. A full engine queue (``QueueFull``, other jobs
fill the slots) is waited out up to the deadline rather than failing the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.contracts import AgentJob, Usage
from shared.errors import Cancelled, DeadlineExceeded, QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TextEngine, TokenCallback

CANCEL_POLL_S = 0.2
QUEUE_RETRY_S = 0.5


@dataclass
class Ask:
    """One generation to run: its conversation and how to sample it."""

    messages: list[dict[str, str]]
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    stream: bool = False  # stream its tokens to the task's events (one generation at most)


class CandidateWriter:
    """Runs batches of ``Ask``s for one job and accounts their tokens in ``usage``."""

    def __init__(self, engine: TextEngine, job: AgentJob, usage: Usage, default_max_tokens: int,
                 on_token: TokenCallback | None = None, is_cancelled: Callable[[str], bool] | None = None) -> None:
        self.engine, self.job, self.usage = engine, job, usage
        self.default_max_tokens = default_max_tokens
        self.on_token, self.is_cancelled = on_token, is_cancelled
        self._issued = 0

    def _request_id(self) -> str:
        k = self._issued
        self._issued += 1
        return self.job.task_id if k == 0 else f"{self.job.task_id}.{k}"

    def check_cancelled(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled(self.job.task_id):
            raise Cancelled(f"task {self.job.task_id} cancelled")

    async def run(self, asks: list[Ask]) -> list[GenerationResult]:
        """All ``asks`` at once; results in the same order. Raises Cancelled /
        DeadlineExceeded (the others stopped) or the engine's error."""
        self.check_cancelled()
        done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._one(a, self._request_id())) for a in asks]
                watcher = tg.create_task(self._watch(done))
                await asyncio.gather(*tasks)
                done.set()
                await watcher
        except BaseExceptionGroup as group:  # the first real error, not the siblings' CancelledError
            errors = [e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)]
            raise (errors or list(group.exceptions))[0] from None
        out = [t.result() for t in tasks]
        for r in out:
            self.usage.input_tokens += r.input_tokens
            self.usage.output_tokens += r.output_tokens
            self.usage.seconds += r.seconds
            if self.usage.ttft_s is None:
                self.usage.ttft_s = r.ttft_s
        return out

    async def _watch(self, done: asyncio.Event) -> None:
        while not done.is_set():
            self.check_cancelled()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), CANCEL_POLL_S)

    async def _one(self, ask: Ask, request_id: str) -> GenerationResult:
        req = GenerationRequest(
            messages=ask.messages, max_tokens=ask.max_tokens or self.job.max_tokens or self.default_max_tokens,
            temperature=ask.temperature, seed=ask.seed, deadline=self.job.deadline, request_id=request_id,
        )
        while True:
            try:
                return await self.engine.generate(req, self.on_token if ask.stream else None)
            except QueueFull:
                if self.job.deadline is not None and time.time() + QUEUE_RETRY_S >= self.job.deadline:
                    raise DeadlineExceeded("the model stayed full until the task's deadline") from None
                await asyncio.sleep(QUEUE_RETRY_S)
                self.check_cancelled()
