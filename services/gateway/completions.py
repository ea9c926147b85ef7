"""How an OpenAI (chat) completion request becomes a TaskSubmit, and how the task's
events and TaskResult become OpenAI response bodies and stream chunks."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from services.gateway.openai_schema import (
    AUTO_MODEL,
    MODELS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
)
from shared.contracts import TaskResult, TaskSubmit, new_id

Endpoint = Literal["chat", "completion"]


def chat_text(messages: list[ChatMessage]) -> str:
    """The task text of a chat: the last user message first, earlier turns after it.

    The question leads because the router's rules read the start of the text (a
    conversation that began with a system prompt must not route as that prompt)."""
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    task = messages[last].text().strip()
    others = [m for i, m in enumerate(messages) if i != last and m.text().strip()]
    if not others:
        return task
    turns = "\n".join(f"[{m.role}] {m.text().strip()}" for m in others)
    return f"{task}\n\nEarlier conversation (context):\n{turns}"


def to_task(
    req: ChatCompletionRequest | CompletionRequest, *, timeout_s: float, task_id: str | None = None
) -> TaskSubmit:
    """The TaskSubmit for a request (raises KeyError for an unknown model, ValidationError
    when the text breaks the task contract, e.g. too long)."""
    kind = MODELS[req.model]
    if isinstance(req, ChatCompletionRequest):
        text = chat_text(req.messages)
        max_tokens = req.max_completion_tokens or req.max_tokens
    else:
        text = req.prompt_text()
        max_tokens = req.max_tokens
    return TaskSubmit(
        task_id=task_id or new_id("t-"), kind=kind, text=text, collection=req.collection,  # type: ignore[arg-type]
        timeout_s=timeout_s, max_tokens=max_tokens, agent=None if req.model == AUTO_MODEL else req.model,
    )


def response_id(endpoint: Endpoint, task_id: str) -> str:
    return f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{task_id}"


def usage_body(result: TaskResult | None) -> dict[str, int]:
    prompt = result.usage.input_tokens if result else 0
    completion = result.usage.output_tokens if result else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def syndicate_body(result: TaskResult) -> dict[str, Any]:
    """Extra facts a client may read (OpenAI SDK models keep unknown fields)."""
    return {
        "task_id": result.task_id, "trace_id": result.trace_id, "status": result.status, "kind": result.kind,
        "unverified": result.unverified,
        "code": result.code, "citations": [c.model_dump() for c in result.citations],
        "tests": [t.status for t in result.tests],
    }


def final_body(endpoint: Endpoint, model: str, result: TaskResult, created: int | None = None) -> dict[str, Any]:
    """The non-streaming response of a finished (done) task."""
    created = created or int(time.time())
    if endpoint == "chat":
        choice: dict[str, Any] = {
            "index": 0, "message": {"role": "assistant", "content": result.answer},
            "finish_reason": "stop", "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": result.answer, "finish_reason": "stop", "logprobs": None}
        obj = "text_completion"
    return {
        "id": response_id(endpoint, result.task_id), "object": obj, "created": created, "model": model,
        "choices": [choice], "usage": usage_body(result), "system_fingerprint": None,
        "syndicate": syndicate_body(result),
    }


def chunk(
    endpoint: Endpoint, model: str, task_id: str, created: int, *, text: str | None = None,
    role: bool = False, finish: str | None = None,
) -> dict[str, Any]:
    """One streaming chunk (a delta of text, the opening role, or the finish marker)."""
    if endpoint == "chat":
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {"id": response_id(endpoint, task_id), "object": obj, "created": created, "model": model, "choices": [choice]}


def usage_chunk(endpoint: Endpoint, model: str, result: TaskResult, created: int) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    obj = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
    return {
        "id": response_id(endpoint, result.task_id), "object": obj, "created": created, "model": model,
        "choices": [], "usage": usage_body(result), "syndicate": syndicate_body(result),
    }


def remainder(streamed: str, answer: str) -> str:
    """What to send after the live tokens so the client ends with the final answer.

    Agents stream raw generation; the final answer may extend it (send the rest) or be
    a different text (the coder's verified code plus its test verdict after repairs):
    then it follows the drafts after a blank line."""
    if not answer or answer == streamed or answer.strip() == streamed.strip():
        return ""
    if answer.startswith(streamed):
        return answer[len(streamed):]
    return f"\n\n{answer}" if streamed else answer


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event line pair."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
