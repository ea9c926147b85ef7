"""Submitting a task and following it to its end, the one way every client does it (the
CLI, the gateway, the evaluator).

Subscribe to the task's events first, then publish the TaskSubmit (deduplicated by its
Nats-Msg-Id; FastStream's telemetry carries the caller's trace context to the router),
hand out the events as they come, and read the final state from the task-state KV when
they go quiet: core-NATS events are best effort, the KV is the truth. A follow that
outlives the task's deadline (plus a grace) ends with a synthesized ``timeout`` result,
so no caller waits forever.

A task submitted with ``review`` pauses in ``input_required``: its follow hands out that
status event with the proposed result (``paused``) and goes on following, since the task
is not over; ``review()`` sends a person's decision (approve, revise, reject) and
``follow()`` picks a task up again afterwards. ``thread()`` reads a conversation.

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
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import ValidationError

from shared import subjects
from shared.bus import publish_review, publish_task, to_error_info
from shared.contracts import (
    FINAL_STATUSES,
    CancelRequest,
    ErrorInfo,
    ReviewDecision,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskSubmit,
    ThreadRecord,
    thread_of,
)
from shared.errors import InvalidPayload, NotFound, WrongState

POLL_S = 2.0  # how long events may go quiet before the KV is read
GRACE_S = 30.0  # how long past the task's deadline a follower waits for the router's verdict
tracer = trace.get_tracer("syndicate.task_client")


class TaskFollow:
    """One submitted task being followed: ``next()`` gives its events, the last one a
    ``result`` event; ``interrupt()`` (the caller lost interest) makes ``next()`` return None.
    A pause for review is an ``input_required`` status event carrying the proposed result
    (kept in ``paused`` until the task moves on); rounds up to ``seen_rounds`` are not
    reported again."""

    def __init__(self, client: TaskClient, task: TaskSubmit, grace_s: float, *, seen_rounds: int = 0) -> None:
        self.client = client
        self.task = task
        # The task's own deadline, wherever the follow starts (a paused task keeps it).
        self.deadline = time.monotonic() + max(0.0, task.submitted_at + task.timeout_s - time.time()) + grace_s
        self.result: TaskResult | None = None
        self.paused: TaskResult | None = None
        self.rounds = seen_rounds
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
                state = await self.client.state(self.task.task_id)
                if (pause := self._pause_in(state)) is not None:
                    event = pause
                    break
                result = final_of(state)
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
            if event is not None and event.status == "input_required":
                if event.result is None or _round(event.result) <= self.rounds:
                    continue  # a pause already reported
                break
            if event is not None and event.type == "status":
                self.paused = None  # the task moved on (a revision runs)
            return event
        self.rounds, self.paused = _round(event.result), event.result  # type: ignore[arg-type]
        return event

    def _pause_in(self, state: TaskState | None) -> TaskEvent | None:
        """A pause the events missed, from the task's record."""
        if state is None or state.status != "input_required" or state.result is None or not state.review:
            return None
        if state.review[-1].n <= self.rounds:
            return None
        return TaskEvent(task_id=self.task.task_id, type="status", status="input_required", result=state.result)

    async def wait(self, *, until_review: bool = False) -> TaskResult | None:
        """Skip to the end: the task's result (None when interrupted first); ``until_review``:
        or to its next pause for review (the proposed result, status ``input_required``)."""
        while (event := await self.next()) is not None and event.type != "result":
            if until_review and event.status == "input_required":
                return self.paused
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
        self._threads: Any = None

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
        return final_of(await self.state(task_id))

    async def follow(self, state: TaskState, *, grace_s: float = GRACE_S) -> TaskFollow:
        """Follow a task submitted earlier (``state``: its record) from now on; a pause
        already in the record is not reported again."""
        follow = TaskFollow(self, state.task, grace_s, seen_rounds=len(state.review))
        follow._sub = await self.broker.connection.subscribe(subjects.task_events(state.task.task_id), cb=follow._on_event)
        return follow

    async def review(self, task_id: str, decision: str, feedback: str = "", *, reviewer: str = "") -> TaskState:
        """Send a person's decision on a task waiting for review (its state as it was).

        Raises NotFound (no such task), WrongState (it does not wait for a review),
        InvalidPayload (a revision without feedback, a feedback too long), or the bus's
        errors. The decision's span continues the task's trace under its pause."""
        state = await self.state(task_id)
        if state is None:
            raise NotFound(f"no task {task_id} (unknown, or past its retention)")
        if state.status != "input_required" or not state.review:
            raise WrongState(f"task {task_id} is not waiting for a review (status {state.status})")
        pause = state.review[-1]
        try:
            message = ReviewDecision(task_id=task_id, decision=decision, feedback=feedback,  # type: ignore[arg-type]
                                     round=pause.n, reviewer=reviewer)
        except ValidationError as exc:
            raise InvalidPayload(to_error_info(exc).message) from exc
        parent = None
        if state.trace_id and pause.span_id:
            span = SpanContext(int(state.trace_id, 16), int(pause.span_id, 16), is_remote=True,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = trace.set_span_in_context(NonRecordingSpan(span))
        with tracer.start_as_current_span("syndicate review", context=parent, attributes={
            "syndicate.task_id": task_id, "syndicate.review.decision": decision, "syndicate.review.round": pause.n,
        }):
            await publish_review(self.broker, message)
        return state

    async def thread(self, key: str) -> ThreadRecord | None:
        """A conversation by its id, or the one the task ``key`` belongs to (None: neither
        is known, or it is past its retention)."""
        record = await self._thread(key)
        if record is None and (state := await self.state(key)) is not None:
            record = await self._thread(thread_of(state))
        return record

    async def _thread(self, thread_id: str) -> ThreadRecord | None:
        try:
            if self._threads is None:
                self._threads = await self.broker.connection.jetstream().key_value(subjects.THREAD_BUCKET)
            entry = await self._threads.get(thread_id)
        except Exception:  # unknown, or an older stack without the bucket
            return None
        return ThreadRecord.model_validate_json(entry.value) if entry is not None and entry.value else None

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> None:
        """Ask the router and the agents to stop the task."""
        await self.broker.publish(CancelRequest(task_id=task_id, reason=reason), subjects.TASK_CANCEL)


def final_of(state: TaskState | None) -> TaskResult | None:
    """A task's result once it ended, else None."""
    if state is None or state.status not in FINAL_STATUSES:
        return None
    return state.result or TaskResult(task_id=state.task.task_id, status=state.status, kind=state.task.kind)


def _round(result: TaskResult) -> int:
    """The review round a proposed result waits on."""
    return result.review[-1].n if result.review else 1
