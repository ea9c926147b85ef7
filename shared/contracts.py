"""Every message on the bus, as a versioned pydantic v2 model.

Each model carries ``version`` (a Literal, so a payload from a future version is refused
with a clear error instead of being half-understood) and forbids unknown fields.
Request/reply handlers answer either their reply model or an ErrorReply.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared import registry

MAX_TEXT = 200_000  # characters in a task text or a file: bigger payloads are refused
MAX_FILES = 64
# A whole task (text + files) stays under the local nats-server's 1 MB max_payload with
# room for the envelope: larger prompts are refused before they reach the bus.
MAX_TASK_CHARS = 900_000
MAX_REASON = 2_000  # characters of a cancel reason

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
TaskId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
# Step ids are "<task_id>.<n>"; they are KV/Nats-Msg-Id material, so no wildcards or spaces.
StepId = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")]
CollectionName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]


def _known_agent(name: str) -> str:
    if name not in registry.agent_names():
        raise ValueError(f"unknown agent {name!r}; the agents are {', '.join(registry.agent_names())}")
    return name


# An agent of the service registry ("coder", "reasoner", ...).
AgentName = Annotated[
    str, AfterValidator(_known_agent), Field(json_schema_extra={"enum": list(registry.agent_names())})
]


def new_id(prefix: str = "") -> str:
    """A short random id (task ids look like 't-3f9c2a1b7e6d')."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def now() -> float:
    return time.time()


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
    version: Literal[1] = 1


# --- errors ---------------------------------------------------------------------------
class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str  # a code from shared.errors
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(Message):
    """Answer to any request that could not be served (invalid payload, queue full, ...)."""

    error: ErrorInfo


# --- tasks ------------------------------------------------------------------------------
TaskKind = Literal["auto", "code", "reason", "evolve"]
TaskStatus = Literal["queued", "routed", "running", "done", "failed", "timeout", "cancelled", "rejected"]
FINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "timeout", "cancelled", "rejected"})


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    content: Annotated[str, Field(max_length=MAX_TEXT)]


class TaskSubmit(Message):
    """A user's task, published to the TASKS stream."""

    task_id: TaskId = Field(default_factory=lambda: new_id("t-"))
    kind: TaskKind = "auto"
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    files: Annotated[list[FileIn], Field(max_length=MAX_FILES)] = Field(default_factory=list)
    collection: CollectionName | None = None
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    submitted_at: float = Field(default_factory=now)
    evolve: EvolveSpec | None = None  # kind="evolve": the run to start (or resume: task_id = run id)
    agent: AgentName | None = None  # straight to this agent, without routing
    # A2A: the conversation the task belongs to, kept with the task so GetTask on any
    # gateway replica answers with it.
    context_id: TaskId | None = None

    @model_validator(mode="after")
    def _prompt_size(self) -> TaskSubmit:
        total = len(self.text) + sum(len(f.content) + len(f.path) for f in self.files)
        if total > MAX_TASK_CHARS:
            raise ValueError(f"task is {total} characters of text and files; the limit is {MAX_TASK_CHARS}")
        return self


class SandboxRunSummary(BaseModel):
    """What the CLI shows of one sandbox run (the full ExecResult is in the step record)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    isolation: str = ""


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int
    code: str
    tests: str = ""
    verdicts: list[SandboxRunSummary] = Field(default_factory=list)
    passed: bool = False  # it ran and passed every check that stands
    origin: str = ""  # coder: "greedy", "sampled" or "repair of N"
    chosen: bool = False  # coder: the candidate that became the answer
    # coder: model-written checks set aside (contradictory, or failed by most candidates)
    dropped: list[str] = Field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0


class Citation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    start_line: int
    end_line: int
    score: float = 0.0


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    ttft_s: float | None = None


class TaskResult(Message):
    """The final answer of a task: published on its events subject and kept in the KV."""

    task_id: str
    trace_id: str = ""
    status: TaskStatus
    kind: TaskKind
    answer: str = ""
    code: str | None = None
    tests: list[SandboxRunSummary] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    files: list[FileIn] = Field(default_factory=list)  # edited files (new content)
    diff: str = ""
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    # done, but no check the task stated stands behind the answer (coder: only tests the
    # model wrote itself); the answer says so
    unverified: bool = False
    submitted_at: float = 0.0
    finished_at: float = Field(default_factory=now)


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_id: str
    agent: str
    status: TaskStatus = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorInfo | None = None


class TaskState(Message):
    """The router's record of a task in the task-state KV bucket."""

    task: TaskSubmit
    status: TaskStatus = "queued"
    route: list[str] = Field(default_factory=list)  # agents, in order
    steps: list[StepRecord] = Field(default_factory=list)
    trace_id: str = ""
    history: list[tuple[str, float]] = Field(default_factory=list)  # (status, at)
    result: TaskResult | None = None
    updated_at: float = Field(default_factory=now)


