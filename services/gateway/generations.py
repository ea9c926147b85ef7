"""How an OpenAI (chat) completion request for a served model becomes a GenerateRequest,
and how its events and GenerateReply become OpenAI response bodies and stream chunks
(tool calls as OpenAI documents them: ``message.tool_calls`` with the arguments as a JSON
string, ``finish_reason: "tool_calls"``, one ``delta.tool_calls`` entry per call)."""

from __future__ import annotations

import json
import time
from typing import Any

from services.gateway.completions import Endpoint, sse
from services.gateway.openai_schema import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    NamedToolChoice,
)
from shared.contracts import (
    ChatTurn,
    GenerateChoice,
    GenerateReply,
    GenerateRequest,
    ToolCall,
    ToolSpec,
)

ROLES = {"developer": "system", "function": "tool"}


def to_generate(body: ChatCompletionRequest | CompletionRequest, *, timeout_s: float) -> GenerateRequest:
    """The GenerateRequest of a request for a served model (raises ValueError /
    ValidationError with the reason for a 400)."""
    fields: dict[str, Any] = {
        "model": body.model, "stop": body.stops, "n": body.n or 1, "timeout_s": timeout_s, "stream": body.stream,
        "seed": body.seed,
    }
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"):
        if (value := getattr(body, name)) is not None:
            fields[name] = value
    if isinstance(body, CompletionRequest):
        return GenerateRequest(prompt=body.prompt_text(), max_tokens=body.max_tokens, **fields)
    fields["max_tokens"] = body.max_completion_tokens or body.max_tokens
    fields["messages"] = [turn(m, i) for i, m in enumerate(body.messages)]
    if body.response_format is not None and body.response_format.type == "json_object":
        fields["json_schema"] = {"type": "object"}
    elif body.response_format is not None and body.response_format.type == "json_schema":
        spec = body.response_format.json_schema
        fields["json_schema"] = spec.schema_ if spec is not None else {"type": "object"}
    if body.tools:
        fields["tools"] = [ToolSpec(name=t.function.name, description=t.function.description or "",
                                    parameters=t.function.parameters or {"type": "object", "properties": {}})
                           for t in body.tools]
        choice = body.tool_choice or "auto"
        if isinstance(choice, NamedToolChoice):
            fields["tool_choice"], fields["tool_name"] = "function", choice.function.name
        else:
            fields["tool_choice"] = choice
        if body.parallel_tool_calls is not None:
            fields["parallel_tool_calls"] = body.parallel_tool_calls
    return GenerateRequest(**fields)


def turn(m: ChatMessage, index: int) -> ChatTurn:
    """One message of the history as the contract's ChatTurn."""
    calls = []
    for j, call in enumerate(m.tool_calls or []):
        args = call.function.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError as exc:
                raise ValueError(f"messages.{index}.tool_calls.{j}.function.arguments is not JSON: {exc}") from exc
        if not isinstance(args, dict):
            raise ValueError(f"messages.{index}.tool_calls.{j}.function.arguments is not a JSON object")
        calls.append(ToolCall(id=call.id or f"call_{index}_{j}", name=call.function.name, arguments=args))
    role = ROLES.get(m.role, m.role)
    return ChatTurn(role=role, content=m.text(), tool_calls=calls, tool_call_id=m.tool_call_id,  # type: ignore[arg-type]
                    name=m.name if role == "tool" else None)


# --- responses -------------------------------------------------------------------------------
def response_id(endpoint: Endpoint, request_id: str) -> str:
    return f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{request_id}"


def tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}
    return {"index": index, **out} if index is not None else out


def usage_body(reply: GenerateReply | None) -> dict[str, int]:
    prompt = reply.usage.input_tokens if reply else 0
    completion = reply.usage.output_tokens if reply else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def syndicate_body(reply: GenerateReply) -> dict[str, Any]:
    """Facts a client may read besides OpenAI's fields (the SDKs keep unknown fields)."""
    out: dict[str, Any] = {"request_id": reply.request_id, "trace_id": reply.trace_id, "service": reply.service,
                           "instance": reply.instance, "tokens_per_s": round(reply.tokens_per_s, 2),
                           "ttft_s": reply.usage.ttft_s}
    invalid = [{"index": c.index, **bad.model_dump()} for c in reply.choices for bad in c.invalid_tool_calls]
    if invalid:
        out["invalid_tool_calls"] = invalid  # written as calls, broken: passed on as text
    return out


