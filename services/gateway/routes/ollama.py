"""Ollama's HTTP API under ``/api``, so Ollama's clients (the ``ollama`` libraries, Open
WebUI, Continue, ...) work unchanged with the syndicate's address.

A chat or generate request for a served model (``qwen2_5-coder-1_5b``, ``:latest`` or
not) is the same model request the OpenAI routes send (services/gateway/model_runs.py):
tools, ``format`` (JSON or a JSON schema) and the sampling options honoured. One for an
agent (``syndicate``, ``coder``, ...) becomes a task, text in and text out. Answers
stream as NDJSON unless ``stream: false``; errors are Ollama's ``{"error": "..."}`` with
the status the OpenAI routes would give (a line ``{"error": ...}`` once a stream began).
Ollama's model management (pull, push, create, copy, delete, blobs) is not served: 501
with the reason. docs/gateway.md, "Ollama API", lists what is and is not honoured.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from services.gateway import completions as cm
from services.gateway import http_errors as he
from services.gateway import ollama_models as om
from services.gateway import ollama_schema as osch
from services.gateway.model_runs import ModelRun, served_model, start_model_run
from services.gateway.model_runs import watch_disconnect as watch_model_disconnect
from services.gateway.openai_schema import MODELS, ChatCompletionRequest
from services.gateway.routes.completions import TaskStream, watch_disconnect
from services.gateway.routes.embeddings import embed_texts
from services.gateway.state import Gateway, GatewayDep, authorize, parse_body, trace_parent
from services.gateway.tasks import TaskRun
from shared.contracts import ToolCall
from shared.errors import SyndicateError
from shared.generation.client import ServedModel

NDJSON = "application/x-ndjson"
NOT_SERVED = ("the syndicate serves the models of its roster (infra/models.toml, fetched by `syndicate models "
              "fetch`) and does not manage models over the API: {what} is not served")


class OllamaRoute(APIRoute):
    """Errors in Ollama's shape, ``{"error": "message"}`` (what its clients read into
    ``ResponseError``), also for the API-key check that runs before the handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ollama_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except he.APIError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

        return ollama_errors


router = APIRouter(prefix="/api", dependencies=[Depends(authorize)], route_class=OllamaRoute)


# --- the catalogue ---------------------------------------------------------------------------
@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": osch.OLLAMA_API_VERSION}


async def served(gw: Gateway, fresh: bool = False) -> dict[str, ServedModel]:
    try:
        return await gw.models.models(fresh=fresh)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc


@router.get("/tags")
async def tags(gw: GatewayDep) -> dict[str, Any]:
    roster = str(gw.settings.roster)
    models, embedders = await asyncio.gather(served(gw), om.embedders(gw.bridge.nc))
    return {"models": [om.tag_entry(m, started=gw.started, roster_path=roster) for m in models.values()]
            + [om.embedder_entry(h, gw.started) for h in embedders.values()]
            + [om.agent_entry(a, gw.started) for a in MODELS]}


@router.get("/ps")
async def ps(gw: GatewayDep) -> dict[str, Any]:
    roster = str(gw.settings.roster)
    return {"models": [om.ps_entry(m, started=gw.started, roster_path=roster) for m in (await served(gw)).values()]}


@router.post("/show")
async def show(req: Request, gw: GatewayDep) -> dict[str, Any]:
    body = await parse_body(req, osch.ShowBody)
    name = body.model_name
    if name in MODELS:
        return om.agent_show(name, gw.started)
    for embedder, h in (await om.embedders(gw.bridge.nc)).items():
        if same_name(name, embedder):
            return om.embedder_show(h, gw.started)
    model = await find(gw, name)
    return om.show_body(model, started=gw.started, roster_path=str(gw.settings.roster))


async def find(gw: Gateway, name: str) -> ServedModel:
    """The served model ``name``, or 404 naming the ones there are."""
    try:
        model = await served_model(gw, name)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    if model is None:
        known = [f"{m}:latest" for m in [*await served(gw), *MODELS]]
        raise he.APIError(404, f"model '{name}' not found; the syndicate serves: {', '.join(known)}",
                          type="invalid_request_error", code="model_not_found")
    return model


