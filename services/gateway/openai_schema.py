"""The OpenAI HTTP API's request bodies, as far as the gateway serves them.

Unknown fields are ignored (clients send many), but fields whose meaning the syndicate
cannot honour (n > 1, tools, logprobs, non-text content, echo) are refused with 400
rather than silently dropped. ``collection`` is a syndicate extension (the OpenAI SDK's
``extra_body``): answer from that retriever collection.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import registry

AUTO_MODEL = "syndicate"  # auto-routed: the router picks the agents
# model id -> TaskSubmit.kind. One id per agent of the registry, plus AUTO_MODEL.
MODELS: dict[str, str] = {
    AUTO_MODEL: "auto", **{a.name: a.task_kind or "auto" for a in registry.agents().values()},
}
MODEL_DESCRIPTIONS: dict[str, str] = {
    AUTO_MODEL: f"auto-routed: the router picks {' and/or '.join(registry.agent_names())}",
    **{a.name: a.description for a in registry.agents().values()},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; non-text parts (images, audio) are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        out: list[str] = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content part type {part.type!r} is not supported (text only)")
            out.append(part.text)
        return "\n".join(out)


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: Annotated[str, Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None  # one choice per task
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None  # accepted, agents decide
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    collection: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Generation):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    tools: list[dict[str, Any]] | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("tools are not supported")
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ValueError("only response_format type 'text' is supported")
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages must contain a user message")
        for m in self.messages:
            m.text()  # refuses non-text parts at validation time
        return self


class CompletionRequest(_Generation):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _supported(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        if self.suffix:
            raise ValueError("suffix is not supported")
        return self

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(_Body):
    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=512)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(gt=0)] | None = None
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
