"""Every NATS subject, stream, consumer and bucket name the syndicate uses.

Durable work goes through JetStream streams; request/reply and broadcast use core
NATS. Nothing else in the code base spells a subject.
"""

from __future__ import annotations

PREFIX = "syndicate"

# --- JetStream: durable work -------------------------------------------------------
TASKS_STREAM = "SYNDICATE_TASKS"
TASK_SUBMIT = f"{PREFIX}.task.submit"  # TaskSubmit; consumed by the router
TASK_REVIEW = f"{PREFIX}.task.review"  # ReviewDecision on a task in input_required; consumed by the router

JOBS_STREAM = "SYNDICATE_JOBS"
JOB_PREFIX = f"{PREFIX}.job"
JOB_CODER = f"{JOB_PREFIX}.coder"  # AgentJob for coder-agent
JOB_REASONER = f"{JOB_PREFIX}.reasoner"  # AgentJob for reasoner-agent
STEP_RESULT = f"{JOB_PREFIX}.result"  # StepResult from any agent; consumed by the router
EVOLVE_RESULT_PREFIX = f"{JOB_PREFIX}.evolve"  # StepResult of "mutate" jobs: f"{..}.{run_id}" (evolve_results)

INGEST_STREAM = "SYNDICATE_INGEST"
INGEST_JOB = f"{PREFIX}.ingest.job"  # IngestRequest; consumed by the retriever

EVAL_STREAM = "SYNDICATE_EVAL"
EVAL_RUN = f"{PREFIX}.eval.run"  # EvalRunRequest; consumed by the evaluator

DEAD_LETTER_STREAM = "SYNDICATE_DLQ"
DEAD_LETTER = f"{PREFIX}.dlq"  # DeadLetter records: f"{DEAD_LETTER}.{source}"

# Durable consumer names (one per consuming service; copies share it).
ROUTER_TASKS_DURABLE = "router-tasks"
ROUTER_RESULTS_DURABLE = "router-results"
ROUTER_REVIEWS_DURABLE = "router-reviews"
CODER_DURABLE = "coder-agent"
REASONER_DURABLE = "reasoner-agent"
RETRIEVER_INGEST_DURABLE = "retriever-ingest"
EVALUATOR_DURABLE = "evaluator"
EVOLVE_DURABLE_PREFIX = "evolve-"  # + run id: the router's consumer of one run's candidates

# --- JetStream advisories (published by nats-server itself) ------------------------
# A message reached its consumer's max_deliver without an ack: f"{...}.<stream>.<consumer>".
# The router turns it into a dead letter and, for task work, a `failed` task.
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


def max_deliveries_advisory(stream: str = "*", consumer: str = "*") -> str:
    """Advisory subject for messages of ``stream``/``consumer`` that exhausted redelivery."""
    return f"{ADVISORY_MAX_DELIVERIES}.{stream}.{consumer}"


# --- Key-value buckets -------------------------------------------------------------
TASK_STATE_BUCKET = "syndicate_tasks"  # task_id -> TaskState JSON
THREAD_BUCKET = "syndicate_threads"  # thread id -> ThreadRecord JSON (the tasks' retention)
# Evolution runs: "<run>.run" -> EvolveRun, "<run>.island.<NN>" -> EvolveIsland,
# "<run>.gen.<NNNN>" -> EvolveGeneration, "<run>.prog.<program_id>" -> EvolveProgram
# (see shared/evolve/store.py).
EVOLVE_BUCKET = "syndicate_evolve"

# --- Core NATS: request/reply (queue groups) and broadcast -------------------------
SANDBOX_EXEC = f"{PREFIX}.sandbox.exec"  # ExecRequest -> ExecResult
RETRIEVER_SEARCH = f"{PREFIX}.retriever.search"  # SearchRequest -> SearchReply
RETRIEVER_INGEST = f"{PREFIX}.retriever.ingest"  # IngestRequest -> IngestReply (small ingests)
RETRIEVER_EMBED = f"{PREFIX}.retriever.embed"  # EmbedRequest -> EmbedReply
TASK_CANCEL = f"{PREFIX}.task.cancel"  # CancelRequest, broadcast to router and every agent
HEALTH_PING = f"{PREFIX}.health.ping"  # HealthPing, broadcast; every instance replies HealthReply
# MetricsPing, broadcast; every instance that keeps shared.metrics.ServiceMetrics replies
# MetricsReply (Prometheus text). The gateway's /metrics gathers them.
METRICS_PING = f"{PREFIX}.metrics.ping"

# Model requests (plain generations on a loaded model, shared/generation/): a request/reply
# on model_generate(model) in the model's queue group, so several copies serve one name;
# its events on model_events(request_id); GenerateCancel broadcast on MODEL_CANCEL.
MODEL_PREFIX = f"{PREFIX}.model"
MODEL_GENERATE_PREFIX = f"{MODEL_PREFIX}.generate"
MODEL_EVENTS_PREFIX = f"{MODEL_PREFIX}.events"
MODEL_CANCEL = f"{MODEL_PREFIX}.cancel"


def task_events(task_id: str) -> str:
    """Subject where the router and agents publish a task's TaskEvent stream."""
    return f"{PREFIX}.task.events.{task_id}"


def ingest_events(job_id: str) -> str:
    """Core subject where the retriever publishes an IngestReply per finished batch of a job."""
    return f"{PREFIX}.ingest.events.{job_id}"


def model_token(model: str) -> str:
    """A model name as one subject token (and queue group name): characters NATS reserves
    (``.``, ``*``, ``>``, spaces) become ``_``."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in model) or "_"


def model_generate(model: str) -> str:
    """Request/reply subject of generations on ``model`` (GenerateRequest -> GenerateAccepted)."""
    return f"{MODEL_GENERATE_PREFIX}.{model_token(model)}"


def model_queue(model: str) -> str:
    """The queue group of ``model``'s servers: each request goes to one of them."""
    return f"model-{model_token(model)}"


def model_events(request_id: str) -> str:
    """Core subject of one generation's GenerateEvents."""
    return f"{MODEL_EVENTS_PREFIX}.{request_id}"


def dead_letter(source: str) -> str:
    """Dead-letter subject for messages that failed validation or exhausted redelivery."""
    return f"{DEAD_LETTER}.{source}"


def evolve_results(run_id: str) -> str:
    """JetStream subject (JOBS stream) where coder-agents put the candidates of a run."""
    return f"{EVOLVE_RESULT_PREFIX}.{run_id}"


def evolve_durable(run_id: str) -> str:
    """Durable consumer of a run's candidates (survives a router restart: the run resumes)."""
    return f"{EVOLVE_DURABLE_PREFIX}{run_id}"


def job_subject(agent: str) -> str:
    """JetStream subject of an agent's job queue (agent: 'coder' or 'reasoner')."""
    return f"{JOB_PREFIX}.{agent}"


# Queue groups: running N copies of a service scales it out with no code change.
QUEUE_SANDBOX = "code-sandbox"
QUEUE_RETRIEVER = "retriever"