# --- chat and generate -----------------------------------------------------------------------
@router.post("/chat")
async def chat(req: Request, gw: GatewayDep) -> Response:
    body = await parse_body(req, osch.ChatRequest)
    return await answer(gw, req, body, "chat")


@router.post("/generate")
async def generate(req: Request, gw: GatewayDep) -> Response:
    body = await parse_body(req, osch.GenerateBody)
    return await answer(gw, req, body, "generate")


Body = osch.ChatRequest | osch.GenerateBody


async def answer(gw: Gateway, req: Request, body: Body, endpoint: str) -> Response:
    empty = not body.messages if isinstance(body, osch.ChatRequest) else not body.prompt
    agent = body.name in MODELS
    if not agent:
        await find(gw, body.name)
    if empty:  # Ollama's "load the model" request: every served model is loaded already
        if body.unload():
            raise he.invalid_request(f"the syndicate keeps {body.model!r} loaded while its agent runs; "
                                     "stop the agent (syndicate down) to free it")
        return JSONResponse(Lines(body, endpoint).loaded())
    run = await (start_task(gw, req, body) if agent else start_model(gw, req, body))
    return await respond(run, body, endpoint, gw.retry_after_s)


@dataclass
class Piece:
    """What a run yields, whichever backend: text, one tool call, or the end."""

    kind: str  # "text" | "tool_call" | "done"
    text: str = ""
    tool_call: ToolCall | None = None
    ending: Ending | None = None


@dataclass
class Ending:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    done_reason: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None
    tokens_per_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # the syndicate's facts (ids, trace)
    redraft: bool = False  # a task's answer may differ from its streamed drafts (the coder's verified code)


class ModelSource:
    """A model request as Pieces."""

    def __init__(self, run: ModelRun, watcher: asyncio.Task[None]) -> None:
        self.run, self.watcher = run, watcher

    async def next(self) -> Piece | None:
        event = await self.run.next()  # raises the generation's error
        if event is None:
            return None
        if event.type == "text":
            return Piece("text", text=event.text)
        if event.type == "tool_call":
            return Piece("tool_call", tool_call=event.tool_call)
        reply = event.reply
        assert reply is not None
        choice = reply.choices[0]
        invalid = [bad.model_dump() for bad in choice.invalid_tool_calls]
        extra = {"request_id": reply.request_id, "trace_id": reply.trace_id, "service": reply.service,
                 **({"invalid_tool_calls": invalid} if invalid else {})}
        return Piece("done", ending=Ending(
            choice.text, list(choice.tool_calls), "length" if choice.finish_reason == "length" else "stop",
            reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.ttft_s, reply.tokens_per_s, extra))


class TaskSource:
    """A task for an agent as Pieces (its result's errors as the HTTP errors they map to)."""

    def __init__(self, run: TaskRun, watcher: asyncio.Task[None], retry_after_s: int) -> None:
        self.run, self.watcher, self.retry_after_s = run, watcher, retry_after_s

    async def next(self) -> Piece | None:
        step = await self.run.next()
        if step.kind == "gone":
            return None
        if step.kind == "token":
            return Piece("text", text=step.text)
        result = step.result
        assert result is not None
        if (err := he.from_result(result, self.retry_after_s)) is not None:
            raise err
        usage = result.usage
        tok_s = usage.output_tokens / usage.seconds if usage.seconds else 0.0
        return Piece("done", ending=Ending(result.answer, [], "stop", usage.input_tokens, usage.output_tokens,
                                           usage.ttft_s, tok_s, {"task_id": result.task_id, "trace_id": result.trace_id,
                                                                 "status": result.status}, redraft=True))


Source = ModelSource | TaskSource


async def start_model(gw: Gateway, req: Request, body: Body) -> ModelSource:
    try:
        if isinstance(body, osch.ChatRequest):
            greq = osch.chat_to_generate(body, timeout_s=gw.settings.gateway_request_timeout_s)
        else:
            greq = osch.generate_to_generate(body, timeout_s=gw.settings.gateway_request_timeout_s)
    except ValidationError as exc:
        raise he.invalid_request(exc) from exc
    except ValueError as exc:
        raise he.invalid_request(str(exc)) from exc
    try:
        run = await start_model_run(gw, greq, trace_parent(req), f"ollama {'chat' if isinstance(body, osch.ChatRequest) else 'generate'}")
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    return ModelSource(run, asyncio.create_task(watch_model_disconnect(req.receive, run)))


