"""Running one task over the bus for an HTTP request, the way ``syndicate submit`` does:
subscribe to the task's events first, then publish the TaskSubmit (deduplicated by its
Nats-Msg-Id) inside the request's trace context, stream tokens, end on the result
event, and fall back to the KV task state when events go quiet (they are best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import nats
from faststream.nats import NatsBroker
from nats.js.errors import KeyNotFoundError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from shared import subjects
from shared.contracts import (
    FINAL_STATUSES,
    CancelRequest,
    ErrorInfo,
    TaskEvent,
    TaskResult,
    TaskState,
    TaskSubmit,
)
from shared.errors import BusError, QueueFull

tracer = trace.get_tracer("syndicate.gateway")


@dataclass
class Step:
    """What a TaskRun yields: a piece of text, the final result, or the client is gone."""

    kind: Literal["token", "result", "gone"]
    text: str = ""
    result: TaskResult | None = None


GONE = Step("gone")


class TaskRun:
    """One submitted task being followed for one HTTP request."""

    def __init__(self, bridge: TaskBridge, task: TaskSubmit, model: str, span: trace.Span) -> None:
        self.bridge = bridge
        self.task = task
        self.model = model
        self.span = span
        self.queue: asyncio.Queue[Step] = asyncio.Queue()
        self.sub: Any = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.result: TaskResult | None = None
        self.closed = False

    @property
    def deadline(self) -> float:
        """Monotonic time after which the gateway stops waiting for the router."""
        return self.started + self.task.timeout_s + self.bridge.settings.gateway_grace_s

    def on_event(self, event: TaskEvent) -> None:
        if event.type == "token" and event.text:
            self.queue.put_nowait(Step("token", text=event.text))
        elif event.type == "result" and event.result is not None:
            self.queue.put_nowait(Step("result", result=event.result))

    def client_gone(self) -> None:
        self.queue.put_nowait(GONE)

    async def next(self) -> Step:
        """The next token, the result or GONE; polls the KV when events go quiet."""
        poll = self.bridge.settings.gateway_poll_s
        while True:
            try:
                step = await asyncio.wait_for(self.queue.get(), timeout=poll)
            except TimeoutError:
                result = await self.bridge.final_state(self.task.task_id)
                if result is None and time.monotonic() > self.deadline:
                    result = TaskResult(
                        task_id=self.task.task_id, status="timeout", kind=self.task.kind,
                        error=ErrorInfo(code="timeout", message="no result before the deadline"),
                        submitted_at=self.task.submitted_at,
                    )
                if result is None:
                    continue
                step = Step("result", result=result)
            if step.kind == "token" and self.first_token_at is None:
                self.first_token_at = time.monotonic()
                self.bridge.metrics.ttft.labels(self.model).observe(self.first_token_at - self.started)
            if step.kind == "result" and self.result is None:
                self.result = step.result
                assert step.result is not None
                self.bridge.metrics.observe_result(step.result, self.model, time.monotonic() - self.started)
            return step

    async def close(self) -> None:
        """Release the slot; a client that left before the result cancels the task.

        Bookkeeping is synchronous and the bus work detached: when Starlette cancels a
        stream whose client left, every await here would be cancelled again."""
        if self.closed:
            return
        self.closed = True
        self.bridge.release()
        gone = self.result is None
        if gone:
            self.bridge.metrics.cancels.inc()
            self.span.set_attribute("syndicate.client_gone", True)
        else:
            assert self.result is not None
            self.span.set_attribute("syndicate.status", self.result.status)
            if self.result.status != "done":
                self.span.set_status(Status(StatusCode.ERROR, self.result.status))
        self.span.end()
        await self.bridge.detached(self._cleanup(gone))

    async def _cleanup(self, gone: bool) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        if gone:
            with contextlib.suppress(Exception):
                await self.bridge.broker.publish(
                    CancelRequest(task_id=self.task.task_id, reason="client disconnected"), subjects.TASK_CANCEL,
                )


class TaskBridge:
    """Submits tasks and follows them; enforces the gateway's in-flight bound."""

    def __init__(self, broker: NatsBroker, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.inflight = 0
        self._kv: Any = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def nc(self) -> nats.NATS | None:
        """The broker's connection when it is up (None before the first connect)."""
        try:
            nc = self.broker.connection
        except Exception:
            return None
        return nc if getattr(nc, "is_connected", False) else None

    def release(self) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.metrics.inflight.set(self.inflight)

    async def start(self, task: TaskSubmit, model: str, parent: otel_context.Context, endpoint: str) -> TaskRun:
        """Submit ``task`` and return its run (raises QueueFull or BusError)."""
        if self.inflight >= self.settings.gateway_max_inflight:
            self.metrics.rejected.labels("gateway_inflight").inc()
            raise QueueFull(f"the gateway is running {self.inflight} tasks (limit {self.settings.gateway_max_inflight})")
        nc = self.nc
        if nc is None:
            raise BusError("the syndicate's message bus is unreachable")
        self.inflight += 1
        self.metrics.inflight.set(self.inflight)
        nested = trace.get_current_span(parent).is_recording()  # under FastAPI's server span
        span = tracer.start_span(
            f"gateway task {endpoint}", context=parent, kind=SpanKind.INTERNAL if nested else SpanKind.SERVER,
            attributes={"syndicate.task_id": task.task_id, "syndicate.kind": task.kind, "gen_ai.request.model": model},
        )
        run = TaskRun(self, task, model, span)
        try:
            run.sub = await nc.subscribe(subjects.task_events(task.task_id), cb=_forward(run))
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                # Inside the span: FastStream's telemetry middleware makes the publish span
                # its child and carries traceparent in the NATS headers to the router.
                await self.broker.publish(
                    task, subjects.TASK_SUBMIT, stream=subjects.TASKS_STREAM,
                    headers={"Nats-Msg-Id": task.task_id}, timeout=5.0,
                )
            finally:
                otel_context.detach(token)
        except Exception as exc:
            run.result = TaskResult(task_id=task.task_id, status="rejected", kind=task.kind)  # nothing to cancel
            await run.close()
            raise _publish_error(exc) from exc
        return run

    async def final_state(self, task_id: str) -> TaskResult | None:
        """The task's result from the KV when it has one (the events may have been missed)."""
        try:
            if self._kv is None:
                self._kv = await self.broker.connection.jetstream().key_value(subjects.TASK_STATE_BUCKET)
            entry = await self._kv.get(task_id)
        except KeyNotFoundError:
            return None
        except Exception:
            return None  # bus trouble: keep waiting until the deadline
        if entry.value is None:
            return None
        state = TaskState.model_validate_json(entry.value)
        if state.status in FINAL_STATUSES and state.result is not None:
            return state.result
        return None

    async def detached(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as its own task (it survives the request's cancellation) and wait."""
        job = asyncio.get_running_loop().create_task(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)
        await asyncio.shield(job)

    async def drain(self) -> None:
        """Wait for detached cancels before the broker stops."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _forward(run: TaskRun) -> Any:
    async def cb(msg: Any) -> None:
        try:
            run.on_event(TaskEvent.model_validate_json(msg.data))
        except Exception:
            return  # a malformed or newer event: the KV poll still finds the result

    return cb


def _publish_error(exc: BaseException) -> Exception:
    """QueueFull when the TASKS stream refuses more (it discards new), else BusError."""
    text = str(exc).lower()
    if "maximum messages" in text or "resource limits" in text or "storage" in text:
        return QueueFull(f"the task queue is full: {exc}")
    return BusError(f"could not submit the task: {exc}")