EventType = Literal["status", "progress", "token", "result"]


class TaskEvent(Message):
    """One event of a task's live stream (core NATS, best effort; the KV is the truth)."""

    task_id: str
    type: EventType
    status: TaskStatus | None = None
    step: str | None = None  # which step/agent emits it
    text: str = ""
    result: TaskResult | None = None
    at: float = Field(default_factory=now)


class CancelRequest(Message):
    task_id: TaskId
    reason: Annotated[str, Field(max_length=MAX_REASON)] = "cancelled by user"


# --- agent jobs -------------------------------------------------------------------------
class AgentJob(Message):
    """One step of a task for one agent, published to the JOBS stream."""

    task_id: TaskId
    step_id: StepId
    agent: AgentName
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    files: Annotated[list[FileIn], Field(max_length=MAX_FILES)] = Field(default_factory=list)
    collection: CollectionName | None = None
    # output of earlier steps, e.g. retrieved passages or a sub-answer
    context: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    deadline: float  # epoch seconds
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    # "mutate": write one candidate program for an evolution run (no tests, no repair
    # loop); its StepResult goes to subjects.evolve_results(task_id), not STEP_RESULT.
    mode: Literal["solve", "mutate"] = "solve"
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None  # None: the agent's default (greedy)


class StepResult(Message):
    """An agent's answer to an AgentJob, published to the JOBS stream for the router."""

    task_id: TaskId
    step_id: StepId
    agent: Annotated[str, Field(max_length=64)]
    status: Literal["done", "failed", "timeout", "cancelled"]
    answer: str = ""
    code: str | None = None
    tests: list[SandboxRunSummary] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    files: list[FileIn] = Field(default_factory=list)
    diff: str = ""
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    unverified: bool = False  # done, but no check the task stated stands behind the answer


# --- code-sandbox -----------------------------------------------------------------------
SandboxStatus = Literal[
    "ok", "runtime_error", "timeout", "memory_limit", "output_limit", "killed", "rejected", "internal_error"
]


class ExecLimits(BaseModel):
    """Per-run limits. Values above the service's hard ceilings are clamped, never raised."""

    model_config = ConfigDict(extra="forbid")
    wall_s: Annotated[float, Field(gt=0)] = 10.0
    cpu_s: Annotated[float, Field(gt=0)] = 5.0
    memory_mb: Annotated[int, Field(gt=0)] = 256
    processes: Annotated[int, Field(gt=0)] = 32
    output_bytes: Annotated[int, Field(gt=0)] = 1_000_000
    file_size_mb: Annotated[int, Field(gt=0)] = 16


class ExecRequest(Message):
    code: Annotated[str, Field(max_length=MAX_TEXT)]
    files: Annotated[list[FileIn], Field(max_length=MAX_FILES)] = Field(default_factory=list)
    stdin: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    test_code: Annotated[str, Field(max_length=MAX_TEXT)] | None = None  # appended after code
    limits: ExecLimits = Field(default_factory=ExecLimits)
    task_id: str | None = None


class ExecResult(Message):
    status: SandboxStatus
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    memory_peak_mb: float = 0.0
    isolation: str = ""  # the tier used; "degraded" when run without full isolation
    message: str = ""  # why rejected / internal error


# --- retriever --------------------------------------------------------------------------
MAX_TAGS = 32
Tag = Annotated[str, Field(max_length=128)]


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path_prefix: Annotated[str, Field(max_length=4096)] | None = None
    language: Annotated[str, Field(max_length=64)] | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(default_factory=list)