def message_body(c: GenerateChoice) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": c.text if c.text or not c.tool_calls else None}
    if c.tool_calls:
        msg["tool_calls"] = [tool_call_json(call) for call in c.tool_calls]
    return msg


def final_body(endpoint: Endpoint, model: str, reply: GenerateReply, created: int | None = None) -> dict[str, Any]:
    """The non-streaming response."""
    created = created or int(time.time())
    choices: list[dict[str, Any]]
    if endpoint == "chat":
        choices = [{"index": c.index, "message": message_body(c), "finish_reason": c.finish_reason, "logprobs": None}
                   for c in reply.choices]
    else:
        choices = [{"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                   for c in reply.choices]
    return {
        "id": response_id(endpoint, reply.request_id), "object": "chat.completion" if endpoint == "chat" else "text_completion",
        "created": created, "model": model, "choices": choices, "usage": usage_body(reply),
        "system_fingerprint": None, "syndicate": syndicate_body(reply),
    }


class ChunkWriter:
    """The SSE chunks of one streamed model request: the opening role of each choice,
    text and tool-call deltas as they come, then whatever the stream lost (the final
    reply is whole), each choice's finish, the usage when asked, and [DONE]."""

    def __init__(self, endpoint: Endpoint, model: str, request_id: str, include_usage: bool) -> None:
        self.endpoint, self.model, self.include_usage = endpoint, model, include_usage
        self.id = response_id(endpoint, request_id)
        self.created = int(time.time())
        self.text: dict[int, list[str]] = {}  # choice -> text sent
        self.calls: dict[int, list[str]] = {}  # choice -> ids of calls sent

    def chunk(self, index: int, delta: dict[str, Any] | None = None, *, text: str | None = None,
              finish: str | None = None, **extra: Any) -> bytes:
        if self.endpoint == "chat":
            choice: dict[str, Any] = {"index": index, "delta": delta or {}, "finish_reason": finish, "logprobs": None}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        return sse({"id": self.id, "object": obj, "created": self.created, "model": self.model,
                    "choices": [choice], **extra})

    def _opening(self, index: int) -> dict[str, Any]:
        """The first delta of a choice carries its role."""
        if index in self.text:
            return {}
        self.text[index], self.calls[index] = [], []
        return {"role": "assistant"}

    def text_piece(self, index: int, text: str) -> bytes:
        delta = {**self._opening(index), "content": text}
        self.text[index].append(text)
        return self.chunk(index, delta, text=text)

    def tool_call(self, index: int, call: ToolCall) -> bytes:
        delta = self._opening(index)
        if "role" in delta:
            delta["content"] = None
        n = len(self.calls[index])
        self.calls[index].append(call.id)
        return self.chunk(index, {**delta, "tool_calls": [tool_call_json(call, n)]})

    def ending(self, reply: GenerateReply) -> list[bytes]:
        out: list[bytes] = []
        for c in reply.choices:
            sent = "".join(self.text.get(c.index, []))
            missing_text = c.text[len(sent):] if c.text.startswith(sent) else ""
            if missing_text or c.index not in self.text:
                out.append(self.text_piece(c.index, missing_text))
            if self.endpoint == "chat":
                for call in c.tool_calls:
                    if call.id not in self.calls[c.index]:
                        out.append(self.tool_call(c.index, call))
            out.append(self.chunk(c.index, {}, finish=c.finish_reason, syndicate=syndicate_body(reply)))
        if self.include_usage:
            obj = "chat.completion.chunk" if self.endpoint == "chat" else "text_completion"
            out.append(sse({"id": self.id, "object": obj, "created": self.created, "model": self.model,
                            "choices": [], "usage": usage_body(reply)}))
        out.append(sse("[DONE]"))
        return out
