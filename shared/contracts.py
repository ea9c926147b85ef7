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
# input_required: the task waits for a person's review decision (TaskSubmit.review); not final.
TaskStatus = Literal[
    "queued", "routed", "running", "input_required", "done", "failed", "timeout", "cancelled", "rejected",
]
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
    # The conversation (thread) the task belongs to: an A2A contextId, or the thread of an
    # earlier task; a task in a thread sees the exchange before it (docs/threads.md).
    context_id: TaskId | None = None
    follows: TaskId | None = None  # continue after this earlier task (`syndicate submit --continue`)
    review: bool = False  # pause before the final answer for a person's decision (status input_required)

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


# --- threads and review ------------------------------------------------------------------
MAX_TURN_TEXT = 8_000  # characters of a request kept in its thread turn
MAX_TURN_ANSWER = 12_000  # ... of an answer
MAX_TURN_CODE = 60_000  # ... of a program
MAX_TURN_CHECKS = 200  # checks kept per turn
MAX_FEEDBACK = 10_000  # characters of a reviewer's feedback
CheckSource = Literal["task", "model"]
ReviewChoice = Literal["approve", "revise", "reject"]


class CheckRecord(BaseModel):
    """One check of a code answer: who stated it, the thread turn it was carried from, and
    whether the chosen code passed it."""

    model_config = ConfigDict(extra="forbid")
    check: Annotated[str, Field(max_length=4_000)]  # an assert statement or a test call
    source: CheckSource = "task"  # the task's own (its text or test files), or a test the model wrote
    turn: str = ""  # task id of the earlier turn it was carried from ("": this task's own)
    held: bool | None = None  # passed by the chosen code; None: not run (superseded or set aside)
    note: Annotated[str, Field(max_length=500)] = ""  # why it was not run


class ThreadTurn(BaseModel):
    """One task of a thread as later turns see it: the request and what came of it."""

    model_config = ConfigDict(extra="forbid")
    task_id: str
    follows: str | None = None  # the turn it continues (None: the thread's first)
    kind: TaskKind = "auto"
    agent: str = ""  # the agent that answered (the last of its route)
    text: Annotated[str, Field(max_length=MAX_TURN_TEXT)]
    status: TaskStatus = "queued"
    answer: Annotated[str, Field(max_length=MAX_TURN_ANSWER)] = ""
    code: Annotated[str, Field(max_length=MAX_TURN_CODE)] | None = None
    checks: Annotated[list[CheckRecord], Field(max_length=MAX_TURN_CHECKS)] = Field(default_factory=list)
    submitted_at: float = 0.0
    finished_at: float | None = None


class ThreadRecord(Message):
    """A conversation in the thread KV bucket: its turns in the order they came."""

    thread_id: str
    turns: list[ThreadTurn] = Field(default_factory=list)
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)


class ReviewRound(BaseModel):
    """One pause of a task submitted with ``review``: what the reviewer was shown and what
    they decided."""

    model_config = ConfigDict(extra="forbid")
    n: int  # 1, 2, ...: a revision pauses again with the next
    step_id: str  # the step whose answer waits
    proposed: ThreadTurn  # the answer, code and checks held
    asked_at: float = Field(default_factory=now)
    span_id: str = ""  # the router's "input_required" span: a decision's trace continues under it
    decision: ReviewChoice | None = None
    feedback: str = ""
    reviewer: str = ""
    decided_at: float | None = None
    decision_id: str = ""  # the ReviewDecision applied (a redelivered one is recognised by it)
    revision_step: str = ""  # revise: the step that writes the revision