class SearchRequest(Message):
    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    collection: CollectionName = "default"
    top_k: Annotated[int, Field(gt=0, le=100)] = 5
    filters: SearchFilters = Field(default_factory=SearchFilters)


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    path: str
    start_line: int
    end_line: int
    score: float
    language: str = ""
    tags: list[str] = Field(default_factory=list)


class SearchReply(Message):
    hits: list[SearchHit] = Field(default_factory=list)
    collection: str
    seconds: float = 0.0


class IngestDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    content: Annotated[str, Field(max_length=5_000_000)]
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(default_factory=list)


MAX_INGEST_DOCUMENTS = 10_000  # per request/batch (the payload limit binds first)


class IngestRequest(Message):
    collection: CollectionName = "default"
    documents: Annotated[list[IngestDocument], Field(max_length=MAX_INGEST_DOCUMENTS)] = Field(default_factory=list)
    prune_missing: bool = False  # remove chunks of paths under `root` that are not in documents
    root: Annotated[str, Field(max_length=4096)] | None = None
    # Paths that still exist under `root` but travel in other batches of the same job:
    # pruning spares them (a large ingest is split into batches under the payload limit).
    present_paths: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list)
    job_id: TaskId = Field(default_factory=lambda: new_id("ing-"))
    batch: Annotated[int, Field(ge=0)] = 0  # index of this batch within the job


class IngestReply(Message):
    """Answer to one ingest request; also published per batch on ``ingest_events(job_id)``."""

    job_id: str
    collection: str
    batch: int = 0
    files: int = 0
    chunks: int = 0
    skipped: list[str] = Field(default_factory=list)
    removed: int = 0
    seconds: float = 0.0


class EmbedRequest(Message):
    texts: Annotated[list[Annotated[str, Field(max_length=100_000)]], Field(min_length=1, max_length=512)]


class EmbedReply(Message):
    model: str
    dim: int
    vectors: list[list[float]]


# --- evaluator --------------------------------------------------------------------------
class EvalRunRequest(Message):
    run_id: TaskId = Field(default_factory=lambda: new_id("ev-"))  # also a folder name: no '/' or '..'
    suite: Annotated[str, Field(min_length=1, max_length=4096)]  # a built-in name or an eval file's path
    models: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(max_length=16)] = Field(
        default_factory=list
    )
    limit: Annotated[int, Field(gt=0, le=100_000)] | None = None  # items per suite
    options: Annotated[dict[str, Any], Field(max_length=64)] = Field(default_factory=dict)


# --- evolution (router-owned runs; records live in the EVOLVE_BUCKET KV) ----------------
EvolveStatus = Literal["running", "done", "failed", "cancelled"]


class EvolveLimits(BaseModel):
    """Bounds of one evolution run."""

    model_config = ConfigDict(extra="forbid")
    score_wall_s: Annotated[float, Field(gt=0, le=600)] = 10.0  # one scoring run in code-sandbox
    score_memory_mb: Annotated[int, Field(gt=0, le=8192)] = 256
    score_concurrency: Annotated[int, Field(gt=0, le=64)] = 2  # scoring runs in flight at once
    job_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0  # a generation's candidates
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] = 768  # per candidate
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.8


