"""The gateway's protocol edges without a bus: A2A messages to TaskSubmit and task state
to A2A tasks, the cards from the registry, the ingest allow-list, MCP's argument checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import Part, Role, TaskState
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from mcp import Client, MCPError
from mcp_types import INVALID_PARAMS

from services.gateway import a2a_tasks as at
from services.gateway.a2a_cards import agent_card
from services.gateway.ingest_access import IngestAccess
from services.gateway.mcp_tools import build_mcp
from services.gateway.settings import GatewaySettings
from shared import registry
from shared.contracts import Citation, FileIn, SandboxRunSummary, TaskResult, TaskSubmit
from shared.contracts import TaskState as SyndicateState
from shared.errors import NotAllowed
from tests.spine.test_registry import with_critic  # noqa: F401 - a fixture


def message(*parts: Part, **kw: str):  # type: ignore[no-untyped-def]
    msg = new_text_message("", role=Role.ROLE_USER, **kw)
    del msg.parts[:]
    msg.parts.extend(parts)
    return msg


def test_a_message_becomes_one_task_with_files_and_options() -> None:
    msg = message(Part(text="Fix the bug."), Part(text="def f(): pass", filename="f.py"),
                  Part(raw=b"x = 1\n", filename="g.py"), context_id="ctx-1")
    msg.metadata.update({"collection": "docs"})
    task = at.to_submit(msg, {"max_tokens": 64}, "coder", 30.0)
    assert (task.text, task.agent, task.kind, task.collection, task.max_tokens) == ("Fix the bug.", "coder", "code", "docs", 64)
    assert [f.path for f in task.files] == ["f.py", "g.py"] and task.files[1].content == "x = 1\n"
    assert task.context_id == "ctx-1" and at.context_of(task) == "ctx-1"
    assert at.to_submit(message(Part(text="Hi")), {}, None, 30.0).kind == "auto"


@pytest.mark.parametrize(("parts", "error"), [
    ((Part(url="https://example.org/a"),), ContentTypeNotSupportedError),
    ((Part(raw=b"\xff\xfe\x00", filename="bin"),), ContentTypeNotSupportedError),
    ((Part(text="   "),), InvalidParamsError),
    ((Part(text="x" * 300_000),), InvalidParamsError),
])
def test_messages_the_syndicate_cannot_take_are_refused(parts: tuple[Part, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        at.to_submit(message(*parts), {}, None, 30.0)


def test_a_follow_up_message_and_a_bad_context_are_refused() -> None:
    with pytest.raises(InvalidParamsError, match="input-required takes another message"):
        at.to_submit(message(Part(text="more"), task_id="t-1"), {}, None, 30.0)
    with pytest.raises(InvalidParamsError, match="context_id"):
        at.to_submit(message(Part(text="hi"), context_id="no spaces allowed"), {}, None, 30.0)


def test_task_state_becomes_an_a2a_task_with_artifacts() -> None:
    submit = TaskSubmit(task_id="t-1", text="Write f.", kind="code", context_id="c-9")
    result = TaskResult(
        task_id="t-1", status="done", kind="code", answer="done", code="def f(): ...", diff="--- a\n+++ b\n",
        tests=[SandboxRunSummary(name="t", status="ok")], files=[FileIn(path="f.py", content="def f(): ...")],
        citations=[Citation(path="a.md", start_line=1, end_line=2, score=0.5)],
    )
    task = at.task_of(SyndicateState(task=submit, status="done", route=["coder"], trace_id="ab" * 16, result=result))
    assert (task.id, task.context_id, task.status.state) == ("t-1", "c-9", TaskState.TASK_STATE_COMPLETED)
    assert [a.name for a in task.artifacts] == ["answer", "code", "tests", "files", "diff", "citations"]
    assert task.artifacts[3].parts[0].filename == "f.py"
    assert task.history[0].parts[0].text == "Write f." and task.metadata["trace_id"] == "ab" * 16
    assert "unverified" not in task.metadata
    result.unverified = True  # done, but no check the task stated stood behind the code
    task = at.task_of(SyndicateState(task=submit, status="done", route=["coder"], result=result))
    assert task.metadata["unverified"] is True and task.status.state == TaskState.TASK_STATE_COMPLETED
    assert not at.task_of(SyndicateState(task=submit, status="running"), history_length=0).history
    for status, state in (("queued", "SUBMITTED"), ("running", "WORKING"), ("timeout", "FAILED"), ("cancelled", "CANCELED")):
        got = at.task_of(SyndicateState(task=submit, status=status)).status.state  # type: ignore[arg-type]
        assert TaskState.Name(got) == f"TASK_STATE_{state}"


def test_cards_follow_the_registry(with_critic: registry.Service) -> None:  # noqa: F811
    card = agent_card(None, "http://gw:8080/", secured=False)
    assert [s.id for s in card.skills] == ["coder", "reasoner", "critic"]
    assert card.supported_interfaces[0].url == "http://gw:8080/a2a" and not card.security_schemes
    own = agent_card("critic", "http://gw:8080", secured=True)
    assert own.supported_interfaces[0].url == "http://gw:8080/a2a/critic" and "bearer" in own.security_schemes


def test_the_ingest_allow_list(tmp_path: Path) -> None:
    allowed, state, outside = tmp_path / "allowed", tmp_path / "allowed" / ".syndicate", tmp_path / "outside"
    for d in (allowed / "docs", state, outside):
        d.mkdir(parents=True)
    (outside / "secret").write_text("s")
    (allowed / "docs" / "link").symlink_to(outside / "secret")
    access = IngestAccess.of([allowed], state)
    assert access.folder(str(allowed / "docs")) == allowed / "docs"
    assert access.folder("docs") == allowed / "docs"  # relative: to the first allowed folder
    for bad in (str(outside), str(state), "../outside", "/etc", str(allowed / "docs" / "link")):
        with pytest.raises(NotAllowed):
            access.folder(bad)
    assert access.refusal(allowed / "docs" / "link") is not None
    with pytest.raises(NotAllowed, match="reads no folders"):
        IngestAccess.of([], state).folder(str(allowed))


async def test_mcp_arguments_are_checked_before_any_bus_work() -> None:
    gw = SimpleNamespace(settings=GatewaySettings(), broker=None, bridge=None)  # any bus use would fail
    async with Client(build_mcp(gw)) as client:  # type: ignore[arg-type]
        solve = next(t for t in (await client.list_tools()).tools if t.name == "solve")
        assert solve.input_schema["properties"]["agent"]["anyOf"][0]["enum"] == list(registry.agent_names())
        for tool, args in (("run_code", {"code": 5}), ("solve", {"text": "x", "kind": "poem"}),
                           ("search", {"query": "q", "top_k": 1000}), ("ingest", {"paths": ["/etc"]}), ("nope", {})):
            with pytest.raises(MCPError) as err:
                await client.call_tool(tool, args)
            assert err.value.code == INVALID_PARAMS, (tool, err.value.message)