class ReviewDecision(Message):
    """A person's decision on a task waiting in ``input_required`` (TASKS stream, router)."""

    task_id: TaskId
    decision: ReviewChoice
    feedback: Annotated[str, Field(max_length=MAX_FEEDBACK)] = ""  # revise: what to change; reject: why
    round: Annotated[int, Field(ge=1)] | None = None  # the pause it answers (None: the current one)
    reviewer: Annotated[str, Field(max_length=200)] = ""
    decision_id: TaskId = Field(default_factory=lambda: new_id("rv-"))
    at: float = Field(default_factory=now)

    @model_validator(mode="after")
    def _feedback(self) -> ReviewDecision:
        if self.decision == "revise" and not self.feedback.strip():
            raise ValueError("a revision needs feedback: what should change")
        return self


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
    checks: list[CheckRecord] = Field(default_factory=list)  # coder: each check, its origin, held or not
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    # done, but no check the task stated stands behind the answer (coder: only tests the
    # model wrote itself); the answer says so
    unverified: bool = False
    submitted_at: float = 0.0
    finished_at: float = Field(default_factory=now)
    thread_id: str = ""  # the conversation it belongs to ("": none yet)
    review: list[ReviewRound] = Field(default_factory=list)  # its review rounds (TaskSubmit.review)


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
    # The final result; while the task waits in input_required, the proposed one (that status).
    result: TaskResult | None = None
    updated_at: float = Field(default_factory=now)
    thread_id: str = ""  # the conversation it belongs to ("": none yet)
    follows: str | None = None  # the earlier turn it continues, as the router resolved it
    review: list[ReviewRound] = Field(default_factory=list)


def thread_of(state: TaskState) -> str:
    """The thread a task belongs to, or would found when continued (its own id)."""
    return state.thread_id or state.task.context_id or state.task.task_id


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
    # The thread's earlier turns this task continues, oldest first: their requests, answers,
    # code and held checks (coder: the last program is the starting point, its checks regressions).
    thread: Annotated[list[ThreadTurn], Field(max_length=64)] = Field(default_factory=list)


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
    checks: list[CheckRecord] = Field(default_factory=list)
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
# docs/evolve.md describes every field; the web console reads these records as they are.
EvolveStatus = Literal["running", "done", "failed", "cancelled"]
EvolveMode = Literal["islands", "generations"]
ScoreStage = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class EvolveLimits(BaseModel):
    """Bounds of one evolution run."""

    model_config = ConfigDict(extra="forbid")
    score_wall_s: Annotated[float, Field(gt=0, le=600)] = 10.0  # one scoring run in code-sandbox
    score_memory_mb: Annotated[int, Field(gt=0, le=8192)] = 256
    score_concurrency: Annotated[int, Field(gt=0, le=64)] = 2  # scoring runs in flight at once
    job_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0  # one candidate job (a generation's, in "generations")
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] = 768  # per candidate
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.8


class EvolveModel(BaseModel):
    """A model the run samples candidates from, and its share of the samples."""

    model_config = ConfigDict(extra="forbid")
    # A roster model name (e.g. "qwen2_5-coder-0_5b"), served by an agent that holds it;
    # "" = whichever coder-agent copy takes the job (JOBS stream).
    name: Annotated[str, Field(max_length=256)] = ""
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None  # None: limits.temperature


class EvolveCascade(BaseModel):
    """How a candidate is scored: scorer stages, cheapest first."""

    model_config = ConfigDict(extra="forbid")
    # Stage names the scorer receives on stdin; the last one's score is the training score.
    stages: Annotated[list[ScoreStage], Field(min_length=1, max_length=8)] = Field(default_factory=lambda: ["train"])
    # A candidate goes on to the next stage only when its score there is at least the best
    # score any program reached at that stage minus tolerance x |that best|.
    tolerance: Annotated[float, Field(ge=0, le=100)] = 0.01
    validation: ScoreStage | None = None  # picks the final program among the best training programs
    test: ScoreStage | None = None  # held out: reported for the final program and the baselines, never chosen on
    metric: Annotated[str, Field(max_length=64)] | None = None  # a test metric reported as test_<metric> and <baseline>_<metric>
    validate_top: Annotated[int, Field(ge=1, le=64)] = 4  # training programs kept validated (the run's top ones)


