"""Tasks, reviews and threads over HTTP (what ``syndicate result``, ``review`` and
``thread`` do on the command line):

    GET  /v1/tasks/{task_id}          the task's result, or its state while it runs; the
                                      proposed result while it waits in input_required
    POST /v1/tasks/{task_id}/review   {"decision": "approve" | "revise" | "reject",
                                      "feedback": "...", "reviewer": "...", "wait": false}:
                                      202 once the decision is on the bus; with "wait", 200
                                      with the result (or the next pause) instead
    GET  /v1/threads/{key}            a conversation, by its id or by one of its tasks
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import http_errors as he
from services.gateway.state import GatewayDep, authorize, parse_body, trace_parent
from shared.contracts import MAX_FEEDBACK, TaskState
from shared.errors import NotFound, SyndicateError

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "revise", "reject"]
    feedback: str = Field("", max_length=MAX_FEEDBACK)  # revise: what to change; reject: why
    reviewer: str = Field("", max_length=200)
    wait: bool = False  # answer with the result (or the next pause) instead of at once


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, gw: GatewayDep) -> dict[str, Any]:
    state = await gw.bridge.client.state(task_id)
    if state is None:
        raise he.from_exception(NotFound(f"no task {task_id} (unknown, or past its retention)"), gw.retry_after_s)
    return task_view(state)


def task_view(state: TaskState) -> dict[str, Any]:
    """The result (final, or proposed while it waits for a review), else the steps so far."""
    if state.result is not None:
        return state.result.model_dump(mode="json")
    return {"task_id": state.task.task_id, "trace_id": state.trace_id, "status": state.status, "kind": state.task.kind,
            "thread_id": state.thread_id, "steps": [s.model_dump(mode="json") for s in state.steps]}


@router.post("/tasks/{task_id}/review", response_model=None)
async def review_task(task_id: str, req: Request, gw: GatewayDep) -> dict[str, Any] | JSONResponse:
    body = await parse_body(req, ReviewBody)
    try:
        run = await gw.bridge.review(task_id, body.decision, body.feedback, "syndicate", trace_parent(req), "http",
                                     reviewer=body.reviewer)
    except SyndicateError as exc:
        raise he.from_exception(exc, gw.retry_after_s) from exc
    try:
        if not body.wait:
            return JSONResponse({"task_id": task_id, "decision": body.decision, "accepted": True}, status_code=202)
        while (step := await run.next()).kind not in ("result", "input_required"):
            if step.kind == "gone":
                raise he.bus_unavailable("the task's events stopped")
    finally:
        await run.close(keep_running=True)  # the decision stands whether or not this client stays
    assert step.result is not None
    return step.result.model_dump(mode="json")


@router.get("/threads/{key}")
async def get_thread(key: str, gw: GatewayDep) -> dict[str, Any]:
    record = await gw.bridge.client.thread(key)
    if record is None:
        raise he.from_exception(NotFound(f"no thread {key} (unknown, past its retention, or a task nobody continued)"),
                                gw.retry_after_s)
    return record.model_dump(mode="json")
