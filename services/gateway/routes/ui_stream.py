"""The console's server-sent events: HTML fragments that htmx's SSE extension swaps in.

One stream per page (a browser opens at most six connections to a host over HTTP/1.1):
- ``/ui/sse/overview``: ``agents`` (the table, when it changed) and the task list —
  ``tasks`` (the newest tasks, at connect) then ``task`` (one row changed or arrived, as
  an out-of-band swap);
- ``/ui/sse/tasks/{id}``: ``status``, ``tokens`` (batched every 100 ms), ``progress``,
  ``result`` and ``done`` (the page closes the stream);
- ``/ui/sse/evolve/{run}``: ``run`` (the chart, best program and lineage) after each change.
Every stream sends a comment every 15 s so proxies keep it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from services.gateway.console.evolve import EvolveSource
from services.gateway.console.live import QUEUE
from services.gateway.console.render import render, score_chart, task_row_html, tokens_html
from services.gateway.routes.ui import LIST_TASKS, hub, task_ctx
from services.gateway.routes.ui_access import SECURITY_HEADERS, Access, ConsoleAccess
from services.gateway.state import Gateway, GatewayDep
from shared.contracts import FINAL_STATUSES, TaskEvent, TaskState

router = APIRouter(prefix="/ui/sse")
KEEPALIVE_S = 15.0
TOKEN_FLUSH_S = 0.1
LOADED_WAIT_S = 3.0
HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: str) -> str:
    """One server-sent event (data lines never hold a bare newline: fragments are joined)."""
    lines = data.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)


@router.get("/overview")
async def overview_stream(request: Request, access: ConsoleAccess) -> StreamingResponse:
    return stream(_overview(request))


async def _overview(request: Request) -> AsyncIterator[str]:
    h = hub(request)
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE)
    async with h.agents.channel.subscribe(q), h.tasks.channel.subscribe(q):
        if h.agents.html:
            yield sse("agents", h.agents.html)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(h.tasks.loaded.wait(), LOADED_WAIT_S)
        listed = [t.task_id for t in h.tasks.recent(LIST_TASKS)]
        rows = "".join(task_row_html(t) for t in h.tasks.recent(LIST_TASKS))
        yield sse("tasks", rows or render("no_tasks.html"))
        async for kind, item in _drain(q, lambda: hub(request)):
            if kind == "keepalive":
                yield ": keepalive\n\n"
                continue
            if kind == "agents":
                yield sse("agents", item)
                continue
            summary, row = item
            if summary.task_id in listed:
                yield sse("task", f'<div hx-swap-oob="outerHTML:#task-{summary.task_id}">{row}</div>')
                continue
            placeholder = not listed  # the list shows "no task yet": remove it
            listed.insert(0, summary.task_id)
            gone = listed[LIST_TASKS:]
            del listed[LIST_TASKS:]
            drop = "".join(f'<div id="task-{t}" hx-swap-oob="delete"></div>' for t in gone)
            if placeholder:
                drop += '<div id="no-tasks" hx-swap-oob="delete"></div>'
            yield sse("task", f'<div hx-swap-oob="afterbegin:#task-list">{row}</div>{drop}')


async def _drain(q: asyncio.Queue[Any], on_idle: Any) -> AsyncIterator[tuple[str, Any]]:
    """The queue's items, and ("keepalive", None) after each quiet KEEPALIVE_S (``on_idle``
    runs then: the feeds start once the bus is up, even if no page loads meanwhile). One
    getter stays pending across the waits, so no item is lost to a timeout."""
    getter: asyncio.Future[Any] | None = None
    try:
        while True:
            if getter is None:
                getter = asyncio.ensure_future(q.get())
            done, _ = await asyncio.wait({getter}, timeout=KEEPALIVE_S)
            if not done:
                on_idle()
                yield "keepalive", None
                continue
            item, getter = getter.result(), None
            yield item
    finally:
        if getter is not None:
            getter.cancel()


@router.get("/tasks/{task_id}")
async def task_stream(task_id: str, gw: GatewayDep, access: ConsoleAccess) -> StreamingResponse:
    return stream(_task(gw, access, task_id))


async def _task(gw: Gateway, access: Access, task_id: str) -> AsyncIterator[str]:
    client = gw.bridge.client
    state = await client.state(task_id) if gw.bridge.nc is not None else None
    if state is None:
        yield sse("done", "")
        return
    follow = await client.follow(state)
    try:
        state = await client.state(task_id) or state  # it may have ended before the follow began
        if state.status in FINAL_STATUSES:
            yield _result(gw, access, state)
            return
        yield sse("status", render("status.html", state=state))
        buffered: list[str] = []
        step: str | None = None
        pending: asyncio.Future[TaskEvent | None] | None = None
        flushed_at = time.monotonic()
        while True:
            if pending is None:
                pending = asyncio.ensure_future(follow.next())
            wait = max(0.0, flushed_at + TOKEN_FLUSH_S - time.monotonic()) if buffered else KEEPALIVE_S
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                if buffered:
                    yield sse("tokens", "".join(buffered))
                    buffered, flushed_at = [], time.monotonic()
                else:
                    yield ": keepalive\n\n"
                continue
            event, pending = pending.result(), None
            if event is None:
                return
            if event.type == "token":
                if event.step and event.step != step:
                    step = event.step
                    buffered.append(f'<span class="step">[{tokens_html(step)}]</span>&#10;')
                buffered.append(tokens_html(event.text))
                if time.monotonic() - flushed_at >= TOKEN_FLUSH_S:  # a steady stream never goes quiet
                    yield sse("tokens", "".join(buffered))
                    buffered, flushed_at = [], time.monotonic()
                continue
            if buffered:
                yield sse("tokens", "".join(buffered))
                buffered, flushed_at = [], time.monotonic()
            if event.type == "result":
                final = await client.state(task_id)
                if final is None or final.status not in FINAL_STATUSES:  # the event came before the KV write
                    final = state.model_copy(update={"status": event.result.status if event.result else "done",
                                                     "result": event.result})
                yield _result(gw, access, final)
                return
            if event.type == "status" and event.status:
                paused = event.status == "input_required" and event.result is not None
                state = state.model_copy(update={"status": event.status, "result": event.result if paused else None})
                yield sse("status", render("status.html", state=state))
                # A pause shows the proposed result (and the review form); a revision clears it.
                yield sse("result", render("task_result.html", **task_ctx(gw, state), access=access) if paused else "")
            yield sse("progress", render("progress_item.html", event=event))
    finally:
        if pending is not None:
            pending.cancel()
        await follow.close()


def _result(gw: Gateway, access: Access, state: TaskState) -> str:
    return (sse("status", render("status.html", state=state))
            + sse("result", render("task_result.html", **task_ctx(gw, state), access=access)) + sse("done", ""))


@router.get("/evolve/{run_id}")
async def evolve_stream(run_id: str, gw: GatewayDep, access: ConsoleAccess) -> StreamingResponse:
    return stream(_evolve(gw, run_id))


async def _evolve(gw: Gateway, run_id: str) -> AsyncIterator[str]:
    views = EvolveSource(gw.bridge.nc).follow(run_id)
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(views, None))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield ": keepalive\n\n"
                continue
            view, pending = pending.result(), None
            if view is None:
                yield sse("done", "")
                return
            yield sse("run", render("evolve_panel.html", view=view, chart=score_chart(view)))
    finally:
        if pending is not None:  # the generator must be idle before it can be closed
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await views.aclose()  # type: ignore[attr-defined]