class EvolveSpec(BaseModel):
    """What to evolve: the task, a seed program and the program that scores a candidate."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=128)] = "evolve"
    task: Annotated[str, Field(min_length=1, max_length=20_000)]
    seed: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]  # the seed program's code
    scorer: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]  # prints one number, higher is better
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "candidate"  # scorer imports it so
    generations: Annotated[int, Field(ge=1, le=1000)] = 3
    population: Annotated[int, Field(ge=1, le=64)] = 4  # survivors kept per generation
    children: Annotated[int, Field(ge=1, le=256)] | None = None  # candidates per generation (None: population)
    hints: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=32)
    rng_seed: int = 0
    limits: EvolveLimits = Field(default_factory=EvolveLimits)


class EvolveProgram(Message):
    """One program of a run (the seed or a candidate) with its score and sandbox verdict."""

    run_id: str
    program_id: str  # "seed", "g3-c1" (generation 3, child 1)
    generation: int
    parents: list[str] = Field(default_factory=list)  # program ids shown to the model
    code: str = ""
    code_hash: str = ""  # of the normalised code (selection drops duplicates by it)
    score: float | None = None  # None: the program earned no score
    verdict: str = ""  # "ok", a sandbox status, "no_number", "no_code", "lost"
    detail: str = ""  # tail of the run's output (what the next prompts show)
    wall_s: float = 0.0
    created_at: float = Field(default_factory=now)


class EvolveGeneration(Message):
    """One generation: its candidate jobs, and the population that survived it."""

    run_id: str
    n: int
    status: Literal["generating", "done"] = "generating"
    jobs: list[str] = Field(default_factory=list)  # step ids of the candidate jobs
    parents: dict[str, list[str]] = Field(default_factory=dict)  # step id -> program ids shown
    published: bool = False  # all jobs are on the JOBS stream
    deadline: float = 0.0  # after it, missing candidates count as lost
    trace_ids: list[str] = Field(default_factory=list)  # one per process that worked on it
    population: list[str] = Field(default_factory=list)  # survivors (program ids), best first
    best_id: str = ""
    best_score: float | None = None
    scored: int = 0
    failed: int = 0
    started_at: float = Field(default_factory=now)
    finished_at: float | None = None


class EvolveRun(Message):
    """A run's head record: spec, progress and which router instance owns it (a lease)."""

    run_id: str
    spec: EvolveSpec
    status: EvolveStatus = "running"
    generation: int = 0  # last finished generation (0: only the seed is scored)
    population: list[str] = Field(default_factory=list)
    seed_score: float | None = None
    best_id: str = ""
    best_score: float | None = None
    owner: str = ""  # instance id of the router running it ("" when nobody does)
    heartbeat_at: float = 0.0
    error: ErrorInfo | None = None
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)


# --- model requests: a plain generation on a loaded model (shared/generation/) ---------
# One request/reply on subjects.model_generate(model) (queue group: the model) answers
# GenerateAccepted at once; the generation then streams GenerateEvents on
# subjects.model_events(request_id) and ends with one "done" (the GenerateReply) or one
# "error" event. Cancel: GenerateCancel on subjects.MODEL_CANCEL.
ToolName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MAX_TOOLS = 128
MAX_CHOICES = 8


class ToolSpec(BaseModel):
    """A function the model may call (OpenAI's ``tools[].function``)."""

    model_config = ConfigDict(extra="forbid")
    name: ToolName
    description: Annotated[str, Field(max_length=10_000)] = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(BaseModel):
    """A call the model made (parsed, of a known tool, its arguments valid for its schema),
    or one an assistant turn of the history made."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(min_length=1, max_length=128)]
    name: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


class InvalidToolCall(BaseModel):
    """What the model wrote as a call that could not be passed on: not JSON, an unknown
    tool, or arguments its schema refuses."""

    model_config = ConfigDict(extra="forbid")
    raw: str
    error: str
    name: str | None = None


class ChatTurn(BaseModel):
    """One message of a conversation, as the model's chat template renders it."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=MAX_TASK_CHARS)] = ""
    tool_calls: Annotated[list[ToolCall], Field(max_length=MAX_TOOLS)] = Field(default_factory=list)
    tool_call_id: Annotated[str, Field(max_length=128)] | None = None  # role "tool": the call it answers
    name: Annotated[str, Field(max_length=64)] | None = None  # role "tool": the function's name


ToolChoice = Literal["none", "auto", "required", "function"]