class EvolveDatabase(BaseModel):
    """The program database of mode "islands" (FunSearch's)."""

    model_config = ConfigDict(extra="forbid")
    islands: Annotated[int, Field(ge=1, le=64)] = 4
    programs_per_prompt: Annotated[int, Field(ge=1, le=8)] = 2  # versions v0..v{k-1} shown in a prompt
    # Consecutive samples asked with one prompt (FunSearch: 4): they differ by their sampling
    # seed, and an engine that shares a common prefix's prefill pays for it once.
    samples_per_prompt: Annotated[int, Field(ge=1, le=16)] = 2
    # Cluster sampling: softmax over the island's cluster scores normalised to 0..1, with a
    # temperature falling from temperature to 0 over temperature_period samples, repeatedly.
    temperature: Annotated[float, Field(gt=0, le=100)] = 0.1
    temperature_period: Annotated[int, Field(ge=1)] = 30_000
    # "reset": every reset_every samples the weaker half of the islands restarts from the
    # best program of a random stronger one (FunSearch); "ring": every reset_every samples
    # each island's best is copied into the next island; "none": islands never meet.
    migration: Literal["reset", "ring", "none"] = "reset"
    reset_every: Annotated[int, Field(ge=1)] = 100
    max_failures_shown: Annotated[int, Field(ge=0, le=8)] = 1  # recent sandbox failures of the island in a prompt


