"""``/ui``: the web console's pages (docs/console.md). Live parts come from ui_stream.py;
who may see and act is ui_access.py. Pages are plain HTML rendered here (htmx and its SSE
extension, vendored under console/static, wire the live parts; no front-end build)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from opentelemetry import trace
from pydantic import ValidationError

from services.gateway.console.data import latest_study, load_trace, study_cells
from services.gateway.console.evolve import EvolveSource
from services.gateway.console.live import ConsoleHub
from services.gateway.console.render import (
    STATIC,
    agents_html,
    render,
    score_chart,
    task_row_html,
    waterfall_bars,
)
from services.gateway.routes.ui_access import (
    COOKIE,
    SECURITY_HEADERS,
    ConsoleAccess,
    ConsoleWriter,
    cookie_value,
    safe_next,
    signed_in,
)
from services.gateway.state import Gateway, GatewayDep, key_accepted
from shared.bus import publish_task, to_error_info
from shared.contracts import FINAL_STATUSES, TaskState, TaskSubmit
from shared.errors import SyndicateError

tracer = trace.get_tracer("syndicate.gateway")
STATIC_FILES = {p.name for p in STATIC.iterdir() if p.is_file()}
LIST_TASKS = 50  # tasks the overview lists (newest first)
TRACE_SETTLE_S = 3.0
RECORD_WAIT_S = 3.0  # how long a task's page waits for the router's record of a task just submitted  # after a task ends, its last spans reach the store within this


@contextlib.asynccontextmanager
async def console_lifespan(app: FastAPI) -> AsyncIterator[None]:
    gw: Gateway = app.state.gateway
    app.state.console = ConsoleHub(gw.settings.state_dir, agents_html, task_row_html)
    try:
        yield
    finally:
        await app.state.console.stop()


router = APIRouter(prefix="/ui", lifespan=console_lifespan)


def page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def hub(request: Request) -> ConsoleHub:
    """The console's live feeds, started once the bus is up."""
    h: ConsoleHub = request.app.state.console
    h.start(request.app.state.gateway.bridge.nc)
    return h


def base_ctx(gw: Gateway, access: ConsoleAccess, section: str) -> dict[str, object]:
    return {"access": access, "section": section, "bus_up": gw.bridge.nc is not None}


