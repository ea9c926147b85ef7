"""The event-loop side of an engine: tickets, the bounded queue in front of the slots,
and the hand-off of text pieces and outcomes from the worker thread.

``slots`` requests run and ``queue_limit`` more may wait; the next gets ``QueueFull`` at
once. A waiting request whose deadline passes gets ``DeadlineExceeded``; cancelling a
waiting request removes it (``Cancelled``). A request that ends hands its slot to the
oldest waiter. The worker hands a step's pieces and outcomes to each loop in one
wake-up (``deliver``, through shared/llm/handoff.py), never one per token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.errors import Cancelled, DeadlineExceeded, QueueFull
from shared.llm.base import GenerationRequest, GenerationResult, TokenCallback
from shared.llm.handoff import LoopWaker


@dataclass(eq=False)
class Ticket:
    """One request from ``generate`` to its result."""

    request: GenerationRequest
    request_id: str
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float | None = None
    ready: asyncio.Future | None = None  # set when it may run (it waited in the queue)
    outbox: asyncio.Queue | None = None  # text pieces, then one Outcome
    waker: LoopWaker | None = None  # how the worker reaches the caller's event loop

    def stop(self) -> None:
        """Ask the worker to stop this request before its next decode step."""
        self.cancelled_at = self.cancelled_at or time.monotonic()
        self.cancel.set()


@dataclass
class Outcome:
    result: GenerationResult | None = None
    error: BaseException | None = None


class RequestQueue:
    """Who runs and who waits (event loop side only)."""

    def __init__(self, name: str, slots: int, limit: int) -> None:
        self.name, self.slots, self.limit = name, slots, limit
        self.waiting: deque[Ticket] = deque()  # for a slot
        self.running: set[Ticket] = set()  # handed to the worker
        self.tickets: dict[str, Ticket] = {}  # by request id, waiting or running

    def busy(self) -> bool:
        return len(self.running) >= self.slots or bool(self.waiting)

    def refuse_if_full(self) -> None:
        """Raise ``QueueFull`` when every slot runs and the queue is at its limit."""
        if self.busy() and len(self.waiting) >= self.limit:
            raise QueueFull(
                f"model {self.name} is full ({len(self.running)} running in {self.slots} slots, "
                f"{len(self.waiting)} waiting, limit {self.limit})",
                detail={"queue_depth": len(self.waiting), "queue_limit": self.limit,
                        "running": len(self.running), "slots": self.slots},
            )

    async def take_turn(self, ticket: Ticket, busy: bool) -> None:
        """Run at once (``busy`` False) or wait for a slot, until the request's deadline."""
        if not busy:
            self.running.add(ticket)
            return
        ticket.ready = asyncio.get_running_loop().create_future()
        self.waiting.append(ticket)
        deadline = ticket.request.deadline
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        try:
            await asyncio.wait_for(asyncio.shield(ticket.ready), timeout)
        except TimeoutError:
            self._abandon(ticket)
            raise DeadlineExceeded(
                f"request waited {time.monotonic() - ticket.submitted:.2f}s in the queue of "
                f"{self.name} and passed its deadline", detail={"output_tokens": 0, "text": ""},
            ) from None
        except asyncio.CancelledError:
            self._abandon(ticket)
            raise

    def _abandon(self, ticket: Ticket) -> None:
        """A waiter gives up: leave the queue, or hand on the slot it was just given."""
        if ticket in self.waiting:
            self.waiting.remove(ticket)
        elif ticket in self.running:
            self.release(ticket)

    def drop_if_queued(self, ticket: Ticket) -> None:
        if ticket in self.waiting:
            self.waiting.remove(ticket)
            if ticket.ready is not None and not ticket.ready.done():
                ticket.ready.set_exception(Cancelled(f"request {ticket.request_id} cancelled while queued"))

    def release(self, ticket: Ticket) -> None:
        """A running request is over: give its slot to the next waiter."""
        self.running.discard(ticket)
        while self.waiting and len(self.running) < self.slots:
            nxt = self.waiting.popleft()
            if nxt.ready is not None and not nxt.ready.done():
                self.running.add(nxt)
                nxt.ready.set_result(None)

    def deliver(self, items: list[tuple[Ticket, Any]]) -> None:
        """On the event loop: a step's pieces and outcomes from the worker, in order."""
        for ticket, item in items:
            assert ticket.outbox is not None
            ticket.outbox.put_nowait(item)
            if isinstance(item, Outcome):
                self.release(ticket)


async def relay(ticket: Ticket, on_token: TokenCallback | None) -> GenerationResult:
    """Pass the worker's pieces to ``on_token`` until the outcome; return or raise it."""
    assert ticket.outbox is not None
    try:
        while not isinstance(item := await ticket.outbox.get(), Outcome):
            if on_token is not None and not ticket.cancel.is_set():
                await on_token(item)
    except BaseException:
        # on_token failed or our caller was cancelled: stop the sequence at its next
        # step (the slot is released when the worker has let go of it).
        ticket.stop()
        raise
    if item.error is not None:
        raise item.error
    assert item.result is not None
    return item.result
