"""The gateway's A2A agents against the running stack, with the official ``a2a-sdk`` client:
cards found at the well-known path, send, stream, get and cancel a task."""

from __future__ import annotations

import uuid

import httpx
import pytest
from a2a.client import A2AClientError
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from shared import registry
from tests.conftest import until
from tests.protocols.conftest import KEY, SENTENCE, Stack, a2a_client, mcp_client

pytestmark = pytest.mark.integration

DONE = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED


def ask(text: str, *, immediately: bool = False, context: str | None = None, task_id: str | None = None,
        **metadata: object) -> SendMessageRequest:
    msg = new_text_message(text, role=Role.ROLE_USER, context_id=context or f"ctx-{uuid.uuid4().hex[:8]}", task_id=task_id)
    req = SendMessageRequest(message=msg, configuration=SendMessageConfiguration(return_immediately=immediately))
    if metadata:
        req.metadata.update(metadata)
    return req


async def collect(stream) -> list[StreamResponse]:  # type: ignore[no-untyped-def]
    return [event async for event in stream]


def artifacts_of(task) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {a.name: MessageToDict(a) for a in task.artifacts}


def test_cards_name_every_agent_of_the_registry(stack: Stack) -> None:
    card = httpx.get(f"{stack.url}/.well-known/agent-card.json").json()  # public: no key needed
    assert [s["id"] for s in card["skills"]] == list(registry.agent_names())
    assert card["supportedInterfaces"] == [{"url": f"{stack.url}/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]
    assert card["capabilities"]["streaming"] is True
    assert "bearer" in card["securitySchemes"]
    for agent in registry.agent_names():
        own = httpx.get(f"{stack.url}/a2a/{agent}/.well-known/agent-card.json").json()
        assert [s["id"] for s in own["skills"]] == [agent]
        assert own["supportedInterfaces"][0]["url"] == f"{stack.url}/a2a/{agent}"
        assert f"endpoint:/a2a/{agent}" in next(s for s in card["skills"] if s["id"] == agent)["tags"]
    assert httpx.get(f"{stack.url}/a2a/nobody/.well-known/agent-card.json").status_code == 404


async def test_send_runs_a_code_task_with_its_artifacts(stack: Stack) -> None:
    async with a2a_client(stack, "coder", streaming=False) as client:
        req = ask("Write square(x).")
        [event] = await collect(client.send_message(req))
    task = event.task
    assert task.status.state == DONE, MessageToDict(task.status)
    assert task.context_id == req.message.context_id
    arts = artifacts_of(task)
    assert "x * x" in arts["code"]["parts"][0]["text"]
    assert arts["tests"]["parts"][0]["data"]["runs"][0]["status"] == "ok"
    assert task.history[0].parts[0].text == "Write square(x)."
    assert task.metadata["trace_id"]


async def test_stream_sends_status_drafts_and_final_artifacts_with_citations(stack: Stack) -> None:
    async with mcp_client(stack) as mcp:
        await mcp.call_tool("ingest", {"paths": [str(stack.docs)], "collection": "a2a-docs"})
    async with a2a_client(stack, "reasoner") as client:
        events = await collect(client.send_message(ask("How does the syndicate route every task to an agent over NATS?", collection="a2a-docs")))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update"
    assert events[-1].status_update.status.state == DONE
    assert "status_update" in kinds[1:-1]  # progress while it ran
    drafts = [e.artifact_update for e in events if e.HasField("artifact_update") and e.artifact_update.artifact.name == "draft"]
    assert drafts and not drafts[0].append and all(d.append for d in drafts[1:]) and drafts[-1].last_chunk
    finals = {e.artifact_update.artifact.name: e.artifact_update.artifact for e in events
              if e.HasField("artifact_update") and e.artifact_update.artifact.name != "draft"}
    assert SENTENCE.strip() in finals["answer"].parts[0].text
    citation = MessageToDict(finals["citations"].parts[0].data)["citations"][0]
    assert citation["path"].endswith("routing.md")


async def test_get_answers_a_task_sent_to_return_immediately(stack: Stack) -> None:
    async with a2a_client(stack, streaming=False) as client:
        [event] = await collect(client.send_message(ask("Write a function square(x).", immediately=True)))
        assert event.task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        task_id = event.task.id
        # Known from the moment the send returned (it raced the router's record: "no task").
        first = await client.get_task(GetTaskRequest(id=task_id))
        assert first.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING, DONE)

        async def done() -> object:
            task = await client.get_task(GetTaskRequest(id=task_id))
            return task if task.status.state == DONE else None

        task = await until(done, "the task never completed")
    assert "code" in artifacts_of(task)
    assert task.context_id == event.task.context_id


async def test_cancel_stops_a_running_task(stack: Stack) -> None:
    async with a2a_client(stack, "reasoner", streaming=False) as client:
        [event] = await collect(client.send_message(ask("Explain everything.", immediately=True)))
        task_id = event.task.id

        async def working() -> bool:  # wait until an agent works on it
            return (await client.get_task(GetTaskRequest(id=task_id))).status.state == TaskState.TASK_STATE_WORKING

        await until(working, "the task never ran")
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError, match="already ended"):  # a task ends once
            await client.cancel_task(CancelTaskRequest(id=task_id))
        with pytest.raises(TaskNotFoundError, match="no task"):
            await client.get_task(GetTaskRequest(id="t-nosuchtask"))


