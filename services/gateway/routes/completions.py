"""``POST /v1/chat/completions`` and ``/v1/completions``: a request for an agent
(``syndicate``, ``coder``, ...) becomes a task; a request for a served model
(``qwen2_5-coder-1_5b``, ...) becomes a model request, a plain generation on an agent's
engine (services/gateway/model_runs.py). Tokens stream back as server-sent events
(``stream: true``) or the answer comes as one body.

The status line waits for the first token or the result, so a request refused by a full
engine queue or by its deadline still gets its 429/504. A client that leaves cancels its
task or generation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from services.gateway import completions as cm
from services.gateway import generations as gen
from services.gateway import http_errors as he
from services.gateway.model_runs import ModelRun, served_model, start_model_run
from services.gateway.model_runs import watch_disconnect as watch_model_disconnect
from services.gateway.openai_schema import MODELS, ChatCompletionRequest, CompletionRequest
from services.gateway.state import Gateway, GatewayDep, authorize, parse_body, trace_parent
from services.gateway.tasks import TaskRun
from shared.contracts import GenerateEvent, TaskResult
from shared.errors import SyndicateError

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Body = ChatCompletionRequest | CompletionRequest

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


@router.post("/chat/completions")
async def chat_completions(req: Request, gw: GatewayDep) -> Response:
    return await generate(gw, req, await parse_body(req, ChatCompletionRequest), "chat")


@router.post("/completions")
async def text_completions(req: Request, gw: GatewayDep) -> Response:
    return await generate(gw, req, await parse_body(req, CompletionRequest), "completion")


async def generate(gw: Gateway, req: Request, body: Body, endpoint: cm.Endpoint) -> Response:
    if body.model in MODELS:
        return await run_task(gw, req, body, endpoint)
    try:
        served = await served_model(gw, body.model)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    if served is None:
        raise he.unknown_model(body.model, list(MODELS) + list(await gw.models.models()))
    return await run_model(gw, req, body, endpoint)


async def run_task(gw: Gateway, req: Request, body: Body, endpoint: cm.Endpoint) -> Response:
    try:
        task = cm.to_task(body, timeout_s=gw.settings.gateway_request_timeout_s)
    except ValidationError as exc:
        raise he.invalid_request(exc) from exc
    try:
        run = await gw.bridge.start(task, body.model, trace_parent(req), endpoint)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    watcher = asyncio.create_task(watch_disconnect(req, run))
    headers = {"x-syndicate-task-id": task.task_id}
    try:
        first = await run.next()
        if first.kind == "token" and body.stream:
            return TaskStream(
                stream(run, body, endpoint, first.text, gw.retry_after_s), run, watcher,
                media_type="text/event-stream", headers={**SSE_HEADERS, **headers},
            )
        step = first
        while step.kind == "token":
            step = await run.next()
    except BaseException:
        watcher.cancel()
        await run.close()
        raise
    watcher.cancel()
    await run.close()
    if step.kind == "gone":
        return Response(status_code=499)  # nobody reads it; the task was cancelled
    assert step.result is not None
    if (err := he.from_result(step.result, gw.retry_after_s)) is not None:
        err.headers.update(headers)
        raise err
    if body.stream:  # the answer came without live tokens: stream it in one piece
        return StreamingResponse(
            replay(body, endpoint, step.result), media_type="text/event-stream", headers={**SSE_HEADERS, **headers},
        )
    return JSONResponse(cm.final_body(endpoint, body.model, step.result), headers=headers)


async def stream(run: TaskRun, body: Body, endpoint: cm.Endpoint, first: str, retry_after_s: int) -> AsyncIterator[bytes]:
    created = int(time.time())
    tid = run.task.task_id
    streamed: list[str] = []
    if endpoint == "chat":
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text="", role=True))
    text = first
    while True:
        streamed.append(text)
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=text))
        step = await run.next()
        if step.kind == "gone":
            return
        if step.kind == "result":
            break
        text = step.text
    result = step.result
    assert result is not None
    if (err := he.from_result(result, retry_after_s)) is not None:
        yield cm.sse(err.body())  # the OpenAI SDKs raise APIError on it
        yield cm.sse("[DONE]")
        return
    if rest := cm.remainder("".join(streamed), result.answer):
        yield cm.sse(cm.chunk(endpoint, body.model, tid, created, text=rest))
    async for part in _ending(body, endpoint, result, created):
        yield part


async def replay(body: Body, endpoint: cm.Endpoint, result: TaskResult) -> AsyncIterator[bytes]:
    created = int(time.time())
    if endpoint == "chat":
        yield cm.sse(cm.chunk(endpoint, body.model, result.task_id, created, text="", role=True))
    yield cm.sse(cm.chunk(endpoint, body.model, result.task_id, created, text=result.answer))
    async for part in _ending(body, endpoint, result, created):
        yield part


async def _ending(body: Body, endpoint: cm.Endpoint, result: TaskResult, created: int) -> AsyncIterator[bytes]:
    """The finish chunk, the usage chunk when asked for, and [DONE]."""
    finish_text = None if endpoint == "chat" else ""
    yield cm.sse(cm.chunk(endpoint, body.model, result.task_id, created, text=finish_text, finish="stop"))
    if body.include_usage:
        yield cm.sse(cm.usage_chunk(endpoint, body.model, result, created))
    yield cm.sse("[DONE]")


async def run_model(gw: Gateway, req: Request, body: Body, endpoint: cm.Endpoint) -> Response:
    try:
        greq = gen.to_generate(body, timeout_s=gw.settings.gateway_request_timeout_s)
    except ValidationError as exc:
        raise he.invalid_request(exc) from exc
    except ValueError as exc:
        raise he.invalid_request(str(exc)) from exc
    try:
        run = await start_model_run(gw, greq, trace_parent(req), endpoint)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    watcher = asyncio.create_task(watch_model_disconnect(req.receive, run))
    headers = {"x-syndicate-request-id": greq.request_id}
    try:
        event = await run.next()
        if event is not None and body.stream:
            return TaskStream(
                model_stream(run, body, endpoint, event, gw.retry_after_s), run, watcher,
                media_type="text/event-stream", headers={**SSE_HEADERS, **headers},
            )
        while event is not None and event.type != "done":
            event = await run.next()
    except SyndicateError as exc:
        watcher.cancel()
        await run.close()
        err = he.from_exception(exc, gw.retry_after_s)
        err.headers.update(headers)
        raise err from exc
    except BaseException:
        watcher.cancel()
        await run.close()
        raise
    watcher.cancel()
    await run.close()
    if event is None or run.reply is None:
        return Response(status_code=499)  # nobody reads it; the generation was cancelled
    return JSONResponse(gen.final_body(endpoint, body.model, run.reply), headers=headers)


async def model_stream(run: ModelRun, body: Body, endpoint: cm.Endpoint, first: GenerateEvent,
                       retry_after_s: int) -> AsyncIterator[bytes]:
    writer = gen.ChunkWriter(endpoint, body.model, run.request.request_id, body.include_usage)
    event: GenerateEvent | None = first
    while event is not None:
        if event.type == "text":
            yield writer.text_piece(event.index, event.text)
        elif event.type == "tool_call" and event.tool_call is not None:
            yield writer.tool_call(event.index, event.tool_call)
        elif event.type == "done" and event.reply is not None:
            for part in writer.ending(event.reply):
                yield part
            return
        try:
            event = await run.next()
        except SyndicateError as exc:
            yield cm.sse(he.from_exception(exc, retry_after_s).body())  # the OpenAI SDKs raise APIError on it
            yield cm.sse("[DONE]")
            return


class TaskStream(StreamingResponse):
    """An SSE response that always releases its task or model run: also when the client
    leaves before the stream starts (its generator's ``finally`` would then never run)."""

    def __init__(self, content: AsyncIterator[bytes], run: TaskRun | ModelRun, watcher: asyncio.Task[None],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.run, self.watcher = run, watcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.watcher.cancel()
            await self.run.close()


async def watch_disconnect(req: Request, run: TaskRun) -> None:
    """Tell the run when the client closes the connection (streaming or not)."""
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            run.client_gone()
            return
