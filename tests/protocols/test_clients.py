"""The agent frameworks of docs/gateway.md, unchanged but for the base URL and the model
name, against the running stack (the coder's scripted model answers by rules: a tool call
for the question, the answer from the tool's result): the examples in examples/clients/
run as their users run them, and the requests Open WebUI makes."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO
from tests.protocols.conftest import CODER_MODEL, KEY, PRODUCT, WEATHER_RESULT, Stack

pytestmark = pytest.mark.integration


def run_example(stack: Stack, name: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "clients" / name), "--base-url", f"{stack.url}/v1",
         "--model", CODER_MODEL, "--api-key", KEY],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_the_openai_client_calls_the_tool_and_answers_from_it(stack: Stack) -> None:
    lines = run_example(stack, "openai_tools.py")
    assert lines == ['tool get_weather({"city": "Paris"}) -> 22 C and sunny', f"In Paris it is {WEATHER_RESULT}."]


def test_a_langgraph_react_agent_multiplies_with_its_python_tool(stack: Stack) -> None:
    lines = run_example(stack, "langgraph_react.py")
    assert lines[:2] == ["tool multiply({'a': 1234, 'b': 5678})", f"tool result: {PRODUCT}"]
    assert lines[-1] == f"1234 times 5678 is {PRODUCT}."


def test_the_agents_sdk_runs_a_function_tool_through_chat_completions(stack: Stack) -> None:
    lines = run_example(stack, "agents_sdk.py")
    assert lines == [f"tool result: {WEATHER_RESULT}", f"In Paris it is {WEATHER_RESULT}."]


def test_the_requests_open_webui_makes(stack: Stack) -> None:
    """An OpenAI connection in Open WebUI (URL {gateway}/v1, the API key): it lists the
    models, streams a chat with usage, and asks for a title without streaming."""
    headers = {**stack.headers(KEY), "Content-Type": "application/json"}
    listed = httpx.get(f"{stack.url}/v1/models", headers=headers).json()
    assert CODER_MODEL in [m["id"] for m in listed["data"]]
    body = {"model": CODER_MODEL, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Write square(x)."}]}
    with httpx.stream("POST", f"{stack.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "x * x" in "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    title = httpx.post(f"{stack.url}/v1/chat/completions", headers=headers, timeout=60, json={
        "model": CODER_MODEL, "stream": False, "max_tokens": 50,
        "messages": [{"role": "user", "content": "Create a concise title for: Write square(x)."}]}).json()
    assert title["choices"][0]["message"]["content"]
