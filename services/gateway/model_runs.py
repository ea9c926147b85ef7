"""Running one model request (a plain generation on a served model) for one HTTP request,
whatever API it came in by (OpenAI's here, Ollama's in routes/ollama.py): the gateway's
in-flight bound, a span the agent's work joins, TTFT and outcome metrics, and the cancel
when the client goes away.

    run = await start_model_run(gw, GenerateRequest(...), trace_parent(request), "chat")
    try:
        event = await run.next()   # "text", "tool_call" or "done"; raises the generation's error
        ...
    finally:
        await run.close()          # cancels the generation unless it ended
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.gateway.state import Gateway
from shared.contracts import GenerateEvent, GenerateReply, GenerateRequest
from shared.errors import SyndicateError
from shared.generation.client import Generation, ServedModel

tracer = trace.get_tracer("syndicate.gateway")


async def served_model(gw: Gateway, name: str) -> ServedModel | None:
    """The served model called ``name`` (asks the bus again before saying there is none)."""
    models = await gw.models.models()
    if name not in models:
        models = await gw.models.models(fresh=True)
    return models.get(name)


class ModelRun:
    """One model request being followed for one HTTP request."""

    def __init__(self, gw: Gateway, req: GenerateRequest, span: trace.Span) -> None:
        self.gw, self.request, self.span = gw, req, span
        self.generation: Generation | None = None
        self.started = time.monotonic()
        self.first_at: float | None = None
        self.reply: GenerateReply | None = None
        self.outcome = "gone"  # what close() counts: "done", an error code, or "gone" (client left)
        self.closed = False
        self._gone = asyncio.Event()

    def client_gone(self) -> None:
        self._gone.set()

    async def next(self) -> GenerateEvent | None:
        """The next event ("text", "tool_call", "done"), None when the client left first;
        raises the generation's error (QueueFull, DeadlineExceeded, ...)."""
        assert self.generation is not None
        step = asyncio.ensure_future(self.generation.next())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({step, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not step.done():
            step.cancel()
            with contextlib.suppress(BaseException):
                await step
            return None
        try:
            event = step.result()
        except SyndicateError as exc:
            self.outcome = exc.code
            raise
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.gw.metrics.ttft.labels(self.request.model).observe(self.first_at - self.started)
        if event.type == "done":
            self.reply, self.outcome = event.reply, "done"
        return event

    async def close(self) -> None:
        """Release the in-flight place; a generation that has not ended is cancelled.
        (Bookkeeping first and synchronously, the bus work detached: Starlette cancels a
        stream whose client left, and every await here would be cancelled again.)"""
        if self.closed:
            return
        self.closed = True
        self.gw.bridge.release()
        self.gw.metrics.model_requests.labels(self.request.model, self.outcome).inc()
        if self.outcome == "gone":
            self.gw.metrics.cancels.inc()
            self.span.set_attribute("syndicate.client_gone", True)
        elif self.outcome != "done":
            self.span.set_status(Status(StatusCode.ERROR, self.outcome))
        if self.reply is not None:
            self.span.set_attributes({"gen_ai.usage.input_tokens": self.reply.usage.input_tokens,
                                      "gen_ai.usage.output_tokens": self.reply.usage.output_tokens})
        self.span.end()
        if self.generation is not None:
            await self.gw.bridge.detached(self.generation.close())


async def start_model_run(gw: Gateway, req: GenerateRequest, parent: otel_context.Context, endpoint: str) -> ModelRun:
    """Admit and send ``req`` (raises Overloaded at the in-flight bound, ModelUnavailable,
    InvalidPayload, BusError)."""
    gw.bridge.admit()
    nested = trace.get_current_span(parent).is_recording()  # under FastAPI's server span
    span = tracer.start_span(
        f"gateway model {endpoint}", context=parent, kind=SpanKind.INTERNAL if nested else SpanKind.SERVER,
        attributes={"syndicate.request_id": req.request_id, "gen_ai.request.model": req.model},
    )
    run = ModelRun(gw, req, span)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        # Inside the span: the request carries traceparent to the agent's generation.
        run.generation = await gw.models.start(req)
    except BaseException as exc:
        run.outcome = exc.code if isinstance(exc, SyndicateError) else "error"
        await run.close()
        raise
    finally:
        otel_context.detach(token)
    return run


async def watch_disconnect(receive: Any, run: ModelRun) -> None:
    """Tell the run when the client closes the connection (``receive``: the request's)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            run.client_gone()
            return