async def start_task(gw: Gateway, req: Request, body: Body) -> TaskSource:
    """An agent's task from the chat (the OpenAI route's conversion: the last user message
    first, the earlier turns as context) or the prompt; text only."""
    if isinstance(body, osch.ChatRequest) and body.tools:
        raise he.invalid_request(f"tools are served by the models, not by the agent {body.model!r} (GET /api/tags)")
    if body.json_schema() is not None:
        raise he.invalid_request(f"the agent {body.model!r} answers text only; JSON formats are served by the models")
    if isinstance(body, osch.ChatRequest):
        messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    else:
        messages = ([{"role": "system", "content": body.system}] if body.system else []) + [
            {"role": "user", "content": body.prompt or ""}]
    options = body.options.sampling() if body.options else {}
    try:
        oai = ChatCompletionRequest.model_validate({"model": body.name, "messages": messages, "stream": body.stream,
                                                    "max_tokens": options.get("max_tokens")})
        task = cm.to_task(oai, timeout_s=gw.settings.gateway_request_timeout_s)
    except ValidationError as exc:
        raise he.invalid_request(exc) from exc
    try:
        run = await gw.bridge.start(task, body.name, trace_parent(req), "chat")
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    return TaskSource(run, asyncio.create_task(watch_disconnect(req, run)), gw.retry_after_s)


async def respond(src: Source, body: Body, endpoint: str, retry_after_s: int) -> Response:
    """The status line waits for the first piece, so a request refused by a full queue or
    its deadline still gets its 429/504; then NDJSON lines, or one body."""
    lines = Lines(body, endpoint)
    try:
        piece = await src.next()
        if piece is not None and body.stream:
            return TaskStream(stream(src, lines, piece, retry_after_s), src.run, src.watcher, media_type=NDJSON)
        while piece is not None and piece.kind != "done":
            lines.absorb(piece)
            piece = await src.next()
    except SyndicateError as exc:
        await close(src)
        raise he.from_exception(exc, retry_after_s) from exc
    except BaseException:
        await close(src)
        raise
    await close(src)
    if piece is None or piece.ending is None:
        return Response(status_code=499)  # the client left; its request was cancelled
    return JSONResponse(lines.final(piece.ending, whole=True))


async def close(src: Source) -> None:
    src.watcher.cancel()
    await src.run.close()


async def stream(src: Source, lines: Lines, first: Piece, retry_after_s: int) -> AsyncIterator[bytes]:
    piece: Piece | None = first
    while piece is not None:
        if piece.kind == "done" and piece.ending is not None:
            yield ndjson(lines.final(piece.ending, whole=False))
            return
        yield ndjson(lines.piece(piece))
        try:
            piece = await src.next()
        except (SyndicateError, he.APIError) as exc:
            yield ndjson({"error": he.from_exception(exc, retry_after_s).message})  # the clients raise ResponseError
            return


