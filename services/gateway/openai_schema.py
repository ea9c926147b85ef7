"""The OpenAI HTTP API's request bodies, as far as the gateway serves them.

Unknown fields are ignored (clients send many), but fields whose meaning the syndicate
cannot honour (logprobs, non-text content, echo, suffix) are refused with 400 rather
than silently dropped. A model request (a served model's name) honours the sampling
fields, ``n``, ``response_format`` and tools; an agent (``syndicate``, ``coder``, ...)
decides its own sampling, so there ``n > 1``, tools and JSON formats are refused
(services/gateway/completions.py). ``collection`` is a syndicate extension (the OpenAI
SDK's ``extra_body``): answer from that retriever collection; ``top_k``, ``min_p`` and
``repeat_penalty`` are llama-server's extensions, honoured by model requests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import registry
from shared.contracts import MAX_CHOICES, MAX_TOOLS

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


class FunctionCall(_Body):
    name: Annotated[str, Field(min_length=1)]
    arguments: str | dict[str, Any] = "{}"  # a JSON string (OpenAI); an object is accepted too


class ToolCallIn(_Body):
    """A call in an assistant message of the history."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(_Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaFormat(_Body):
    name: str = "answer"
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JSONSchemaFormat | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # role "tool": the call this result answers

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
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None  # > 1: model requests only
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None  # model requests; agents decide their own
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None  # llama-server's extensions
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    stop: Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)] | None = None
    user: str | None = None
    collection: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_Generation):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    tools: Annotated[list[ToolDef], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    response_format: ResponseFormat | None = None
    functions: list[dict[str, Any]] | None = None  # the deprecated form of tools: refused

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        if self.functions:
            raise ValueError("'functions' is deprecated and not supported: use 'tools'")
        if self.model in MODELS:
            agent_only(self)
            if self.tools:
                raise ValueError(f"tools are served by the models, not by the agent {self.model!r} "
                                 "(GET /v1/models lists both)")
            if self.wants_json:
                raise ValueError(f"the agent {self.model!r} answers text only (response_format 'text'); "
                                 "JSON formats are served by the models")
            if not any(m.role == "user" for m in self.messages):
                raise ValueError("messages must contain a user message")
        for m in self.messages:
            m.text()  # refuses non-text parts at validation time
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in self.tool_names:
            raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, which is not among the tools")
        if self.tool_choice in ("required",) and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    @property
    def tool_names(self) -> list[str]:
        return [t.function.name for t in self.tools or []]

    @property
    def wants_json(self) -> bool:
        return bool(self.response_format and self.response_format.type != "text")


def agent_only(body: _Generation) -> None:
    """Refuse what an agent cannot honour (it decides its own sampling, one answer)."""
    if body.n and body.n > 1:
        raise ValueError(f"n > 1 is served by the models, not by the agent {body.model!r} (one answer per task)")


class CompletionRequest(_Generation):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None

    @model_validator(mode="after")
    def _supported(self) -> CompletionRequest:
        if self.model in MODELS:
            agent_only(self)
        if self.logprobs:
            raise ValueError("logprobs are not supported")
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
