"""Several generations of one job at once, in the engine's batching slots, each handed
back the moment it ends (so its checks run while the others still generate).

Each generation gets its own request id (the first the job's task id, the rest
``<task_id>.<k>``, the sub-ids the agent's cancel reaches too, shared/agent.py) so the
engine can tell them apart. When one fails (a cancel, the deadline, an engine error) the
rest are cancelled too, and so are those still running when the job stops early (the
evidence decided); a cancel that reached the agent (``is_cancelled``) is noticed while
waiting. A full engine queue (``QueueFull``, other jobs fill the slots) is waited out up
to the deadline rather than failing the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import AgentJob, Usage
from shared.errors import Cancelled, DeadlineExceeded, QueueFull, SyndicateError
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
    stop: list[str] = field(default_factory=list)
    optional: bool = False  # an engine error (not a cancel or the deadline) gives an empty text
    # Stop early once the text so far is enough (the test writer: its first tests); the
    # text up to then is the result, finish reason "stop".
    enough: Callable[[str], bool] | None = None


class CandidateWriter:
    """Runs the ``Ask``s of one job and accounts their tokens in ``usage``.

    ``add`` starts a generation tagged with anything; ``next`` returns the next one to end
    as ``(tag, result)`` (None when none is running); ``stop`` cancels those still running.
    Use it as an async context manager so nothing outlives the job."""

    def __init__(self, engine: TextEngine, job: AgentJob, usage: Usage, default_max_tokens: int,
                 on_token: TokenCallback | None = None, is_cancelled: Callable[[str], bool] | None = None) -> None:
        self.engine, self.job, self.usage = engine, job, usage
        self.default_max_tokens = default_max_tokens
        self.on_token, self.is_cancelled = on_token, is_cancelled
        self._issued = 0
        self._running: dict[asyncio.Task[GenerationResult], Any] = {}

    async def __aenter__(self) -> CandidateWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> int:
        return len(self._running)

    def _request_id(self) -> str:
        k = self._issued
        self._issued += 1
        return self.job.task_id if k == 0 else f"{self.job.task_id}.{k}"

    def check_cancelled(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled(self.job.task_id):
            raise Cancelled(f"task {self.job.task_id} cancelled")

    def add(self, ask: Ask, tag: Any) -> None:
        """Start one generation now."""
        self.check_cancelled()
        self._running[asyncio.create_task(self._one(ask, self._request_id()))] = tag

    async def next(self) -> tuple[Any, GenerationResult] | None:
        """The next generation to end, with its tag; raises its error (the others keep
        running until ``stop``), Cancelled when the task was cancelled."""
        while self._running:
            self.check_cancelled()
            done, _ = await asyncio.wait(self._running, timeout=CANCEL_POLL_S, return_when=asyncio.FIRST_COMPLETED)
            if done:
                task = min(done, key=lambda t: list(self._running).index(t))  # the earliest asked first
                tag = self._running.pop(task)
                result = task.result()  # raises the generation's error
                self.usage.input_tokens += result.input_tokens
                self.usage.output_tokens += result.output_tokens
                self.usage.seconds += result.seconds
                if self.usage.ttft_s is None:
                    self.usage.ttft_s = result.ttft_s
                return tag, result
        return None

    async def stop(self) -> None:
        """Cancel every generation still running and wait until they let go."""
        tasks = list(self._running)
        self._running.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def run(self, asks: list[Ask]) -> list[GenerationResult]:
        """All ``asks`` at once; results in the same order."""
        for i, ask in enumerate(asks):
            self.add(ask, i)
        out: dict[int, GenerationResult] = {}
        try:
            while (item := await self.next()) is not None:
                out[item[0]] = item[1]
        finally:
            await self.stop()
        return [out[i] for i in range(len(asks))]

    async def _one(self, ask: Ask, request_id: str) -> GenerationResult:
        req = GenerationRequest(
            messages=ask.messages, max_tokens=ask.max_tokens or self.job.max_tokens or self.default_max_tokens,
            temperature=ask.temperature, seed=ask.seed, deadline=self.job.deadline, request_id=request_id,
            stop=list(ask.stop),
        )
        on_token = self.on_token if ask.stream else None
        if ask.enough is not None:
            on_token = _Enough(ask.enough, on_token, lambda: self.engine.cancel(request_id))
        while True:
            start = time.monotonic()
            try:
                return await self.engine.generate(req, on_token)
            except Cancelled as e:
                if isinstance(on_token, _Enough) and on_token.stopped:
                    return on_token.result(e, self.engine.name, time.monotonic() - start)
                raise
            except DeadlineExceeded:
                raise
            except QueueFull:
                if self.job.deadline is not None and time.time() + QUEUE_RETRY_S >= self.job.deadline:
                    raise DeadlineExceeded("the model stayed full until the task's deadline") from None
                await asyncio.sleep(QUEUE_RETRY_S)
                self.check_cancelled()
            except SyndicateError:
                if not ask.optional:
                    raise
                return GenerationResult(text="", model=self.engine.name)


class _Enough:
    """An on_token that cancels its own request once ``enough(text so far)``; the cancel's
    error then becomes the result (the text up to the stop)."""

    def __init__(self, enough: Callable[[str], bool], then: TokenCallback | None, cancel: Callable[[], bool]) -> None:
        self.enough, self.then, self.cancel = enough, then, cancel
        self.pieces: list[str] = []
        self.stopped = False

    async def __call__(self, piece: str) -> None:
        if self.stopped:
            return
        self.pieces.append(piece)
        if self.then is not None:
            await self.then(piece)
        if self.enough("".join(self.pieces)):
            self.stopped = True  # set first: the cancel's error is ours to turn into the result
            self.cancel()

    def result(self, error: Cancelled, model: str, seconds: float) -> GenerationResult:
        text = "".join(self.pieces)  # what we saw: the engine may have made a token more
        return GenerationResult(text=text, model=model, input_tokens=int(error.detail.get("input_tokens", 0)),
                                output_tokens=int(error.detail.get("output_tokens", len(self.pieces))),
                                seconds=seconds, finish_reason="stop")
