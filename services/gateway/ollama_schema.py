"""Ollama's HTTP API request bodies as far as the gateway serves them, and how a chat or
generate request for a served model becomes a GenerateRequest (the same model request
the OpenAI routes send: one generation path, one tool-call parser).

Fields a client sends by habit but that change nothing here are accepted and ignored:
``keep_alive`` (agents keep their models loaded while they run), the load-time and
hardware options (``num_thread``, ``num_gpu``, ``use_mmap``, ... : placement decides
threads and cores), ``num_ctx`` (the served context is the roster's, shown by /api/ps)
and the sampler options llama.cpp's sampler chain here does not take (``mirostat``,
``typical_p``, ``tfs_z``, ``repeat_last_n``, ``penalize_newline``, ``num_keep``).
Fields whose meaning cannot be honoured are refused with a clear error: images, a custom
``template``, ``suffix`` (fill-in-the-middle), ``context`` token ids, ``think`` (no
thinking model is served), ``logprobs``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts import MAX_TOOLS, ChatTurn, GenerateRequest, ToolCall, ToolSpec

# The Ollama API version /api/version reports: the release whose API this one follows
# (tools in chat and streamed tool calls, JSON-schema formats, /api/embed, /api/ps with
# context_length). Clients compare it to gate features.
OLLAMA_API_VERSION = "0.9.0"
LATEST = ":latest"


def model_name(name: str) -> str:
    """A client's model name as the syndicate names it: Ollama's default tag dropped
    (``qwen2_5-coder-1_5b:latest`` → ``qwen2_5-coder-1_5b``)."""
    return name[: -len(LATEST)] if name.endswith(LATEST) else name


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(_Body):
    """Ollama's ``options``: the ones honoured; the rest are ignored (module docstring)."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: int | None = None
    num_predict: int | None = None  # -1 (and -2): until the context is full
    stop: Annotated[list[Annotated[str, Field(min_length=1, max_length=512)]], Field(max_length=16)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    num_ctx: Annotated[int, Field(gt=0)] | None = None  # accepted: the served context is fixed

    @model_validator(mode="before")
    @classmethod
    def _stop_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stop"), str):
            return {**data, "stop": [data["stop"]]}
        return data

    def sampling(self) -> dict[str, Any]:
        """The GenerateRequest fields these options set."""
        out: dict[str, Any] = {}
        for name in ("temperature", "top_p", "top_k", "min_p", "seed", "repeat_penalty", "presence_penalty",
                     "frequency_penalty"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.num_predict is not None:
            if self.num_predict == 0 or self.num_predict < -2:
                raise ValueError("options.num_predict must be positive, or -1 (until the context is full)")
            if self.num_predict > 32_768:
                raise ValueError("options.num_predict must be at most 32768")
            out["max_tokens"] = self.num_predict if self.num_predict > 0 else None
        return out


Format = Literal["", "json"] | dict[str, Any]


class _Generation(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool = True  # Ollama streams unless told not to
    options: Options | None = None
    format: Format | None = None
    keep_alive: float | str | None = None  # accepted: models stay loaded while their agent runs
    think: bool | str | None = None
    logprobs: bool | None = None

    @property
    def name(self) -> str:
        return model_name(self.model)

    def refuse_unsupported(self) -> None:
        """Raise ValueError for fields whose meaning cannot be honoured."""
        if self.think not in (None, False, "", "false"):
            raise ValueError(f"the model {self.model!r} does not support thinking")
        if self.logprobs:
            raise ValueError("logprobs are not supported")

    def json_schema(self) -> dict[str, Any] | None:
        if self.format in (None, ""):
            return None
        if self.format == "json":
            return {"type": "object"}
        assert isinstance(self.format, dict)
        return self.format

    def unload(self) -> bool:
        """``keep_alive`` 0: the client asks to unload the model."""
        return self.keep_alive in (0, "0", "0s", "0m")


class ToolFunctionIn(_Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    arguments: dict[str, Any] = Field(default_factory=dict)  # an object, as Ollama sends it


class ToolCallIn(_Body):
    function: ToolFunctionIn
    id: str | None = None


class Message(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[Any] | None = None
    tool_calls: Annotated[list[ToolCallIn], Field(max_length=MAX_TOOLS)] | None = None
    tool_name: str | None = None  # role "tool": the function whose result this is
    name: str | None = None  # older clients' tool_name
    thinking: str | None = None  # an assistant turn's thinking (ignored)


class ToolFunction(_Body):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Body):
    type: Literal["function"] = "function"
    function: ToolFunction


class ChatRequest(_Generation):
    messages: Annotated[list[Message], Field(max_length=10_000)] = Field(default_factory=list)
    tools: Annotated[list[Tool], Field(max_length=MAX_TOOLS)] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatRequest:
        self.refuse_unsupported()
        for i, m in enumerate(self.messages):
            if m.images:
                raise ValueError(f"messages.{i}.images: the model {self.model!r} does not support images")
        return self


class GenerateBody(_Generation):
    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None
    images: list[Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> GenerateBody:
        self.refuse_unsupported()
        if self.images:
            raise ValueError(f"images: the model {self.model!r} does not support images")
        if self.suffix:
            raise ValueError("suffix (fill-in-the-middle) is not supported")
        if self.template:
            raise ValueError("a custom template is not supported: the model's own chat template renders the "
                             "prompt (or send raw: true with a prompt already formatted)")
        if self.context:
            raise ValueError("context (token ids of an earlier answer) is not supported: send the conversation "
                             "as messages to /api/chat")
        return self


class EmbedBody(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=512)]
    truncate: bool = True
    dimensions: Annotated[int, Field(gt=0)] | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingsBody(_Body):
    """The legacy ``/api/embeddings``: one prompt, one vector."""

    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None


class ShowBody(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    name: str | None = None  # older clients
    verbose: bool = False

    @property
    def model_name(self) -> str:
        return model_name(self.model or self.name or "")


# --- a request for a served model → the model request ---------------------------------------
def _sampling(body: _Generation) -> dict[str, Any]:
    fields = body.options.sampling() if body.options else {}
    if (schema := body.json_schema()) is not None:
        fields["json_schema"] = schema
    return fields


def chat_to_generate(body: ChatRequest, *, timeout_s: float) -> GenerateRequest:
    """The GenerateRequest of an Ollama chat (raises ValueError / ValidationError with the
    reason for a 400)."""
    turns = [turn(m, i) for i, m in enumerate(body.messages)]
    tools = [ToolSpec(name=t.function.name, description=t.function.description or "",
                      parameters=t.function.parameters or {"type": "object", "properties": {}})
             for t in body.tools or []]
    return GenerateRequest(model=body.name, messages=turns, tools=tools, stream=body.stream, timeout_s=timeout_s,
                           **_sampling(body))


def generate_to_generate(body: GenerateBody, *, timeout_s: float) -> GenerateRequest:
    """``/api/generate``: the prompt through the model's chat template (with ``system``),
    or as it is with ``raw``."""
    fields = _sampling(body)
    prompt = body.prompt or ""
    if body.raw:
        return GenerateRequest(model=body.name, prompt=prompt, stream=body.stream, timeout_s=timeout_s, **fields)
    turns = ([ChatTurn(role="system", content=body.system)] if body.system else []) + [
        ChatTurn(role="user", content=prompt)]
    return GenerateRequest(model=body.name, messages=turns, stream=body.stream, timeout_s=timeout_s, **fields)


def turn(m: Message, index: int) -> ChatTurn:
    """One Ollama message as the contract's ChatTurn. Ollama's calls carry no ids: each
    gets one from its place; a tool result names its function (``tool_name``) and follows
    its call in order, which is how the chat template pairs them."""
    calls = [ToolCall(id=c.id or f"call_{index}_{j}", name=c.function.name, arguments=c.function.arguments)
             for j, c in enumerate(m.tool_calls or [])]
    name = (m.tool_name or m.name) if m.role == "tool" else None
    return ChatTurn(role=m.role, content=m.content or "", tool_calls=calls, name=name)
