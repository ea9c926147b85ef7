"""The A2A request handler (``a2a-sdk``'s ``RequestHandler``) of one endpoint: the
syndicate (the router picks the agent) or one agent of the registry.

``SendMessage`` / ``SendStreamingMessage`` submit a ``TaskSubmit`` through the gateway's
task bridge (its in-flight bound, metrics and trace span); ``GetTask`` reads the
task-state KV, so any replica answers for any task; ``CancelTask`` is the syndicate's
cancel. An A2A task outlives its caller's connection: a client that drops a stream or
a blocking send finds the task later with GetTask (it is not cancelled). A task sent
with ``review`` ends its send (or stream) in ``input-required``; a message carrying its
``taskId`` decides it and is answered like a send: up to the next pause or the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler, validate_request_params
from a2a.types.a2a_pb2 import (
    Artifact,
    CancelTaskRequest,
    GetTaskRequest,
    Part,
    SendMessageRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    ExtendedAgentCardNotConfiguredError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict
from opentelemetry import context as otel_context

from services.gateway import a2a_tasks as at
from services.gateway.state import Gateway
from services.gateway.tasks import TaskRun
from shared import registry
from shared.contracts import FINAL_STATUSES, TaskResult, TaskSubmit
from shared.errors import InvalidPayload, NotFound, SyndicateError, WrongState

CANCEL_WAIT_S = 10.0  # how long CancelTask waits for the router to record the cancel


class SyndicateHandler(RequestHandler):
    def __init__(self, gw: Gateway, agent: str | None) -> None:
        self.gw = gw
        self.agent = agent
        self.model = agent or "syndicate"  # the gateway's metrics label

    def submit_of(self, params: SendMessageRequest) -> TaskSubmit:
        metadata = MessageToDict(params.metadata) if params.HasField("metadata") else {}
        return at.to_submit(params.message, metadata, self.agent, self.gw.settings.gateway_request_timeout_s)

    async def start(self, task: TaskSubmit) -> TaskRun:
        """Submit through the bridge, inside the caller's trace (the route attached it)."""
        try:
            return await self.gw.bridge.start(task, self.model, otel_context.get_current(), "a2a", progress=True)
        except InvalidPayload as exc:
            raise InvalidParamsError(exc.message) from exc
        except SyndicateError as exc:  # overloaded, bus down: say which, and when to retry
            raise InternalError(f"{exc.code}: {exc.message}",
                                data={"code": exc.code, "retry_after_s": self.gw.retry_after_s}) from exc

    async def resume(self, params: SendMessageRequest) -> TaskRun:
        """A message in a paused task: its review decision, sent through the bridge."""
        metadata = MessageToDict(params.metadata) if params.HasField("metadata") else {}
        decision, feedback = at.decision_of(params.message, metadata)
        task_id = params.message.task_id
        try:
            return await self.gw.bridge.review(task_id, decision, feedback, self.model, otel_context.get_current(), "a2a",
                                               reviewer="a2a client", progress=True)
        except NotFound as exc:
            raise TaskNotFoundError(exc.message) from exc
        except (WrongState, InvalidPayload) as exc:
            raise InvalidParamsError(exc.message) from exc
        except SyndicateError as exc:
            raise InternalError(f"{exc.code}: {exc.message}",
                                data={"code": exc.code, "retry_after_s": self.gw.retry_after_s}) from exc

    async def open_run(self, params: SendMessageRequest) -> tuple[TaskSubmit, TaskRun]:
        """A new task, or a decision on a paused one (a message naming its task)."""
        if params.message.task_id:
            run = await self.resume(params)
            return run.task, run
        task = self.submit_of(params)
        return task, await self.start(task)

    @validate_request_params
    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task:
        task, run = await self.open_run(params)
        try:
            if params.configuration.return_immediately:
                return task_submitted(task)
            while (step := await run.next()).kind not in ("result", "input_required"):
                if step.kind == "gone":
                    raise InternalError("the task's events stopped")
        finally:
            await run.close(keep_running=True)
        assert step.result is not None
        return task_done(task, step.result)

    @validate_request_params
    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext,
    ) -> AsyncGenerator[Any]:
        task, run = await self.open_run(params)
        ids: dict[str, Any] = {"task_id": task.task_id, "context_id": at.context_of(task)}
        try:
            yield task_submitted(task, "running" if params.message.task_id else "queued")
            streamed = False
            while (step := await run.next()).kind not in ("result", "input_required"):
                if step.kind == "gone":
                    return
                if step.kind == "progress":
                    yield TaskStatusUpdateEvent(**ids, status=at.status("running", step.text, task=task))
                elif step.kind == "token":  # drafts; the final answer comes as its own artifact
                    yield TaskArtifactUpdateEvent(**ids, artifact=draft(step.text), append=streamed)
                    streamed = True
            result = step.result
            assert result is not None
            if streamed:
                yield TaskArtifactUpdateEvent(**ids, artifact=draft(""), append=True, last_chunk=True)
            for artifact in at.artifacts(result):
                yield TaskArtifactUpdateEvent(**ids, artifact=artifact, last_chunk=True)
            yield TaskStatusUpdateEvent(**ids, status=at.status(result.status, at.result_text(result), task=task))
        finally:
            await run.close(keep_running=True)

    @validate_request_params
    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        state = await self.gw.bridge.client.state(params.id)
        if state is None:
            raise TaskNotFoundError(f"no task {params.id!r} (unknown, or past its retention)")
        return at.task_of(state, params.history_length if params.HasField("history_length") else None)

    @validate_request_params
    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        client = self.gw.bridge.client
        state = await client.state(params.id)
        if state is None:
            raise TaskNotFoundError(f"no task {params.id!r} (unknown, or past its retention)")
        if state.status in FINAL_STATUSES:
            raise TaskNotCancelableError(f"task {params.id} already ended: {state.status}")
        await client.cancel(params.id, "cancelled by an A2A client")
        end = time.monotonic() + CANCEL_WAIT_S
        while state.status not in FINAL_STATUSES and time.monotonic() < end:
            await asyncio.sleep(0.1)
            state = await client.state(params.id) or state
        return at.task_of(state)

    async def on_list_tasks(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError("tasks are not listed: GetTask one by its id")

    async def on_subscribe_to_task(self, params: Any, context: ServerCallContext) -> AsyncGenerator[Any]:
        raise UnsupportedOperationError("resubscribing is not offered: GetTask polls a task on any replica")
        yield

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(self, params: Any, context: ServerCallContext) -> Any:
        raise ExtendedAgentCardNotConfiguredError


def draft(text: str) -> Artifact:
    return Artifact(artifact_id="draft", name="draft", description="tokens as the agent generates them",
                    parts=[Part(text=text)])


def task_submitted(task: TaskSubmit, status: str = "queued") -> Task:
    return Task(id=task.task_id, context_id=at.context_of(task), status=at.status(status, task=task),
                history=[at.user_message(task)])


def task_done(task: TaskSubmit, result: TaskResult) -> Task:
    """The task as it ended, or as it waits for a review (the proposed artifacts)."""
    out = Task(id=task.task_id, context_id=result.thread_id or at.context_of(task),
               status=at.status(result.status, at.result_text(result), task=task, at=result.finished_at),
               artifacts=at.artifacts(result), history=[at.user_message(task)])
    out.metadata.update({"trace_id": result.trace_id})
    if result.review:
        out.metadata.update({"review_round": result.review[-1].n})
    return out


def endpoints() -> tuple[str | None, ...]:
    """The A2A endpoints: the syndicate (None) and every agent of the registry."""
    return (None, *registry.agent_names())
