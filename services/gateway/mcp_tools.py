"""The syndicate as an MCP server (the official ``mcp`` SDK): tools ``run_code``,
``search``, ``ingest`` and ``solve``, and the retriever's collections as resources.

One server per gateway process, served over streamable HTTP at ``/mcp``
(routes/mcp.py) or over stdio (``syndicate mcp``, mcp_stdio.py). Every tool builds its
bus message with the contracts, so a bad argument is refused before anything reaches
the bus (mcp_checks.py turns it into a JSON-RPC invalid-params error).
"""

import time
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import InputRequiredResult
from opentelemetry import context as otel_context
from pydantic import Field, ValidationError

from services.gateway import mcp_review
from services.gateway.ingest_access import IngestAccess
from services.gateway.mcp_checks import ArgumentCheck, invalid_params, join_http_trace
from services.gateway.state import Gateway
from services.gateway.tasks import TaskRun
from shared import registry, subjects
from shared.bus import request, scatter
from shared.contracts import (
    ID_PATTERN,
    MAX_TEXT,
    AgentName,
    CollectionName,
    ExecLimits,
    ExecRequest,
    ExecResult,
    FileIn,
    HealthPing,
    HealthReply,
    IngestReply,
    SearchFilters,
    SearchReply,
    SearchRequest,
    TaskResult,
    TaskSubmit,
    new_id,
)
from shared.errors import SyndicateError
from shared.ingest_files import plan_ingest, requests_for

PATH = "/mcp"  # where the gateway serves streamable HTTP
INSTRUCTIONS = (
    "Agent Syndicate: local llama.cpp agents behind a message bus. run_code runs Python in an "
    "isolated sandbox; search and ingest use the retriever's collections; solve gives a coding "
    "or reasoning task to the agents (progress is reported while it runs; cancelling stops it; "
    "context continues an earlier task; review asks you to approve its answer)."
)
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def build_mcp(gw: Gateway) -> MCPServer:
    """The MCP server of one gateway (its broker, task bridge and settings)."""
    mcp: MCPServer = MCPServer("syndicate", title="Agent Syndicate", instructions=INSTRUCTIONS, version="1")
    access = IngestAccess.of(gw.settings.gateway_ingest_roots, gw.settings.state_dir)
    mcp.middleware.insert(0, join_http_trace)  # outermost: the SDK's span joins the caller's trace
    mcp.middleware.append(ArgumentCheck(mcp))

    @mcp.tool()
    async def run_code(
        code: Annotated[str, Field(max_length=MAX_TEXT, description="A Python program.")],
        stdin: Annotated[str, Field(max_length=MAX_TEXT)] = "",
        timeout_s: Annotated[float | None, Field(gt=0, description="Wall and CPU seconds (default: the sandbox's).")] = None,
        memory_mb: Annotated[int | None, Field(gt=0, description="Memory limit in MB (default: the sandbox's).")] = None,
    ) -> dict[str, Any]:
        """Run a Python program in code-sandbox (no network, limits on time, memory and
        processes; the sandbox's ceilings always win) and return its output and verdict:
        status ok, runtime_error, timeout, memory_limit, output_limit, killed or rejected."""
        asked: dict[str, Any] = {"wall_s": timeout_s, "cpu_s": timeout_s, "memory_mb": memory_mb}
        limits = contract(ExecLimits, **{k: v for k, v in asked.items() if v is not None})
        req = contract(ExecRequest, code=code, stdin=stdin, limits=limits)
        result = await on_bus(request(gw.broker, subjects.SANDBOX_EXEC, req, ExecResult, timeout=limits.wall_s + 30))
        return result.model_dump(exclude={"version"})

    @mcp.tool()
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=10_000)],
        collection: CollectionName = "default",
        top_k: Annotated[int, Field(gt=0, le=100)] = 5,
        path_prefix: str | None = None,
        language: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Similarity search over a retriever collection: the best chunks with path, lines and score."""
        filters = contract(SearchFilters, path_prefix=path_prefix, language=language, tags=tags or [])
        req = contract(SearchRequest, query=query, collection=collection, top_k=top_k, filters=filters)
        reply = await on_bus(request(gw.broker, subjects.RETRIEVER_SEARCH, req, SearchReply, timeout=60.0))
        return reply.model_dump(exclude={"version"})

    @mcp.tool()
    async def ingest(
        paths: Annotated[list[str], Field(min_length=1, max_length=64, description="Folders or files on the gateway's host.")],
        ctx: Context,
        collection: CollectionName = "default",
        tags: list[str] | None = None,
        prune: bool = False,
    ) -> dict[str, Any]:
        """Ingest folders into a collection. Only folders under the operator's allow-list are
        read (SYNDICATE_GATEWAY_INGEST_ROOTS; none by default)."""
        started = time.monotonic()
        try:
            roots = [access.folder(p) for p in paths]
        except SyndicateError as exc:
            raise invalid_params(exc.message) from exc
        plan = plan_ingest(roots, tags, skip=access.refusal)
        reqs = contract(lambda: requests_for(plan, collection, prune, new_id("ing-")))
        replies: list[IngestReply] = []
        for n, req in enumerate(reqs, 1):
            replies.append(await on_bus(request(gw.broker, subjects.RETRIEVER_INGEST, req, IngestReply, timeout=600.0)))
            await ctx.report_progress(n, len(reqs), f"batch {n} of {len(reqs)}")
        return {
            "collection": collection, "files": sum(r.files for r in replies), "chunks": sum(r.chunks for r in replies),
            "removed": sum(r.removed for r in replies),
            "skipped": plan.skipped + [s for r in replies for s in r.skipped],
            "seconds": round(time.monotonic() - started, 3),
        }

    @mcp.tool()
    async def solve(
        text: Text,
        ctx: Context,
        kind: Literal["auto", "code", "reason"] = "auto",
        agent: AgentName | None = None,
        collection: CollectionName | None = None,
        files: Annotated[list[FileIn] | None, Field(max_length=64)] = None,
        timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None,
        max_tokens: Annotated[int | None, Field(gt=0, le=32_768)] = None,
        context: Annotated[str | None, Field(
            min_length=1, max_length=64, pattern=ID_PATTERN,
            description="Continue a conversation: an earlier task's id (or a thread id). The task sees that "
                        "exchange; code is edited from the last program and keeps its checks.")] = None,
        review: Annotated[bool, Field(
            description="Pause before the final answer and ask the user (elicitation) to approve it, reject it "
                        "or say what to change.")] = False,
    ) -> dict[str, Any] | InputRequiredResult:
        """Give the agents a task: write and test code (kind code), answer (kind reason, with
        citations when a collection is named) or let the router decide (auto). Progress is
        reported while it runs; cancelling the call cancels the task (not one that waits for
        a review). The answer's task_id continues the conversation as the next call's context."""
        model = agent or registry.agent_for_kind(kind) or "syndicate"  # the gateway's metrics label
        parent = otel_context.get_current()
        if (resumed := mcp_review.answered(ctx)) is not None:  # a 2026 client answering the review question
            task_id, answer = resumed
            decision = mcp_review.decision_of(answer)
            if decision is None:
                return await still_paused(task_id)
            run = await on_bus(gw.bridge.review(task_id, *decision, model, parent, "mcp solve", reviewer="mcp client",
                                                progress=True))
        else:
            task = contract(
                TaskSubmit, text=text, kind=kind, agent=agent, collection=collection, files=files or [],
                max_tokens=max_tokens, timeout_s=timeout_s or gw.settings.gateway_request_timeout_s, context_id=context,
                review=review,
            )
            run = await on_bus(gw.bridge.start(task, model, parent, "mcp solve", progress=True))
        while (result := await until_decision(run, ctx)).status == "input_required":
            asked = await mcp_review.ask(ctx, result)
            if asked is None or isinstance(asked, InputRequiredResult):
                return asked or answer_of(result)
            run = await on_bus(gw.bridge.review(result.task_id, *asked, model, parent, "mcp solve",
                                                reviewer="mcp client", progress=True))
        if result.status != "done":
            error = result.error.message if result.error else ""
            raise ToolError(f"task {result.task_id} ended {result.status}" + (f": {error}" if error else ""))
        return answer_of(result)

    async def still_paused(task_id: str) -> dict[str, Any]:
        state = await gw.bridge.client.state(task_id)
        if state is None or state.result is None:
            raise ToolError(f"not_found: no task {task_id} (unknown, or past its retention)")
        return answer_of(state.result)

    @mcp.resource("syndicate://collections", mime_type="application/json")
    async def collections() -> dict[str, int]:
        """The retriever's collections and their chunk counts."""
        return await collection_counts(gw)

    @mcp.resource("syndicate://collections/{name}", mime_type="application/json")
    async def collection(name: str) -> dict[str, Any]:
        """One collection: its chunk count (search it with the search tool)."""
        counts = await collection_counts(gw)
        if name not in counts:
            raise ResourceNotFoundError(f"no collection {name!r}; the collections are {', '.join(counts) or 'none yet'}")
        return {"name": name, "chunks": counts[name]}

    return mcp


