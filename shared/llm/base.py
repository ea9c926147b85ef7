"""The engine interface agents program against, and a scripted fake for tests.

``TextEngine.generate`` runs one chat generation off the event loop, streams text pieces
to ``on_token`` as they come, honours the request's deadline and a ``cancel(request_id)``,
and raises ``QueueFull`` / ``DeadlineExceeded`` / ``Cancelled`` from shared.errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from shared.errors import Cancelled, DeadlineExceeded

TokenCallback = Callable[[str], Awaitable[None]]


class GenerationRequest(BaseModel):
    # OpenAI-style chat messages (an assistant turn may carry "tool_calls", a "tool" turn
    # "tool_call_id"), rendered with the model's chat template.
    messages: list[dict[str, Any]] = Field(default_factory=list)
    prompt: str | None = None  # raw text, no template (instead of messages)
    tools: list[dict[str, Any]] | None = None  # OpenAI-style tools, for a template that renders them
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None  # sampling seed at temperature > 0 (None: the engine's own)
    stop: list[str] = Field(default_factory=list)
    json_schema: dict[str, Any] | None = None  # constrain output to this JSON schema
    grammar: str | None = None  # constrain output to this GBNF grammar (wins over json_schema)
    # Sampling knobs at temperature > 0 (None: the engine's defaults, top_k 40, top_p 0.95,
    # min_p 0.05); the penalties apply at any temperature (None: off).
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    deadline: float | None = None  # epoch seconds
    request_id: str = ""  # usually the task id: cancel(request_id) stops it
    speculative: bool | None = None  # None: the role's roster setting


class GenerationResult(BaseModel):
    text: str
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    ttft_s: float | None = None
    tokens_per_s: float = 0.0
    finish_reason: Literal["stop", "length", "cancelled", "timeout"] = "stop"
    spec_acceptance: float | None = None


@runtime_checkable
class TextEngine(Protocol):
    name: str

    async def generate(
        self, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> GenerationResult: ...

    def cancel(self, request_id: str) -> bool: ...

    def stats(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class ScriptedEngine:
    """A fake engine that answers with scripted replies in order (the last one repeats).

    A reply may be a callable taking the request, so tests can answer from the prompt.
    """

    def __init__(
        self,
        replies: Sequence[str | Callable[[GenerationRequest], str]],
        *,
        name: str = "scripted",
        token_delay_s: float = 0.0,
        slots: int = 1,
    ) -> None:
        self.name = name
        self.slots = slots  # what stats() reports: agents take this many jobs at once
        self._replies = list(replies)
        self._delay = token_delay_s
        self._cancelled: set[str] = set()
        self.requests: list[GenerationRequest] = []
        self._running = 0

    async def generate(
        self, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        self.requests.append(request)
        i = min(len(self.requests) - 1, len(self._replies) - 1)
        reply = self._replies[i]
        text = reply(request) if callable(reply) else reply
        start = time.monotonic()
        out: list[str] = []
        self._running += 1
        try:
            for piece in _pieces(text):
                if request.request_id in self._cancelled:
                    self._cancelled.discard(request.request_id)
                    raise Cancelled(f"request {request.request_id} cancelled")
                if request.deadline is not None and time.time() > request.deadline:
                    raise DeadlineExceeded("generation passed its deadline")
                if self._delay:
                    await asyncio.sleep(self._delay)
                out.append(piece)
                if on_token is not None:
                    await on_token(piece)
        finally:
            self._running -= 1
        seconds = time.monotonic() - start
        n = len(out)
        return GenerationResult(
            text="".join(out), model=self.name,
            input_tokens=(len(request.prompt or "") + sum(len(m.get("content") or "") for m in request.messages)) // 4,
            output_tokens=n, seconds=seconds, ttft_s=0.0, tokens_per_s=n / seconds if seconds else 0.0,
        )

    def cancel(self, request_id: str) -> bool:
        self._cancelled.add(request_id)
        return True

    def stats(self) -> dict[str, Any]:
        return {"queue_depth": 0, "waiting": 0, "running": min(self._running, self.slots), "slots": self.slots}

    async def aclose(self) -> None:
        return None


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
