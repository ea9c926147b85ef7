"""Self-consistency over the engine's parallel slots: one greedy chain and sampled ones
generated concurrently, each read for its final answer, then a majority vote.

The chains are separate ``engine.generate`` calls, so a batching engine decodes them
together in its slots. Once the leader can no longer be caught by the chains still
running, those are cancelled (an early stop that costs no accuracy). A sampled chain the
engine refuses for a full queue is left out of the vote; the greedy chain is never.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.reasoner_agent.voting import Kind, Vote, decided, final_answer, tally
from shared.errors import QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TextEngine

Progress = Callable[[str], Awaitable[None]]


@dataclass
class ChainsOutcome:
    """What the chains produced: the vote, every finished chain's text and answer, usage."""

    vote: Vote
    texts: list[str | None]
    answers: list[str | None]
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    model: str = ""
    dropped: int = 0  # sampled chains refused by a full engine queue
    stopped_early: int = 0  # chains cancelled because the vote was already decided
    results: list[GenerationResult] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The winning chain's reasoning (the greedy one when it agrees), else greedy's."""
        i = self.vote.winner if self.vote.winner is not None else 0
        return (self.texts[i] or next((t for t in self.texts if t), "")).strip()


def chain_request(base: GenerationRequest, i: int, temperature: float, seed: int) -> GenerationRequest:
    """Chain ``i``: 0 is greedy, the others sampled with their own seed; each gets its own
    request id (``<id>.c<i>``) so the engine tracks and cancels them one by one."""
    return base.model_copy(update={
        "temperature": 0.0 if i == 0 else temperature,
        "seed": None if i == 0 else seed + i,
        "request_id": f"{base.request_id}.c{i}",
    })


async def run_chains(engine: TextEngine, base: GenerationRequest, *, n: int, kind: Kind, letters: str,
                     temperature: float, seed: int, early_stop: bool = True,
                     progress: Progress | None = None) -> ChainsOutcome:
    """Generate ``n`` chains concurrently and vote on their final answers."""
    start = time.monotonic()
    texts: list[str | None] = [None] * n
    answers: list[str | None] = [None] * n
    index: dict[asyncio.Task[GenerationResult], int] = {}
    for i in range(n):
        task = asyncio.create_task(engine.generate(chain_request(base, i, temperature, seed)))
        index[task] = i
    out = ChainsOutcome(vote=tally([]), texts=texts, answers=answers)
    pending = set(index)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=index.__getitem__):
                i = index[task]
                exc = task.exception()
                if isinstance(exc, QueueFull) and i > 0:
                    out.dropped += 1
                    continue
                if exc is not None:
                    raise exc
                res = task.result()
                texts[i], answers[i] = res.text, final_answer(res.text, kind, letters)
                out.results.append(res)
                if progress is not None:
                    await progress(f"reasoning chain {i + 1} of {n}: {answers[i] or 'no final answer'}")
            finished = [answers[i] for t, i in index.items() if t.done() and texts[i] is not None]
            if early_stop and pending and decided(finished, len(pending), answers[0] if texts[0] is not None else None):
                out.stopped_early = len(pending)
                break
    finally:
        for task in pending:
            task.cancel()
        # Collect every outcome (also the errors not raised) so none is reported as lost.
        await asyncio.gather(*index, return_exceptions=True)
    ran = [i for i in range(n) if texts[i] is not None]
    vote = tally([answers[i] for i in ran], prefer=ran.index(0) if 0 in ran else -1)
    out.vote = Vote(vote.answer, vote.votes, vote.counted, vote.chains,
                    ran[vote.winner] if vote.winner is not None else None)
    out.input_tokens = sum(r.input_tokens for r in out.results)
    out.output_tokens = sum(r.output_tokens for r in out.results)
    out.model = out.results[0].model if out.results else ""
    out.seconds = time.monotonic() - start
    return out