def test_bad_messages_are_protocol_errors(stack: Stack) -> None:
    rpc = f"{stack.url}/a2a"
    headers = {**stack.headers(), "A2A-Version": "1.0"}

    def call(body: object, **kw: object) -> dict:
        r = httpx.post(rpc, headers=headers, json=body, **kw)  # type: ignore[arg-type]
        assert r.status_code == 200
        return r.json()["error"]

    assert httpx.post(rpc, headers=headers, content=b"{nope").json()["error"]["code"] == -32700
    assert call({"jsonrpc": "2.0", "id": 1, "method": "NoSuchMethod"})["code"] == -32601
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}
    url_part = {**message, "parts": [{"url": "https://example.org/x"}]}
    assert call({"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {"message": url_part}})["code"] == -32005
    empty = {**message, "parts": [{"text": "  "}]}
    assert call({"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"message": empty}})["code"] == -32602
    follow_up = {**message, "taskId": "t-123"}  # a message in a task decides its review: it must exist
    assert call({"jsonrpc": "2.0", "id": 4, "method": "SendMessage", "params": {"message": follow_up}})["code"] == -32001
    huge = {**message, "parts": [{"text": "x" * 300_000}]}
    assert "text" in call({"jsonrpc": "2.0", "id": 5, "method": "SendMessage", "params": {"message": huge}})["message"]
    assert call({"jsonrpc": "2.0", "id": 6, "method": "ListTasks", "params": {}})["code"] == -32004


async def test_an_unauthorised_call_is_refused(stack: Stack) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t-x"}}
    async with httpx.AsyncClient() as http:
        for key in (None, "wrong"):
            r = await http.post(f"{stack.url}/a2a", headers={**stack.headers(key), "A2A-Version": "1.0"}, json=body)
            assert r.status_code == 401
    async with a2a_client(stack, key="wrong") as client:
        with pytest.raises(A2AClientError):
            await client.get_task(GetTaskRequest(id="t-x"))
    assert KEY


async def test_review_reports_input_required_and_a_reply_resumes_it(stack: Stack) -> None:
    context = f"ctx-{uuid.uuid4().hex[:8]}"
    async with a2a_client(stack, "coder") as client:  # streaming: the stream ends on input-required
        events = await collect(client.send_message(ask("Write square(x).", context=context, review=True)))
    last = events[-1].status_update
    assert last.status.state == INPUT_REQUIRED and "review" in last.status.message.parts[0].text
    proposed = {e.artifact_update.artifact.name for e in events if e.HasField("artifact_update")}
    assert "code" in proposed  # the proposed answer's evidence comes with the question
    task_id = last.task_id
    async with a2a_client(stack, "coder", streaming=False) as client:
        [revised] = await collect(client.send_message(ask("Add a docstring.", context=context, task_id=task_id)))
        assert revised.task.status.state == INPUT_REQUIRED and revised.task.metadata["review_round"] == 2
        waiting = await client.get_task(GetTaskRequest(id=task_id))
        assert waiting.status.state == INPUT_REQUIRED and "code" in artifacts_of(waiting)
        [approved] = await collect(client.send_message(ask("approve", context=context, task_id=task_id)))
        assert approved.task.status.state == DONE and approved.task.context_id == context
        with pytest.raises(InvalidParamsError, match="not waiting for a review"):
            await collect(client.send_message(ask("approve", context=context, task_id=task_id)))
        # The next message in the context continues the conversation.
        [follow_up] = await collect(client.send_message(ask("Now name it sq.", context=context)))
        assert follow_up.task.status.state == DONE
        got = await client.get_task(GetTaskRequest(id=follow_up.task.id))
        assert got.context_id == context and got.metadata["thread_id"] == context
    async with httpx.AsyncClient(headers=stack.headers()) as http:
        thread = (await http.get(f"{stack.url}/v1/threads/{context}")).json()
    assert [(t["task_id"], t["follows"]) for t in thread["turns"]] == [(task_id, None), (follow_up.task.id, task_id)]
