"""The gateway's MCP server against the running stack, with the official ``mcp`` client
over streamable HTTP (and ``syndicate mcp`` over stdio)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest
from mcp import Client as StdioClient
from mcp import MCPError, StdioServerParameters
from mcp_types import INVALID_PARAMS, ElicitRequestParams, ElicitResult

from tests.conftest import REPO, WAIT_S
from tests.protocols.conftest import SENTENCE, Stack, mcp_client

pytestmark = pytest.mark.integration


async def test_tools_and_resources_are_listed(stack: Stack) -> None:
    async with mcp_client(stack) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"run_code", "search", "ingest", "solve"}
        assert tools["solve"].input_schema["required"] == ["text"]
        assert tools["run_code"].description and "sandbox" in tools["run_code"].description
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert resources == ["syndicate://collections"] and templates == ["syndicate://collections/{name}"]


async def test_run_code_ok_timeout_and_hostile_programs(stack: Stack) -> None:
    async with mcp_client(stack) as client:
        ok = await client.call_tool("run_code", {"code": "import sys\nprint(sys.stdin.read().upper())", "stdin": "hi"})
        assert not ok.is_error
        assert ok.structured_content["status"] == "ok" and ok.structured_content["stdout"] == "HI\n"
        assert ok.structured_content["isolation"] == "full"

        slow = await client.call_tool("run_code", {"code": "while True:\n    pass", "timeout_s": 1})
        assert slow.structured_content["status"] == "timeout"

        # Hostile programs are verdicts, not crashes: no secrets, no network, no memory bomb.
        hostile = {
            "print(open('/etc/shadow').read())": "runtime_error",
            "import socket\nsocket.create_connection(('127.0.0.1', 4222), timeout=2)": "runtime_error",
            "x = bytearray(10**10)": None,  # memory_limit or runtime_error (MemoryError): never ok
        }
        for code, status in hostile.items():
            out = (await client.call_tool("run_code", {"code": code, "memory_mb": 64})).structured_content
            assert out["status"] != "ok", code
            if status:
                assert out["status"] == status, (code, out)
        # The gateway still serves after them.
        again = await client.call_tool("run_code", {"code": "print(6 * 7)"})
        assert again.structured_content["stdout"] == "42\n"


async def test_bad_arguments_are_invalid_params_errors(stack: Stack) -> None:
    async with mcp_client(stack) as client:
        cases = [
            ("run_code", {"code": 5}, "code"),
            ("run_code", {"code": "print(1)", "timeout_s": -1}, "timeout_s"),
            ("search", {"query": "x", "collection": "../etc"}, "collection"),
            ("solve", {"text": ""}, "text"),
            ("solve", {"text": "hi", "agent": "nobody"}, "agent"),
            ("nope", {}, "unknown tool"),
        ]
        for tool, args, named in cases:
            with pytest.raises(MCPError) as err:
                await client.call_tool(tool, args)
            assert err.value.code == INVALID_PARAMS, (tool, args)
            assert named in err.value.message, (tool, err.value.message)


async def test_ingest_reads_only_allowed_folders_then_search_finds_it(stack: Stack) -> None:
    async with mcp_client(stack) as client:
        for path in ("/etc", str(stack.services.state_dir), str(stack.docs.parent.parent), "../../etc"):
            with pytest.raises(MCPError) as err:
                await client.call_tool("ingest", {"paths": [path], "collection": "stolen"})
            assert err.value.code == INVALID_PARAMS, path
            assert "may read" in err.value.message or "never read" in err.value.message, err.value.message
        # A link inside the allowed folder that points outside it is not followed.
        (stack.docs / "shadow.md").symlink_to("/etc/passwd")
        try:
            done = await client.call_tool("ingest", {"paths": [str(stack.docs)], "collection": "notes"})
        finally:
            (stack.docs / "shadow.md").unlink()
        summary = done.structured_content
        assert summary["files"] == 1 and summary["chunks"] >= 1, summary
        assert any(s.startswith("/etc/passwd: outside the folders") for s in summary["skipped"]), summary

        hits = (await client.call_tool("search", {"query": "which agent gets a task", "collection": "notes"})).structured_content
        assert hits["hits"] and hits["hits"][0]["path"].endswith("routing.md")
        counts = json.loads((await client.read_resource("syndicate://collections")).contents[0].text)
        assert counts.get("notes", 0) >= 1
        with pytest.raises(MCPError):
            await client.read_resource("syndicate://collections/none-such")


async def test_solve_reports_progress_and_returns_the_tested_code(stack: Stack) -> None:
    notes: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        notes.append((value, message))

    async with mcp_client(stack) as client:
        result = await client.call_tool("solve", {"text": "Write square(x).", "kind": "code"}, progress_callback=progress)
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["status"] == "done" and "x * x" in out["code"] and out["tests"][0]["status"] == "ok"
    assert notes and any("coder" in (m or "") for _, m in notes), notes


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026 requests (a closed stream), sessions (notifications/cancelled)
async def test_cancelling_solve_cancels_the_task(stack: Stack, mode: str) -> None:
    started = asyncio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        started.set()

    text = f"Explain routing ({mode})."
    async with mcp_client(stack, mode=mode) as client:
        call = asyncio.create_task(client.call_tool("solve", {"text": text, "agent": "reasoner"}, progress_callback=progress))
        await asyncio.wait_for(started.wait(), 60)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await wait_for_cancelled_task(stack, text)


async def wait_for_cancelled_task(stack: Stack, text: str, timeout_s: float = WAIT_S) -> str:
    """The id of a task the router recorded as cancelled by a disconnected client."""
    import nats

    from shared import subjects
    from shared.contracts import TaskState

    nc = await nats.connect(stack.services.server.url)
    try:
        kv = await nc.jetstream().key_value(subjects.TASK_STATE_BUCKET)
        end = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < end:
            for key in await kv.keys():
                entry = await kv.get(key)
                state = TaskState.model_validate_json(entry.value)
                if state.status == "cancelled" and state.task.text == text:
                    return key
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
    raise AssertionError("no task was cancelled")


async def test_an_unauthorised_call_is_refused(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        for key in (None, "wrong-key"):
            r = await http.post(stack.mcp_url, headers=stack.headers(key), json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(Exception):  # noqa: B017 - the client raises its transport's error
        async with mcp_client(stack, key="wrong-key") as client:
            await client.list_tools()


def test_malformed_requests_get_jsonrpc_errors(stack: Stack) -> None:
    headers = {**stack.headers(), "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    r = httpx.post(stack.mcp_url, headers=headers, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = httpx.post(stack.mcp_url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "no/such/method",
                                                         "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    assert r.json()["error"]["code"] in (-32601, -32600), r.text


async def test_stdio_server_for_desktop_assistants(stack: Stack) -> None:
    env = {**os.environ, "SYNDICATE_NATS_URL": stack.services.server.url, "PYTHONPATH": str(REPO),
           "SYNDICATE_STATE_DIR": str(stack.services.state_dir)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "syndicate.cli", "mcp"], env=env, cwd=str(REPO))
    async with StdioClient(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"run_code", "search", "ingest", "solve"}
        out = await client.call_tool("run_code", {"code": "print('over stdio')"})
        assert out.structured_content["stdout"] == "over stdio\n"
        with pytest.raises(MCPError):  # no folder allowed unless the operator says so
            await client.call_tool("ingest", {"paths": [str(stack.docs)]})
    assert SENTENCE


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026: InputRequiredResult and a retry; sessions: mid-call
async def test_solve_with_review_asks_the_user(stack: Stack, mode: str) -> None:
    asked: list[str] = []

    async def decide(context: object, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        first = len(asked) == 1 and mode == "auto"
        content = {"decision": "revise", "feedback": "Add a docstring."} if first else {"decision": "approve"}
        return ElicitResult(action="accept", content=content)

    async with mcp_client(stack, mode=mode, elicitation_callback=decide) as client:
        result = await client.call_tool("solve", {"text": f"Write square(x) ({mode}).", "kind": "code", "review": True})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out["status"] == "done" and "x * x" in out["code"]
        assert len(asked) == (2 if mode == "auto" else 1) and "waits for your review" in asked[0] and "x * x" in asked[0]
        if mode == "auto":  # the answer's task id continues the conversation
            more = (await client.call_tool("solve", {"text": "Now name it sq.", "context": out["task_id"]})).structured_content
            assert more["status"] == "done" and more["thread_id"] == out["task_id"]


async def test_a_review_without_elicitation_waits_for_the_http_api(stack: Stack) -> None:
    async with mcp_client(stack) as client:  # no elicitation callback: the paused result comes back
        out = (await client.call_tool("solve", {"text": "Write square(x) (http).", "kind": "code", "review": True}))
    paused = out.structured_content
    assert paused["status"] == "input_required" and "/review" in paused["review"]
    async with httpx.AsyncClient(base_url=f"{stack.url}/v1", headers=stack.headers(), timeout=60) as http:
        task_id = paused["task_id"]
        assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "input_required"
        bad = await http.post(f"/tasks/{task_id}/review", json={"decision": "maybe"})
        assert bad.status_code == 400
        decided = await http.post(f"/tasks/{task_id}/review", json={"decision": "reject", "feedback": "no", "wait": True})
        assert decided.status_code == 200 and decided.json()["status"] == "rejected"
        again = await http.post(f"/tasks/{task_id}/review", json={"decision": "approve"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "wrong_state"
        assert (await http.get("/tasks/t-nosuchtask")).status_code == 404