async def until_decision(run: TaskRun, ctx: Context) -> TaskResult:
    """Follow a run to its result or its pause for review, reporting progress."""
    tokens = 0
    try:
        while (step := await run.next()).kind not in ("result", "input_required"):
            if step.kind == "gone":
                raise ToolError("the task was interrupted")
            tokens += step.kind == "token"
            if step.kind == "progress" or (step.kind == "token" and tokens % 32 == 0):
                await ctx.report_progress(tokens, None, step.text if step.kind == "progress" else f"{tokens} tokens")
    finally:
        await run.close()  # a call cancelled before the result cancels its task (not a paused one)
    assert step.result is not None
    return step.result


def answer_of(result: TaskResult) -> dict[str, Any]:
    """What solve answers: the result's parts (and, while it waits for a review, how to decide)."""
    out = result.model_dump(include={
        "task_id", "trace_id", "status", "kind", "answer", "code", "tests", "checks", "citations", "files", "diff",
        "usage", "thread_id",
    })
    if result.status == "input_required":
        out["review"] = (f"task {result.task_id} waits for a review: POST /v1/tasks/{result.task_id}/review "
                         f"or syndicate review {result.task_id} --approve | --revise TEXT | --reject")
    return out


def contract(model: Any, **fields: Any) -> Any:
    """``model(**fields)`` (a contract, or a function building them); a value the contract
    refuses is the caller's mistake: an invalid-params error naming the field."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_params(exc) from exc


async def on_bus(work: Any) -> Any:
    """Await bus work; the syndicate's errors become tool errors with their message."""
    try:
        return await work
    except SyndicateError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from exc


async def collection_counts(gw: Gateway) -> dict[str, int]:
    """Collections by chunk count, from the retrievers' health replies."""
    nc = gw.bridge.nc
    if nc is None:
        raise ToolError("bus_error: the syndicate's message bus is unreachable")
    counts: dict[str, int] = {}
    for raw in await scatter(nc, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), wait_s=0.3):
        try:
            reply = HealthReply.model_validate_json(raw)
        except ValidationError:
            continue
        if reply.service == "retriever":
            counts.update(reply.details.get("collections", {}))
    return counts