def ndjson(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class Lines:
    """The response objects of one chat or generate request: the pieces as they come and
    the final one with Ollama's counts and durations (nanoseconds)."""

    def __init__(self, body: Body, endpoint: str) -> None:
        self.model, self.endpoint = body.model, endpoint
        self.started = time.perf_counter()
        self.text: list[str] = []  # sent (streaming) or gathered (not)
        self.calls: list[str] = []  # ids of the tool calls sent or gathered

    def _head(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": om.now_iso()}

    def _message(self, content: str, calls: list[ToolCall] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            msg["tool_calls"] = [tool_call_json(c) for c in calls]
        return msg

    def piece(self, piece: Piece) -> dict[str, Any]:
        """One streamed line."""
        self.absorb(piece)
        if self.endpoint == "generate":
            return {**self._head(), "response": piece.text, "done": False}
        calls = [piece.tool_call] if piece.tool_call is not None else None
        return {**self._head(), "message": self._message(piece.text, calls), "done": False}

    def absorb(self, piece: Piece) -> None:
        if piece.kind == "text":
            self.text.append(piece.text)
        elif piece.tool_call is not None:
            self.calls.append(piece.tool_call.id)

    def final(self, end: Ending, *, whole: bool) -> dict[str, Any]:
        """The last object: the whole answer (``whole``), or what the stream has not sent
        yet; done, done_reason and the counts."""
        sent = "".join(self.text)
        if whole:
            text, calls = end.text, end.tool_calls
        elif end.redraft:  # after the drafts, as on /v1: the client ends holding the final answer
            text, calls = cm.remainder(sent, end.text), []
        else:
            text = end.text[len(sent):] if end.text.startswith(sent) else ""
            calls = [c for c in end.tool_calls if c.id not in self.calls]
        total_ns = int((time.perf_counter() - self.started) * 1e9)
        ttft_ns = int((end.ttft_s or 0.0) * 1e9)
        eval_ns = int(end.output_tokens / end.tokens_per_s * 1e9) if end.tokens_per_s > 0 else max(0, total_ns - ttft_ns)
        out = self._head()
        if self.endpoint == "generate":
            out["response"] = text
        else:
            out["message"] = self._message(text, calls)
        return {**out, "done": True, "done_reason": end.done_reason, "total_duration": total_ns, "load_duration": 0,
                "prompt_eval_count": end.input_tokens, "prompt_eval_duration": ttft_ns,
                "eval_count": end.output_tokens, "eval_duration": eval_ns, "syndicate": end.extra}

    def loaded(self) -> dict[str, Any]:
        """The answer to a load request (no messages, no prompt)."""
        out = self._head()
        if self.endpoint == "generate":
            out["response"] = ""
        else:
            out["message"] = self._message("")
        return {**out, "done": True, "done_reason": "load"}


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    """A call as Ollama writes it: the arguments an object, not a JSON string."""
    return {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}}


# --- embeddings ------------------------------------------------------------------------------
@router.post("/embed")
async def embed(req: Request, gw: GatewayDep) -> dict[str, Any]:
    body = await parse_body(req, osch.EmbedBody)
    t0 = time.perf_counter()
    reply = await embed_texts(gw, body.texts())
    check_embedder(body.model, reply.model)
    if body.dimensions is not None and body.dimensions != reply.dim:
        raise he.invalid_request(f"the embedder {reply.model} has {reply.dim} dimensions, not {body.dimensions}")
    return {"model": body.model, "embeddings": reply.vectors, "total_duration": int((time.perf_counter() - t0) * 1e9),
            "load_duration": 0}


@router.post("/embeddings")
async def embeddings(req: Request, gw: GatewayDep) -> dict[str, Any]:
    body = await parse_body(req, osch.EmbeddingsBody)
    reply = await embed_texts(gw, [body.prompt])
    check_embedder(body.model, reply.model)
    return {"embedding": reply.vectors[0]}


def same_name(asked: str, name: str) -> bool:
    """A client's name for ``name``: any case, Ollama's default tag or none."""
    return osch.model_name(asked).lower() == name.lower()


def check_embedder(asked: str, embedder: str) -> None:
    """Embeddings come from the retriever's one embedder: a request must name it."""
    if not same_name(asked, embedder):
        raise he.APIError(400, f"the model '{asked}' does not embed here: the syndicate embeds with '{embedder}' "
                               "(the retriever's embedder)", type="invalid_request_error", code="invalid_model")


# --- model management: not served --------------------------------------------------------------
def not_served(what: str) -> he.APIError:
    return he.APIError(501, NOT_SERVED.format(what=what), type="not_implemented", code="not_served")


@router.post("/pull")
async def pull() -> None:
    raise not_served("pull (models come from the roster)")


@router.post("/push")
async def push() -> None:
    raise not_served("push")


@router.post("/create")
async def create() -> None:
    raise not_served("create (add a model to infra/models.toml and a role that loads it)")


@router.post("/copy")
async def copy() -> None:
    raise not_served("copy")


@router.delete("/delete")
async def delete() -> None:
    raise not_served("delete")


@router.api_route("/blobs/{digest}", methods=["HEAD", "POST"])
async def blobs(digest: str) -> None:
    raise not_served("blobs")
