"""Running one task over the bus for an HTTP request with the shared task client (as
``syndicate submit`` does), inside the request's trace context: stream its tokens, end on
its result, count it in the gateway's metrics and bound how many run at once.
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
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from shared.contracts import (
    TaskResult,
    TaskSubmit,
)
from shared.errors import BusError, NotFound, Overloaded
from shared.task_client import TaskClient, TaskFollow

tracer = trace.get_tracer("syndicate.gateway")


@dataclass
class Step:
    """What a TaskRun yields: a piece of text, the final result, or the client is gone (and,
    for a run that asked for them, a ``progress`` note: a status change or an agent's report;
    ``input_required``: the task waits for a review, ``result`` is the proposed one)."""

    kind: Literal["token", "result", "gone", "progress", "input_required"]
    text: str = ""
    result: TaskResult | None = None


GONE = Step("gone")


class TaskRun:
    """One submitted task being followed for one HTTP request."""

    def __init__(self, bridge: TaskBridge, task: TaskSubmit, model: str, span: trace.Span, progress: bool = False) -> None:
        self.bridge = bridge
        self.progress = progress
        self.task = task
        self.model = model
        self.span = span
        self.follow: TaskFollow | None = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.result: TaskResult | None = None
        self.closed = False

    def client_gone(self) -> None:
        if self.follow is not None:
            self.follow.interrupt()

    async def next(self) -> Step:
        """The next token, the result or GONE (the task client reads the KV when events go quiet);
        progress notes too when the run was started with ``progress``."""
        assert self.follow is not None
        while True:
            event = await self.follow.next()
            if event is None:
                return GONE
            if event.type == "token" and event.text:
                step = Step("token", text=event.text)
                break
            if event.type == "result" and event.result is not None:
                step = Step("result", result=event.result)
                break
            if event.status == "input_required" and event.result is not None:
                return Step("input_required", result=event.result)
            if self.progress and event.type in ("status", "progress"):
                note = event.text if event.type == "progress" else " ".join(filter(None, (event.status, event.step or event.text)))
                return Step("progress", text=note)
        if step.kind == "token" and self.first_token_at is None:
            self.first_token_at = time.monotonic()
            self.bridge.metrics.ttft.labels(self.model).observe(self.first_token_at - self.started)
        if step.kind == "result" and self.result is None:
            self.result = step.result
            assert step.result is not None
            self.bridge.metrics.observe_result(step.result, self.model, time.monotonic() - self.started)
        return step

    async def close(self, *, keep_running: bool = False) -> None:
        """Release the slot; a client that left before the result cancels the task, unless
        ``keep_running`` (an A2A task outlives its caller's connection: GetTask finds it) or
        the task waits for a review (whoever decides it, from wherever).

        Bookkeeping is synchronous and the bus work detached: when Starlette cancels a
        stream whose client left, every await here would be cancelled again."""
        if self.closed:
            return
        self.closed = True
        self.bridge.release()
        paused = self.follow is not None and self.follow.paused is not None
        gone = self.result is None and not keep_running and not paused
        if paused and self.result is None:
            self.span.set_attribute("syndicate.status", "input_required")
        if gone:
            self.bridge.metrics.cancels.inc()
            self.span.set_attribute("syndicate.client_gone", True)
        elif self.result is not None:
            self.span.set_attribute("syndicate.status", self.result.status)
            if self.result.status != "done":
                self.span.set_status(Status(StatusCode.ERROR, self.result.status))
        self.span.end()
        await self.bridge.detached(self._cleanup(gone))

    async def _cleanup(self, gone: bool) -> None:
        if self.follow is not None:
            await self.follow.close()
        if gone and self.follow is not None:  # submitted, then abandoned: stop the work
            with contextlib.suppress(Exception):
                await self.bridge.client.cancel(self.task.task_id, "client disconnected")


class TaskBridge:
    """Submits tasks and follows them; enforces the gateway's in-flight bound."""

    def __init__(self, broker: NatsBroker, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.broker = broker
        self.settings = settings
        self.metrics = metrics
        self.client = TaskClient(broker, poll_s=settings.gateway_poll_s)
        self.inflight = 0
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def nc(self) -> nats.NATS | None:
        """The broker's connection when it is up (None before the first connect)."""
        try:
            nc = self.broker.connection
        except Exception:
            return None
        return nc if getattr(nc, "is_connected", False) else None

    def admit(self) -> None:
        """Take one of the gateway's in-flight places (tasks and model requests share them);
        raises Overloaded when none is free, BusError while the bus is down."""
        if self.inflight >= self.settings.gateway_max_inflight:
            self.metrics.rejected.labels("gateway_inflight").inc()
            raise Overloaded(f"the gateway is running {self.inflight} requests (limit {self.settings.gateway_max_inflight})")
        if self.nc is None:
            raise BusError("the syndicate's message bus is unreachable")
        self.inflight += 1
        self.metrics.inflight.set(self.inflight)

    def release(self) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.metrics.inflight.set(self.inflight)

    async def start(
        self, task: TaskSubmit, model: str, parent: otel_context.Context, endpoint: str, *, progress: bool = False,
    ) -> TaskRun:
        """Submit ``task`` and return its run (raises Overloaded, InvalidPayload or BusError);
        ``progress``: its ``next()`` also gives progress notes."""
        run = self._open(task, model, parent, endpoint, progress)
        token = otel_context.attach(trace.set_span_in_context(run.span, parent))
        try:
            # Inside the span: FastStream's telemetry middleware makes the publish span
            # its child and carries traceparent in the NATS headers to the router.
            run.follow = await self.client.submit(task, grace_s=self.settings.gateway_grace_s)
        except BaseException:
            run.result = TaskResult(task_id=task.task_id, status="rejected", kind=task.kind)  # nothing to cancel
            await run.close()
            raise
        finally:
            otel_context.detach(token)
        return run

    async def review(self, task_id: str, decision: str, feedback: str, model: str, parent: otel_context.Context,
                     endpoint: str, *, reviewer: str = "", progress: bool = False) -> TaskRun:
        """Send a review decision on a paused task and follow it to its next pause or its
        end (raises NotFound, WrongState, InvalidPayload, Overloaded or BusError)."""
        state = await self.client.state(task_id)
        if state is None:
            raise NotFound(f"no task {task_id} (unknown, or past its retention)")
        run = self._open(state.task, model, parent, f"review {endpoint}", progress)
        token = otel_context.attach(trace.set_span_in_context(run.span, parent))
        try:
            run.follow = await self.client.follow(state, grace_s=self.settings.gateway_grace_s)
            await self.client.review(task_id, decision, feedback, reviewer=reviewer)
        except BaseException:
            run.result = state.result or TaskResult(task_id=task_id, status="rejected", kind=state.task.kind)
            await run.close(keep_running=True)  # a refused decision leaves the task as it was
            raise
        finally:
            otel_context.detach(token)
        return run

    def _open(self, task: TaskSubmit, model: str, parent: otel_context.Context, endpoint: str,
              progress: bool) -> TaskRun:
        """A run in one of the gateway's in-flight slots, with its span (Overloaded, BusError)."""
        self.admit()
        nested = trace.get_current_span(parent).is_recording()  # under FastAPI's server span
        span = tracer.start_span(
            f"gateway task {endpoint}", context=parent, kind=SpanKind.INTERNAL if nested else SpanKind.SERVER,
            attributes={"syndicate.task_id": task.task_id, "syndicate.kind": task.kind, "gen_ai.request.model": model},
        )
        return TaskRun(self, task, model, span, progress)

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