@router.get("")
async def overview(request: Request, gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    h = hub(request)
    return page(render("overview.html", **base_ctx(gw, access, "overview"), agents=h.agents.html,
                       tasks=[task_row_html(t) for t in h.tasks.recent(LIST_TASKS)]))


@router.get("/tasks/{task_id}")
async def task_page(task_id: str, gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    state = await recorded_state(gw, task_id)
    if state is None:
        return page(render("missing.html", **base_ctx(gw, access, "tasks"), what=f"task {task_id}",
                           why="unknown, past its retention, or the bus is unreachable"), 404)
    return page(render("task.html", **base_ctx(gw, access, "tasks"), **task_ctx(gw, state)))


async def recorded_state(gw: Gateway, task_id: str) -> TaskState | None:
    """The task's record; a task submitted a moment ago (from this page, the CLI, ...) is
    waited for a little, until the router has recorded it."""
    if gw.bridge.nc is None:
        return None
    state = await gw.bridge.client.state(task_id)
    for _ in range(int(RECORD_WAIT_S / 0.1)):  # polled: the KV write is the router's, not ours
        if state is not None:
            break
        await asyncio.sleep(0.1)
        state = await gw.bridge.client.state(task_id)
    return state


def task_ctx(gw: Gateway, state: TaskState) -> dict[str, object]:
    return {"state": state, "task": state.task, "result": state.result, "final": state.status in FINAL_STATUSES,
            "proposed": state.status == "input_required" and state.result is not None,
            "jaeger": jaeger_link(gw, state.trace_id)}


def jaeger_link(gw: Gateway, trace_id: str) -> str | None:
    base = gw.settings.gateway_jaeger_url
    return f"{base.rstrip('/')}/trace/{trace_id}" if base and trace_id else None


@router.get("/tasks/{task_id}/trace")
async def task_trace(task_id: str, gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    """The waterfall fragment; it asks again while the task runs and for a moment after
    (the last spans are written up to 100 ms after they end)."""
    state = await gw.bridge.client.state(task_id) if gw.bridge.nc is not None else None
    if state is None:
        return page("<p class=muted>no record of this task</p>", 404)
    s = gw.settings
    view = await asyncio.to_thread(load_trace, s.traces_dir, state.trace_id, s.otlp_endpoint)
    ended = state.result.finished_at if state.result is not None else None
    settling = state.status not in FINAL_STATUSES or ended is None or time.time() - ended < TRACE_SETTLE_S
    return page(render("trace.html", view=view, bars=waterfall_bars(view), task_id=task_id, again=settling,
                       jaeger=jaeger_link(gw, state.trace_id)))


@router.post("/tasks")
async def submit(
    gw: GatewayDep, access: ConsoleWriter, text: Annotated[str, Form()], kind: Annotated[str, Form()] = "auto",
    review: Annotated[bool, Form()] = False,
) -> Response:
    """Submit a task from the page; the answer sends the browser to the task's page."""
    agent = kind.removeprefix("agent:") if kind.startswith("agent:") else None
    if not text.strip():
        return page("<span class=error>the task has no text</span>", 400)
    try:
        task = TaskSubmit(text=text, kind="auto" if agent else kind, agent=agent, review=review,  # type: ignore[arg-type]
                          timeout_s=gw.settings.gateway_request_timeout_s)
    except ValidationError as exc:
        return page(f"<span class=error>{_escape(to_error_info(exc).message)}</span>", 400)
    if gw.bridge.nc is None:
        return page("<span class=error>the bus is unreachable</span>", 503)
    with tracer.start_as_current_span("console submit", attributes={"syndicate.task_id": task.task_id,
                                                                     "syndicate.kind": task.kind}):
        try:
            await publish_task(gw.broker, task)
        except SyndicateError as exc:
            return page(f"<span class=error>{_escape(exc.code)}: {_escape(exc.message)}</span>",
                        429 if exc.code in ("overloaded", "queue_full") else 503)
    return Response(status_code=204, headers={"HX-Redirect": f"/ui/tasks/{task.task_id}"})


@router.post("/tasks/{task_id}/cancel")
async def cancel(task_id: str, gw: GatewayDep, access: ConsoleWriter) -> HTMLResponse:
    if gw.bridge.nc is None:
        return page("<p class=error>the bus is unreachable</p>", 503)
    await gw.bridge.client.cancel(task_id, "cancelled from the console")
    return page("<span class=muted>cancel sent</span>")


@router.post("/tasks/{task_id}/review")
async def review(
    task_id: str, gw: GatewayDep, access: ConsoleWriter, decision: Annotated[str, Form()],
    feedback: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A person's decision on a task waiting for review (docs/threads.md); the task's page
    follows it to its next pause or its end."""
    if decision not in ("approve", "revise", "reject"):
        return page("<span class=error>decide approve, revise or reject</span>", 400)
    if gw.bridge.nc is None:
        return page("<span class=error>the bus is unreachable</span>", 503)
    try:
        await gw.bridge.client.review(task_id, decision, feedback, reviewer="console")
    except SyndicateError as exc:
        return page(f"<span class=error>{_escape(exc.message)}</span>", 409 if exc.code == "wrong_state" else 400)
    return page(f"<span class=muted id=review-sent>{_escape(decision)} sent</span>")


@router.get("/evolve")
async def evolve_list(gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    runs = await EvolveSource(gw.bridge.nc).runs()
    return page(render("evolve_list.html", **base_ctx(gw, access, "evolve"), runs=runs))


@router.get("/evolve/{run_id}")
async def evolve_run(run_id: str, gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    view = await EvolveSource(gw.bridge.nc).run(run_id)
    if view is None:
        return page(render("missing.html", **base_ctx(gw, access, "evolve"), what=f"evolution run {run_id}",
                           why="unknown, past its retention, or the bus is unreachable"), 404)
    return page(render("evolve_run.html", **base_ctx(gw, access, "evolve"), view=view, chart=score_chart(view)))


@router.get("/study")
async def study(gw: GatewayDep, access: ConsoleAccess) -> HTMLResponse:
    s = gw.settings
    view = await asyncio.to_thread(latest_study, s.state_dir, s.gateway_study_dirs)
    cells = [study_cells(r) for r in view.rows] if view else []
    return page(render("study.html", **base_ctx(gw, access, "study"), view=view, cells=cells))


@router.get("/study/plot.png")
async def study_plot(gw: GatewayDep, access: ConsoleAccess) -> Response:
    s = gw.settings
    view = await asyncio.to_thread(latest_study, s.state_dir, s.gateway_study_dirs)
    if view is None or view.plot is None:
        raise HTTPException(404, "no study plot")
    return FileResponse(view.plot, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
async def static(name: str, gw: GatewayDep) -> Response:
    """The console's own files (no auth: nothing in them is private)."""
    if gw.settings.gateway_console == "off" or name not in STATIC_FILES:
        raise HTTPException(404)
    versioned = name.startswith("htmx")  # vendored files carry their version in the name
    media = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain", ".md": "text/plain"}
    return FileResponse(STATIC / name, media_type=media.get((STATIC / name).suffix, "application/octet-stream"),
                        headers={"Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
                                 "X-Content-Type-Options": "nosniff"})


@router.get("/login")
async def login_form(request: Request, gw: GatewayDep, next: str = "/ui") -> Response:
    if gw.settings.gateway_console == "off":
        raise HTTPException(404)
    if signed_in(request, gw.settings):
        return RedirectResponse(safe_next(next), status_code=303)
    return page(render("login.html", next=safe_next(next), failed=False, access=None, section="login"))


@router.post("/login")
async def login(gw: GatewayDep, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/ui") -> Response:
    s = gw.settings
    if s.gateway_console == "off":
        raise HTTPException(404)
    if not s.gateway_api_key or not key_accepted(s, f"Bearer {key}"):
        return page(render("login.html", next=safe_next(next), failed=True, access=None, section="login"), 401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(COOKIE, cookie_value(s.gateway_api_key), httponly=True, samesite="strict", path="/ui",
                        secure=(s.gateway_public_url or "").startswith("https://"))
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _escape(text: str) -> str:
    return html.escape(text)