class GenerateRequest(Message):
    """A plain generation on ``model`` (a roster name such as ``qwen2_5-coder-1_5b``), run
    by an agent that holds it, in its engine's slots and queue, without its agent logic.

    Exactly one of ``messages`` (rendered with the model's own chat template, tools
    included) and ``prompt`` (raw text, no template) is given. Sampling fields left None
    take the engine's defaults."""

    request_id: TaskId = Field(default_factory=lambda: new_id("g-"))
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: Annotated[list[ChatTurn], Field(max_length=10_000)] = Field(default_factory=list)
    prompt: Annotated[str, Field(max_length=MAX_TASK_CHARS)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None  # None: until the context is full
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.8  # llama-server's and Ollama's default
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    stop: Annotated[list[Annotated[str, Field(min_length=1, max_length=512)]], Field(max_length=16)] = Field(
        default_factory=list)
    json_schema: dict[str, Any] | None = None  # constrain the answer to this JSON schema ({"type": "object"}: any object)
    tools: Annotated[list[ToolSpec], Field(max_length=MAX_TOOLS)] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    tool_name: ToolName | None = None  # tool_choice "function": the one tool to call
    parallel_tool_calls: bool = True
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1  # samples of the one prompt (choices)
    stream: bool = True  # False: no "text"/"tool_call" events, only keepalives and the end
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    submitted_at: float = Field(default_factory=now)

    @property
    def deadline(self) -> float:
        return self.submitted_at + self.timeout_s

    @model_validator(mode="after")
    def _consistent(self) -> GenerateRequest:
        if (self.prompt is None) == (not self.messages):
            raise ValueError("give exactly one of messages (a chat) and prompt (raw text)")
        total = len(self.prompt or "") + sum(len(m.content) for m in self.messages)
        if total > MAX_TASK_CHARS:
            raise ValueError(f"the prompt is {total} characters; the limit is {MAX_TASK_CHARS}")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be unique")
        if self.tool_choice == "function" and self.tool_name not in names:
            raise ValueError(f"tool_choice names the function {self.tool_name!r}, which is not among the tools")
        if self.tool_choice in ("required", "function") and not self.tools:
            raise ValueError(f"tool_choice {self.tool_choice!r} needs tools")
        if self.tools and self.prompt is not None:
            raise ValueError("tools need messages (a chat), not a raw prompt")
        if self.tools and self.tool_choice != "none" and self.json_schema is not None:
            raise ValueError("a JSON schema for the answer and tools cannot be combined (use tool_choice 'none')")
        return self


class GenerateAccepted(Message):
    """The immediate answer to a GenerateRequest: which instance took it. Its events follow."""

    request_id: str
    model: str
    service: str
    instance: str


class GenerateCancel(Message):
    """Stop a generation (the client went away); broadcast to every instance serving models."""

    request_id: TaskId
    reason: Annotated[str, Field(max_length=MAX_REASON)] = "cancelled by the client"


FinishReason = Literal["stop", "length", "tool_calls"]


class GenerateChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int = 0
    text: str = ""  # the answer's text, tool-call markup removed
    tool_calls: list[ToolCall] = Field(default_factory=list)
    invalid_tool_calls: list[InvalidToolCall] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"


class GenerateReply(Message):
    """The end of a generation: every choice, whole (the events may have lost pieces)."""

    request_id: str
    model: str
    service: str = ""
    instance: str = ""
    choices: list[GenerateChoice] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)  # input once, output summed over choices
    tokens_per_s: float = 0.0  # decode rate (mean over choices)
    trace_id: str = ""


GenerateEventType = Literal["text", "tool_call", "keepalive", "done", "error"]


class GenerateEvent(Message):
    """One event of a generation's stream: a piece of a choice's text, one complete and
    valid tool call, a keepalive while it waits or thinks, then "done" or "error"."""

    request_id: str
    type: GenerateEventType
    index: int = 0  # the choice
    text: str = ""
    tool_call: ToolCall | None = None
    reply: GenerateReply | None = None  # type "done"
    error: ErrorInfo | None = None  # type "error"


# --- health -----------------------------------------------------------------------------
class HealthPing(Message):
    pass


class HealthReply(Message):
    service: str
    instance: str
    pid: int
    state: Literal["starting", "ready", "degraded", "stopping"] = "ready"
    cpus: list[int] = Field(default_factory=list)
    threads: int | None = None
    model: str | None = None
    queue_depth: int = 0
    running: int = 0
    details: dict[str, Any] = Field(default_factory=dict)


# --- metrics (gateway) ------------------------------------------------------------------
class MetricsPing(Message):
    pass


class MetricsReply(Message):
    """One instance's own Prometheus series, in the text exposition format."""

    service: str
    instance: str
    exposition: str


class MaxDeliveriesAdvisory(BaseModel):
    """nats-server's own advisory (``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*``):
    not a syndicate message, so unknown fields are ignored and there is no version."""

    model_config = ConfigDict(extra="ignore")
    stream: str
    consumer: str
    stream_seq: int
    deliveries: int = 0


class DeadLetter(Message):
    source: str  # subject the message came from
    reason: str
    payload: str  # the raw payload (truncated)
    at: float = Field(default_factory=now)