class EvolveSpec(BaseModel):
    """What to evolve: the task, a seed program and the program that scores a candidate."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=128)] = "evolve"
    task: Annotated[str, Field(min_length=1, max_length=20_000)]
    seed: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]  # the seed program's code
    scorer: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]  # prints one number (or JSON), higher is better
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "candidate"  # scorer imports it so
    mode: EvolveMode = "islands"
    # The evolved function: prompts show it as <function>_v0 .. _v{k-1} (ascending score)
    # and ask for the next version; None: whole programs are shown and rewritten.
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    samples: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # budget: candidates asked
    minutes: Annotated[float, Field(gt=0, le=100_000)] | None = None  # budget: active minutes
    concurrency: Annotated[int, Field(ge=1, le=256)] | None = None  # jobs in flight (None: coder slots seen in health)
    models: Annotated[list[EvolveModel], Field(max_length=8)] = Field(default_factory=list)
    cascade: EvolveCascade = Field(default_factory=EvolveCascade)
    database: EvolveDatabase = Field(default_factory=EvolveDatabase)
    params: dict[str, Any] = Field(default_factory=dict)  # given to the scorer with each stage
    baselines: Annotated[dict[str, Annotated[str, Field(max_length=MAX_TEXT)]], Field(max_length=8)] = Field(
        default_factory=dict)  # name -> program, scored on validation and test beside the final program
    generations: Annotated[int, Field(ge=1, le=1000)] = 3  # mode "generations"; islands: samples = generations x children when no budget
    population: Annotated[int, Field(ge=1, le=64)] = 4  # survivors kept per generation
    children: Annotated[int, Field(ge=1, le=256)] | None = None  # candidates per generation (None: population)
    hints: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=32)
    rng_seed: int = 0
    limits: EvolveLimits = Field(default_factory=EvolveLimits)

    @property
    def sample_budget(self) -> int | None:
        """Candidates to ask in mode "islands" (None: only the minutes bound the run)."""
        if self.samples is not None:
            return self.samples
        if self.minutes is not None:
            return None
        return self.generations * (self.children or self.population)


class EvolveProgram(Message):
    """One program of a run (the seed, a baseline or a candidate) with its scores and verdict."""

    run_id: str
    program_id: str  # "seed", "base-<name>", "s12" (the 12th sample), "g3-c1" (mode "generations")
    generation: int = 0  # mode "generations"; islands: 0
    parents: list[str] = Field(default_factory=list)  # program ids shown to the model, the first = the one it improves
    code: str = ""  # the whole program the scorer imports
    code_hash: str = ""  # of the normalised evolved code (duplicates are dropped by it)
    # "asked" (job out), "pending" (written, not yet scored), "ok", "duplicate" (same code or
    # same behaviour as duplicate_of), "rejected" (a cascade stage fell short), a sandbox
    # status ("runtime_error", "timeout", ...), "no_number", "no_code", "lost".
    verdict: str = ""
    score: float | None = None  # the training score (the last cascade stage); None: none earned
    detail: str = ""  # tail of the run's output (what the next prompts show)
    wall_s: float = 0.0  # sandbox wall seconds over all its stages
    created_at: float = Field(default_factory=now)
    island: int | None = None
    sample: int = 0  # 1-based order in which candidates were asked; 0: seed and baselines
    model: str = ""  # the model that wrote it
    asked_model: str = ""  # the spec's model it was asked of ("": a coder-agent copy through the JOBS stream)
    function: str = ""  # the evolved function alone (what prompts show)
    stage_scores: dict[str, float] = Field(default_factory=dict)  # cascade stage -> score
    signature: list[float] = Field(default_factory=list)  # per-instance scores of the last stage it ran
    fingerprint: str = ""  # the scorer's behaviour hash (same fingerprint = same behaviour)
    duplicate_of: str = ""
    validation: float | None = None  # score on the validation stage (run's top programs only)
    test: dict[str, float] | None = None  # metrics of the test stage (final program, seed, baselines)
    published: bool = False  # the job is on the JOBS stream
    deadline: float = 0.0  # an "asked" job not back by then is "lost"
    finished_at: float | None = None
    tokens: int = 0  # output tokens the model spent on it
    prompt: str = ""  # the job's user message (what the model saw)
    traceparent: str = ""  # W3C trace context of its sample span: the coder and sandbox spans join it


class EvolveIsland(Message):
    """One island of mode "islands": its clusters (programs grouped by behaviour) and its
    best program. ``curve`` holds (samples asked in the run, island best) at each change."""

    run_id: str
    island: int
    epoch: int = 0  # resets so far
    founder: str = ""  # program id it was (re)started from
    clusters: dict[str, list[str]] = Field(default_factory=dict)  # signature key -> program ids
    cluster_scores: dict[str, float] = Field(default_factory=dict)  # signature key -> score
    best_id: str = ""
    best_score: float | None = None
    best_validation: float | None = None
    samples: int = 0  # candidates asked from this island
    valid: int = 0  # of them, how many ran and earned a first-stage score
    registered: int = 0  # programs added to it
    curve: list[tuple[int, float]] = Field(default_factory=list)
    updated_at: float = Field(default_factory=now)


class EvolveGeneration(Message):
    """One generation of mode "generations": its candidate jobs, and the population that survived it."""

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
    generation: int = 0  # mode "generations": last finished generation (0: only the seed is scored)
    population: list[str] = Field(default_factory=list)
    seed_score: float | None = None
    best_id: str = ""  # best training score so far
    best_score: float | None = None
    owner: str = ""  # instance id of the router running it ("" when nobody does)
    heartbeat_at: float = 0.0
    error: ErrorInfo | None = None
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    # mode "islands":
    phase: Literal["seeding", "evolving", "finishing", "ended"] = "seeding"
    asked: int = 0  # candidates asked (the --samples budget counts these)
    answered: int = 0  # candidates that came back (or were declared lost)
    valid: int = 0  # candidates that ran and earned a first-stage score
    verdicts: dict[str, int] = Field(default_factory=dict)
    active_s: float = 0.0  # seconds a router drove the run (the --minutes budget counts these)
    final_id: str = ""  # the program the run returns: best validation among the top training programs
    final_validation: float | None = None
    trace_id: str = ""  # the run's trace


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
