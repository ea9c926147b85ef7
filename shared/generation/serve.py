"""``ModelServer``: the agent side of model requests. A process that loads a model (an
agent, the router's classifier) serves it as a model: once loaded it subscribes to
``model_generate(<its model>)`` in the model's queue group (several copies serve one name),
answers ``GenerateAccepted`` at once and runs the generation on its own engine — in the
same slots and bounded queue as its agent work, pinned, traced — streaming
``GenerateEvent``s to ``model_events(request_id)``: text pieces, complete checked tool
calls, a keepalive every ``keepalive_s`` while nothing else is sent, then ``done`` with the
whole ``GenerateReply`` or one ``error``. ``GenerateCancel`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import structlog
from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from shared import subjects
from shared.bus import instance_id, to_error_info
from shared.contracts import (
    ChatTurn,
    ErrorReply,
    GenerateAccepted,
    GenerateCancel,
    GenerateChoice,
    GenerateEvent,
    GenerateReply,
    GenerateRequest,
    InvalidToolCall,
    ToolCall,
    Usage,
)
from shared.errors import (
    EngineError,
    InvalidPayload,
    ModelUnavailable,
    SyndicateError,
    ToolCallInvalid,
)
from shared.generation import tool_calls as tc
from shared.llm.base import GenerationRequest, GenerationResult, TextEngine
from shared.metrics import ServiceMetrics

KEEPALIVE_S = 2.0  # a generation silent this long sends a keepalive (clients give up after a few missed)
UNBOUNDED_TOKENS = 32_768  # max_tokens None: the engine stops where the context ends
log = structlog.get_logger("model-server")
tracer = trace.get_tracer("syndicate.generation")


class ModelServer:
    """Serves one process's engine to model requests (see the module docstring)."""

    def __init__(self, broker: NatsBroker, service: str, metrics: ServiceMetrics | None = None, *,
                 instance: str | None = None, keepalive_s: float = KEEPALIVE_S) -> None:
        self.broker = broker
        self.service = service
        self.instance = instance or instance_id(service)
        self.metrics = metrics
        self.keepalive_s = keepalive_s
        self.engine: TextEngine | None = None
        self.model = ""
        self.live: dict[str, asyncio.Task[None]] = {}  # request id -> its generation
        self._subs: list[Any] = []

    async def serve(self, engine: TextEngine) -> None:
        """Start answering requests for ``engine``'s model (call once it is loaded)."""
        self.engine, self.model = engine, engine.name
        # Subscribed at run time (the model is known once loaded): FastStream's middlewares
        # still apply (trace context from the caller, ErrorReply for an invalid payload).
        request_sub = self.broker.subscriber(subjects.model_generate(self.model), queue=subjects.model_queue(self.model),
                                             persistent=False, include_in_schema=False)
        request_sub(self.on_request)
        cancel_sub = self.broker.subscriber(subjects.MODEL_CANCEL, persistent=False, include_in_schema=False)
        cancel_sub(self.on_cancel)
        for sub in (request_sub, cancel_sub):
            await sub.start()
            self._subs.append(sub)
        log.info("serving model requests", model=self.model, subject=subjects.model_generate(self.model))

    async def stop(self) -> None:
        """Stop taking requests; running generations end with an error event."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.stop()
        self._subs.clear()
        running = list(self.live.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # --- handlers -------------------------------------------------------------------------
    async def on_request(self, req: GenerateRequest) -> GenerateAccepted | ErrorReply:
        """Accept a request and start its generation in the background."""
        problem = self.refuse(req)
        if problem is not None:
            self._count(req, problem.code)
            return ErrorReply(error=to_error_info(problem))
        if req.request_id in self.live:
            return ErrorReply(error=to_error_info(InvalidPayload(f"request {req.request_id} is already running")))
        span = tracer.start_span(f"generate {self.model}", kind=trace.SpanKind.SERVER, attributes={
            "gen_ai.operation.name": "chat" if req.messages else "text_completion",
            "gen_ai.request.model": self.model, "syndicate.request_id": req.request_id,
            "gen_ai.request.max_tokens": req.max_tokens or 0, "gen_ai.request.temperature": req.temperature,
            "syndicate.tools": len(req.tools), "syndicate.choices": req.n,
        })
        task = asyncio.create_task(self._run(req, span))
        self.live[req.request_id] = task
        task.add_done_callback(lambda _: self.live.pop(req.request_id, None))
        return GenerateAccepted(request_id=req.request_id, model=self.model, service=self.service, instance=self.instance)

    async def on_cancel(self, msg: GenerateCancel) -> None:
        if msg.request_id in self.live and self.engine is not None:
            self.engine.cancel(msg.request_id)  # MeteredEngine also stops "<id>.<n>" (n > 1)

    def refuse(self, req: GenerateRequest) -> SyndicateError | None:
        """Why this server cannot take ``req`` (checked before accepting it), or None."""
        if self.engine is None:
            return ModelUnavailable(f"{self.service} has no model loaded")
        if req.model != self.model and subjects.model_token(req.model) != subjects.model_token(self.model):
            return InvalidPayload(f"this server holds {self.model!r}, not {req.model!r}")
        for schema, what in [(req.json_schema, "json_schema")] + [(t.parameters, f"tool {t.name}") for t in req.tools]:
            if schema is not None and (err := tc.schema_error(schema)):
                return InvalidPayload(f"{what} is not a valid JSON schema: {err}")
        return None

    # --- one generation -------------------------------------------------------------------
    async def _run(self, req: GenerateRequest, span: trace.Span) -> None:
        events = _Events(self, req)
        keepalive = asyncio.create_task(events.keep_alive())
        try:
            with trace.use_span(span, end_on_exit=False):
                reply = await self._generate(req, events)
            reply.trace_id = format(span.get_span_context().trace_id, "032x")
            span.set_attributes({
                "gen_ai.usage.input_tokens": reply.usage.input_tokens,
                "gen_ai.usage.output_tokens": reply.usage.output_tokens,
                "gen_ai.response.finish_reasons": [c.finish_reason for c in reply.choices],
            })
            await events.send(GenerateEvent(request_id=req.request_id, type="done", reply=reply))
            self._count(req, "done")
        except BaseException as exc:
            # Cancelled (the agent is stopping): the client hears it now, not after a silence.
            error = exc if isinstance(exc, Exception) else ModelUnavailable(f"{self.service} stopped while generating")
            info = to_error_info(error)
            span.set_status(Status(StatusCode.ERROR, info.code))
            span.set_attribute("error.type", info.code)
            with contextlib.suppress(Exception):
                await events.send(GenerateEvent(request_id=req.request_id, type="error", error=info))
            self._count(req, info.code)
            if not isinstance(exc, Exception):
                raise
            if not isinstance(exc, EngineError | InvalidPayload):
                log.exception("model request failed", request_id=req.request_id)
        finally:
            keepalive.cancel()
            span.end()

    async def _generate(self, req: GenerateRequest, events: _Events) -> GenerateReply:
        assert self.engine is not None
        engine = self.engine
        native = tc.template_speaks_tools(getattr(engine, "chat_template", "") or "")
        use_tools = bool(req.tools) and req.tool_choice != "none"
        seed = req.seed if req.seed is not None else random.getrandbits(31)
        results: list[GenerationResult | None] = [None] * req.n
        choices = [_Choice(i, req, use_tools) for i in range(req.n)]

        async def one(i: int) -> None:
            choice = choices[i]

            async def on_token(piece: str) -> None:
                for event in choice.feed(piece):
                    await events.send(event)

            # Off the event loop: a grammar from large schemas takes a while to build.
            greq = await asyncio.to_thread(self.engine_request, req, i, seed + i, native=native, use_tools=use_tools)
            results[i] = first = await engine.generate(greq, on_token)
            for event in choice.close():
                await events.send(event)
            messages = choice.second_try()  # only calls that cannot be handed back: once more, for an answer
            if messages is not None:
                again = req.model_copy(update={"messages": messages})
                greq = self.engine_request(again, i, seed + i, native=native, use_tools=use_tools)
                greq.grammar = tc.NO_CALL_GRAMMAR
                second = await engine.generate(greq, on_token)
                results[i] = _added(first, second)
                for event in choice.close():
                    await events.send(event)
            for event in choice.release():
                await events.send(event)

        if req.n == 1:
            await one(0)
        else:
            try:
                async with asyncio.TaskGroup() as group:
                    for i in range(req.n):
                        group.create_task(one(i))
            except* Exception as grouped:  # the first failure is the answer (QueueFull, ...)
                raise grouped.exceptions[0] from None
        done = [r for r in results if r is not None]
        return GenerateReply(
            request_id=req.request_id, model=self.model, service=self.service, instance=self.instance,
            choices=[c.result(r) for c, r in zip(choices, done, strict=True)],
            usage=Usage(model=self.model, input_tokens=done[0].input_tokens if done else 0,
                        output_tokens=sum(r.output_tokens for r in done),
                        seconds=max((r.seconds for r in done), default=0.0),
                        ttft_s=min((r.ttft_s for r in done if r.ttft_s is not None), default=None)),
            tokens_per_s=sum(r.tokens_per_s for r in done) / len(done) if done else 0.0,
        )

    def engine_request(self, req: GenerateRequest, i: int, seed: int, *, native: bool, use_tools: bool) -> GenerationRequest:
        """The engine's request for choice ``i`` of ``req``."""
        fields: dict[str, Any] = {}
        if req.prompt is not None:
            fields["prompt"] = req.prompt
            messages: list[dict[str, Any]] = []
        else:
            messages = tc.chat_messages(req.messages, req.tools if use_tools else [], native=native)
            if native and use_tools:
                fields["tools"] = [tc.tool_json(t) for t in req.tools]
        try:  # a schema llama.cpp's converter cannot express is the caller's problem: say so
            if use_tools and req.tool_choice in ("required", "function"):
                tools = req.tools if req.tool_choice == "required" else [t for t in req.tools if t.name == req.tool_name]
                fields["grammar"] = tc.call_grammar(tools, parallel=req.parallel_tool_calls and req.tool_choice == "required")
            if req.json_schema is not None:
                tc.schema_grammar(req.json_schema)
        except Exception as exc:
            raise InvalidPayload(f"the JSON schema cannot be turned into a grammar: {exc}") from exc
        stop = list(req.stop)
        if use_tools and not req.parallel_tool_calls:
            stop.append(tc.CLOSE)  # one call: stop where it closes (the parser reads it unclosed)
        for name in ("top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"):
            if getattr(req, name) is not None:
                fields[name] = getattr(req, name)
        known = GenerationRequest.model_fields
        missing = [k for k in fields if k not in known]
        if missing:  # an engine interface without these fields cannot honour the request
            raise InvalidPayload(f"this engine does not support {', '.join(missing)}")
        return GenerationRequest(
            messages=messages, max_tokens=req.max_tokens or UNBOUNDED_TOKENS, temperature=req.temperature,
            seed=seed, stop=stop, json_schema=req.json_schema, deadline=req.deadline,
            request_id=req.request_id if req.n == 1 else f"{req.request_id}.{i}", **fields,
        )

    def _count(self, req: GenerateRequest, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.counter("syndicate_model_requests", "Model requests served, by outcome",
                                 ("model", "outcome")).labels(self.model or req.model, outcome).inc()


class _Choice:
    """One choice of a generation: its text and tool calls as they stream."""

    def __init__(self, index: int, req: GenerateRequest, use_tools: bool) -> None:
        self.index, self.req = index, req
        self.parser = tc.CallParser(req.tools) if use_tools else None
        self.required = use_tools and req.tool_choice in ("required", "function")
        self.text: list[str] = []
        self.calls: list[ToolCall] = []
        self.invalid: list[InvalidToolCall] = []
        # tool_choice auto: calls the conversation already answered are held back (see
        # tool_calls.REPEAT_NOTE); forced calls are what the caller asked for.
        self.answered = tc.answered_calls(req.messages) if use_tools and req.tool_choice == "auto" else set()
        self.repeats: list[ToolCall] = []
        # tool_choice auto: calls of tools the request does not offer are held back until the
        # choice ends: alone, they get a second try (tool_calls.unknown_tool_note); beside an
        # answer or a call, they are handed on as flagged text, as any other invalid call.
        self.offered = {t.name for t in req.tools} if use_tools and req.tool_choice == "auto" else None
        self.unknown: list[tc.Piece] = []

    def feed(self, piece: str) -> list[GenerateEvent]:
        if self.parser is None:
            self.text.append(piece)
            return [self._event(text=piece)] if self.req.stream and piece else []
        return self._events(self.parser.feed(piece))

    def close(self) -> list[GenerateEvent]:
        return self._events(self.parser.close()) if self.parser is not None else []

    def only_repeats(self) -> bool:
        """The model wrote only calls the conversation already answered."""
        return bool(self.repeats) and not self.calls and not "".join(self.text).strip()

    def only_unknown(self) -> bool:
        """The model wrote only calls of tools the request does not offer."""
        return bool(self.unknown) and not self.repeats and not self.calls and not "".join(self.text).strip()

    def second_try(self) -> list[ChatTurn] | None:
        """The conversation to ask once more (no call allowed) when the model wrote only calls
        that cannot be handed back, or None. Starts the choice over when it returns one."""
        if self.only_repeats():  # a call the conversation answered
            messages = tc.with_repeat_note(self.req.messages)
        elif self.only_unknown():  # a call of a tool nobody offered
            names = [p.invalid.name for p in self.unknown if p.invalid is not None and p.invalid.name]
            messages = tc.with_note(self.req.messages, tc.unknown_tool_note(names))
        else:
            return None
        self.restart()
        return messages

    def restart(self) -> None:
        """Start over for the second try: nothing held back, a fresh parser."""
        log.info("calls held back; asking for an answer", request_id=self.req.request_id,
                 repeated=[c.name for c in self.repeats],
                 unknown=[p.invalid.name for p in self.unknown if p.invalid is not None])
        self.answered, self.repeats, self.text, self.unknown = set(), [], [], []
        self.parser = tc.CallParser(self.req.tools)

    def release(self) -> list[GenerateEvent]:
        """The held-back calls of unknown tools, handed on as flagged text (no second try)."""
        held, self.unknown, self.offered = self.unknown, [], None
        return self._events(held)

    def _events(self, pieces: list[tc.Piece]) -> list[GenerateEvent]:
        out = []
        for p in pieces:
            if p.invalid is not None and self.offered is not None and p.invalid.name not in (None, *self.offered):
                self.unknown.append(p)
                continue
            if p.invalid is not None:
                if self.required:  # the grammar should make this impossible; never pass it on
                    raise ToolCallInvalid(f"the model's call is not valid: {p.invalid.error}",
                                          detail={"raw": p.invalid.raw[:2000]})
                self.invalid.append(p.invalid)
                p = tc.Piece(text=p.text or f"{tc.OPEN}{p.invalid.raw}{tc.CLOSE}")  # a plain-text answer, flagged
            if p.call is not None and tc.call_key(p.call.name, p.call.arguments) in self.answered:
                self.repeats.append(p.call)
            elif p.call is not None:
                self.calls.append(p.call)
                if self.req.stream:
                    out.append(self._event(type="tool_call", tool_call=p.call))
            elif p.text:
                self.text.append(p.text)
                if self.req.stream:
                    out.append(self._event(text=p.text))
        return out

    def _event(self, **fields: Any) -> GenerateEvent:
        return GenerateEvent(request_id=self.req.request_id, index=self.index, **{"type": "text", **fields})

    def result(self, out: GenerationResult) -> GenerateChoice:
        if self.required and not self.calls:
            raise ToolCallInvalid("the model was required to call a tool and wrote no call",
                                  detail={"text": "".join(self.text)[:2000]})
        text = "".join(self.text)
        finish = "tool_calls" if self.calls else ("length" if out.finish_reason == "length" else "stop")
        return GenerateChoice(index=self.index, text=text.strip() if self.calls else text, tool_calls=self.calls,
                              invalid_tool_calls=self.invalid, finish_reason=finish)  # type: ignore[arg-type]


def _added(first: GenerationResult, second: GenerationResult) -> GenerationResult:
    """One result for two generations of one choice: the second's text, both's cost."""
    seconds = first.seconds + second.seconds
    tokens = first.output_tokens + second.output_tokens
    return second.model_copy(update={
        "output_tokens": tokens, "seconds": seconds,  # the answer's first token came in the second
        "ttft_s": None if second.ttft_s is None else first.seconds + second.ttft_s,
        "input_tokens": max(first.input_tokens, second.input_tokens),
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
    })


class _Events:
    """Publishes one generation's events (raw core NATS: no span per token) and keeps it
    alive while nothing else is sent."""

    def __init__(self, server: ModelServer, req: GenerateRequest) -> None:
        self.server, self.subject = server, subjects.model_events(req.request_id)
        self.request_id = req.request_id
        self.last = time.monotonic()

    async def send(self, event: GenerateEvent) -> None:
        self.last = time.monotonic()
        with contextlib.suppress(Exception):  # best effort: the "done" reply carries everything
            await self.server.broker.connection.publish(self.subject, event.model_dump_json().encode())

    async def keep_alive(self) -> None:
        every = self.server.keepalive_s
        while True:
            await asyncio.sleep(max(0.05, every - (time.monotonic() - self.last)))
            if time.monotonic() - self.last >= every:
                await self.send(GenerateEvent(request_id=self.request_id, type="keepalive"))
