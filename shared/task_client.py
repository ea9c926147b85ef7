"""Submitting a task and following it to its end, the one way every client does it (the
CLI, the gateway, the evaluator).

Subscribe to the task's events first, then publish the TaskSubmit (deduplicated by its
Nats-Msg-Id; FastStream's telemetry carries the caller's trace context to the router),
hand out the events as they come, and read the final state from the task-state KV when
they go quiet: core-NATS events are best effort, the KV is the truth. A follow that
outlives the task's deadline (plus a grace) ends with a synthesized ``timeout`` result,
so no caller waits forever.

Errors: a full task queue raises ``Overloaded`` (the one back-pressure error, from
JetStream's error code, never from message text), a task over the bus's size limit
``InvalidPayload``, an unreachable bus ``BusError`` — all from ``shared.bus.publish_task``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from faststream.nats import NatsBroker

from shared import subjects
from shared.bus import publish_task
from shared.contracts import (
    FINAL_STATUSES,
    CancelRequest,
    ErrorInfo,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskSubmit,
)

POLL_S = 2.0  # how long events may go quiet before the KV is read
GRACE_S = 30.0  # how long past the task's deadline a follower waits for the router's verdict


class TaskFollow:
    """One submitted task being followed: ``next()`` gives its events, the last one a
    ``result`` event; ``interrupt()`` (the caller lost interest) makes ``next()`` return None."""

    def __init__(self, client: TaskClient, task: TaskSubmit, grace_s: float) -> None:
        self.client = client
        self.task = task
        self.deadline = time.monotonic() + task.timeout_s + grace_s
        self.result: TaskResult | None = None
        self._queue: asyncio.Queue[TaskEvent | None] = asyncio.Queue()
        self._sub: Any = None

    async def _on_event(self, msg: Any) -> None:
        try:
            self._queue.put_nowait(TaskEvent.model_validate_json(msg.data))
        except ValueError:
            return  # a malformed or newer event: the KV still has the result

    def interrupt(self) -> None:
        """Stop following: a waiting or later ``next()`` returns None."""
        self._queue.put_nowait(None)

    async def next(self) -> TaskEvent | None:
        """The next event (a ``result`` event once the task ended), or None when interrupted
        or already ended."""
        if self.result is not None:
            return None
        while True:
            try:
                event = await asyncio.wait_for(self._queue.get(), timeout=self.client.poll_s)
            except TimeoutError:
                result = await self.client.final(self.task.task_id)
                if result is None and time.monotonic() > self.deadline:
                    result = TaskResult(
                        task_id=self.task.task_id, status="timeout", kind=self.task.kind,
                        error=ErrorInfo(code="timeout", message="no result before the deadline"),
                        submitted_at=self.task.submitted_at,
                    )
                if result is None:
                    continue
                event = TaskEvent(task_id=self.task.task_id, type="result", status=result.status, result=result)
            if event is not None and event.type == "result":
                if event.result is None:
                    continue
                self.result = event.result
            return event

    async def wait(self) -> TaskResult | None:
        """Skip to the end: the task's result (None when interrupted first)."""
        while (event := await self.next()) is not None and event.type != "result":
            pass
        return self.result

    async def __aiter__(self) -> AsyncIterator[TaskEvent]:
        while (event := await self.next()) is not None:
            yield event
            if event.type == "result":
                return

    async def close(self) -> None:
        """Stop receiving events (unread events would hold up the connection's drain)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


class TaskClient:
    """Tasks over one started broker."""

    def __init__(self, broker: NatsBroker, *, poll_s: float = POLL_S) -> None:
        self.broker = broker
        self.poll_s = poll_s
        self._kv: Any = None

    async def submit(self, task: TaskSubmit, *, grace_s: float = GRACE_S) -> TaskFollow:
        """Publish ``task`` and follow it (raises Overloaded, InvalidPayload or BusError;
        then nothing is left subscribed)."""
        follow = TaskFollow(self, task, grace_s)
        follow._sub = await self.broker.connection.subscribe(subjects.task_events(task.task_id), cb=follow._on_event)
        try:
            await publish_task(self.broker, task)
        except BaseException:
            await follow.close()
            raise
        return follow

    async def attach(self, task: TaskSubmit, *, grace_s: float = GRACE_S) -> TaskFollow:
        """Follow a task submitted earlier, by anyone (``task`` as its state records it): its
        events from now on, its result from the KV when they go quiet. A task that ended
        just before shows up at the first KV read."""
        follow = TaskFollow(self, task, grace_s)
        left = max(0.0, task.submitted_at + task.timeout_s - time.time())
        follow.deadline = time.monotonic() + left + grace_s
        follow._sub = await self.broker.connection.subscribe(subjects.task_events(task.task_id), cb=follow._on_event)
        return follow

    async def run(self, task: TaskSubmit, *, grace_s: float = GRACE_S) -> TaskResult:
        """Submit ``task`` and wait for its result."""
        follow = await self.submit(task, grace_s=grace_s)
        try:
            result = await follow.wait()
        finally:
            await follow.close()
        assert result is not None  # nobody else can interrupt this follow
        return result

    async def state(self, task_id: str) -> TaskState | None:
        """The router's record of a task, or None (unknown, or past its retention)."""
        try:
            if self._kv is None:
                self._kv = await self.broker.connection.jetstream().key_value(subjects.TASK_STATE_BUCKET)
            entry = await self._kv.get(task_id)
        except Exception:  # not written yet, or bus trouble: the caller keeps waiting
            return None
        return TaskState.model_validate_json(entry.value) if entry is not None and entry.value else None

    async def final(self, task_id: str) -> TaskResult | None:
        """The task's result once it ended, else None."""
        state = await self.state(task_id)
        if state is None or state.status not in FINAL_STATUSES:
            return None
        return state.result or TaskResult(task_id=task_id, status=state.status, kind=state.task.kind)  # type: ignore[arg-type]

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> None:
        """Ask the router and the agents to stop the task."""
        await self.broker.publish(CancelRequest(task_id=task_id, reason=reason), subjects.TASK_CANCEL)
