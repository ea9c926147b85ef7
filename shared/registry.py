"""The one list of the syndicate's services. Everything that names a service reads it:
the local supervisor, the compose and Kubernetes files (generated from it), the NATS users
and their permissions, the router's agents and job subjects, the gateway's model list,
the ``agent`` field of the contracts and the placement planner's default roles.

Adding an agent is its folder under ``services/`` plus one ``Service`` entry below with
an ``Agent`` (docs/architecture.md walks through one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared import subjects as s

Image = Literal["agent", "sandbox", "gateway"]  # Dockerfile target the container runs

INBOX = "_INBOX.>"  # nats-py's reply inboxes (requests, JetStream deliveries, acks' replies)
# JetStream clients need its API (stream/consumer admin, pull fetch, KV gets) and acks.
JETSTREAM_PUBLISH = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>")
TASK_STATE_KV = f"$KV.{s.TASK_STATE_BUCKET}.>"
THREAD_KV = f"$KV.{s.THREAD_BUCKET}.>"
EVOLVE_KV = f"$KV.{s.EVOLVE_BUCKET}.>"
EVOLVE_RESULTS = s.evolve_results("*")
TASK_EVENTS = s.task_events("*")
INGEST_EVENTS = s.ingest_events("*")
MODEL_GENERATE = f"{s.MODEL_GENERATE_PREFIX}.*"  # every model
MODEL_EVENTS = s.model_events("*")
# What a process that serves its loaded model as a model (shared/generation/serve.py) needs.
MODEL_SERVER = (MODEL_EVENTS,), (MODEL_GENERATE, s.MODEL_CANCEL)


@dataclass(frozen=True)
class Permissions:
    """Subjects a NATS user may publish to and subscribe to (besides the common ones)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    jetstream: bool = False

    def publish_allow(self) -> list[str]:
        common = (s.HEALTH_PING, f"{s.DEAD_LETTER}.>")
        return _unique(self.publish + common + (JETSTREAM_PUBLISH if self.jetstream else ()))

    def subscribe_allow(self) -> list[str]:
        return _unique(self.subscribe + (s.HEALTH_PING, s.METRICS_PING, s.TASK_CANCEL, INBOX))


@dataclass(frozen=True)
class Agent:
    """What makes a service an agent: the router gives it steps on its own job subject."""

    name: str  # AgentJob.agent, the job subject's last token and the gateway's model id
    description: str  # the gateway's model card
    task_kind: str | None = None  # TaskSubmit.kind that goes straight to it ("code")
    # Extra subjects it calls or answers on, besides its jobs, step results and task events.
    publish: tuple[str, ...] = ()

    @property
    def job_subject(self) -> str:
        return s.job_subject(self.name)


@dataclass(frozen=True)
class Deployment:
    """How its container is sized and wired (compose and Kubernetes are rendered from it)."""

    cpu: str = "2"  # Kubernetes request (and limit, for pinned services)
    cpu_limit: str | None = None  # shared-pool services: burst up to this
    memory: str = "2Gi"
    memory_limit: str | None = None
    needs: tuple[str, ...] = ()  # infrastructure it waits for ("qdrant")
    state_volume: str | None = None  # a volume that keeps its state dir across restarts


@dataclass(frozen=True)
class Service:
    """One process of the syndicate: the local supervisor's child, a container, a NATS user."""

    name: str  # bus name; also the compose service, the Deployment and the NATS user
    module: str  # started as `python -m <module>`
    image: Image
    permissions: Permissions = field(default_factory=Permissions)
    agent: Agent | None = None
    role: str | None = None  # its key in a placement plan's "agents": exclusive cores
    weight: float | None = None  # placed by default (local stack) with this relative size
    aliases: tuple[str, ...] = ()  # other names a placement plan may give it
    dispatches_jobs: bool = False  # publishes to every agent's job subject (the router)
    serves_model: bool = False  # serves the model it loads to model requests (every agent does)
    deployment: Deployment = field(default_factory=Deployment)

    @property
    def durable(self) -> str:
        """Its JetStream consumer of jobs (copies of the service share it)."""
        return self.name

    @property
    def model_server(self) -> bool:
        """It answers model requests for the model it loads (agents, the router's classifier)."""
        return self.serves_model or self.agent is not None

    def nats_permissions(self) -> Permissions:
        """Its own permissions, plus an agent's jobs in, results and events out (and, for
        the router, every agent's job subject), plus model requests for a model server."""
        p = self.permissions
        if self.dispatches_jobs:
            p = Permissions(job_subjects() + p.publish, p.subscribe, p.jetstream)
        elif self.agent is not None:
            p = Permissions(
                publish=(s.STEP_RESULT, TASK_EVENTS, *self.agent.publish, *p.publish),
                subscribe=(self.agent.job_subject, *p.subscribe),
                jetstream=True,
            )
        if self.model_server:
            publish, subscribe = MODEL_SERVER
            p = Permissions(p.publish + publish, p.subscribe + subscribe, p.jetstream)
        return p


def _unique(items: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(items))


CODER = Agent(
    "coder", "coder-agent: writes code, checks it in the sandbox, repairs it", task_kind="code",
    publish=(EVOLVE_RESULTS, s.SANDBOX_EXEC, s.RETRIEVER_SEARCH),
)
REASONER = Agent(
    "reasoner", "reasoner-agent: answers, with retrieval when a collection is given", task_kind="reason",
    publish=(s.RETRIEVER_SEARCH, s.RETRIEVER_EMBED, s.job_subject(CODER.name)),
)
AGENT_DEPLOYMENT = Deployment(cpu="4", memory="4Gi")

SERVICES: tuple[Service, ...] = (
    Service(
        "router", "services.router", "agent", role="router", weight=0.5, dispatches_jobs=True,
        serves_model=True,  # its classifier's model, when it loads one
        permissions=Permissions(
            # Evolution runs: candidates scored in code-sandbox, records in the evolve bucket,
            # candidates of a spec's named models asked as model requests.
            publish=(s.EVAL_RUN, s.TASK_CANCEL, TASK_EVENTS, TASK_STATE_KV, s.SANDBOX_EXEC, EVOLVE_KV, THREAD_KV,
                     MODEL_GENERATE, s.MODEL_CANCEL),
            # Advisories: a message that exhausted max_deliver becomes a dead letter + failed task.
            subscribe=(s.TASK_SUBMIT, s.TASK_REVIEW, s.STEP_RESULT, TASK_STATE_KV, f"{s.ADVISORY_MAX_DELIVERIES}.>",
                       EVOLVE_RESULTS, EVOLVE_KV, THREAD_KV, MODEL_EVENTS),
            jetstream=True,
        ),
    ),
    Service("coder-agent", "services.coder_agent", "agent", agent=CODER, role="coder", weight=2,
            deployment=AGENT_DEPLOYMENT),
    Service("reasoner-agent", "services.reasoner_agent", "agent", agent=REASONER, role="reasoner", weight=2,
            deployment=AGENT_DEPLOYMENT),
    Service(
        "retriever", "services.retriever", "agent", aliases=("embedder",),
        permissions=Permissions(
            publish=(INGEST_EVENTS,),
            subscribe=(s.RETRIEVER_SEARCH, s.RETRIEVER_INGEST, s.RETRIEVER_EMBED, s.INGEST_JOB),
            jetstream=True,
        ),
        deployment=Deployment(cpu="500m", cpu_limit="2", memory="1Gi", memory_limit="2Gi", needs=("qdrant",)),
    ),
    # Only answers requests (allow_responses): untrusted code's host may publish nothing else.
    Service("code-sandbox", "services.code_sandbox", "sandbox", aliases=("sandbox",),
            permissions=Permissions(subscribe=(s.SANDBOX_EXEC,)),
            deployment=Deployment(cpu="500m", cpu_limit="4", memory="1Gi", memory_limit="8Gi")),
    Service(
        "evaluator", "services.evaluator", "agent", role="evaluator",  # pinned only when a plan names it
        permissions=Permissions(
            publish=(s.TASK_SUBMIT, TASK_STATE_KV, s.SANDBOX_EXEC, s.RETRIEVER_SEARCH, TASK_EVENTS),
            subscribe=(s.EVAL_RUN, TASK_EVENTS),
            jetstream=True,
        ),
        deployment=Deployment(cpu="2", memory="4Gi", state_volume="evaluator-reports"),
    ),
    Service(
        "gateway", "services.gateway", "gateway",  # HTTP: OpenAI-compatible API, MCP, A2A, /metrics
        permissions=Permissions(
            # MCP's tools: run_code in code-sandbox, ingest into the retriever.
            # Model requests: plain generations on the agents' models (OpenAI, Ollama APIs).
            # TASK_STATE_KV: a submitted task's "queued" record (shared.bus.publish_task).
            publish=(s.TASK_SUBMIT, TASK_STATE_KV, s.TASK_REVIEW, s.TASK_CANCEL, s.RETRIEVER_SEARCH, s.RETRIEVER_EMBED,
                     s.METRICS_PING, s.SANDBOX_EXEC, s.RETRIEVER_INGEST, MODEL_GENERATE, s.MODEL_CANCEL),
            subscribe=(TASK_EVENTS, MODEL_EVENTS),
            jetstream=True,
        ),
        deployment=Deployment(cpu="250m", cpu_limit="1", memory="256Mi", memory_limit="512Mi"),
    ),
)

# The operator's CLI (`syndicate submit/cancel/result/ingest/eval`) is a user, not a service.
CLI_USER = "cli"
CLI_PERMISSIONS = Permissions(
    publish=(
        s.TASK_SUBMIT, TASK_STATE_KV, s.TASK_REVIEW, s.TASK_CANCEL, s.INGEST_JOB, s.EVAL_RUN, s.RETRIEVER_INGEST, s.RETRIEVER_SEARCH,
        s.SANDBOX_EXEC,  # `syndicate exec`: run a program through code-sandbox
    ),
    subscribe=(TASK_EVENTS, INGEST_EVENTS),
    jetstream=True,
)


def service(name: str) -> Service:
    """The service called ``name`` (KeyError if none)."""
    for svc in SERVICES:
        if svc.name == name:
            return svc
    raise KeyError(name)


def agents() -> dict[str, Agent]:
    """Every agent by name, in registry order."""
    return {svc.agent.name: svc.agent for svc in SERVICES if svc.agent is not None}


def agent_names() -> tuple[str, ...]:
    return tuple(agents())


def agent_for_kind(kind: str) -> str | None:
    """The agent a task of ``kind`` goes straight to ("code" -> "coder"), if any."""
    return next((a.name for a in agents().values() if a.task_kind == kind), None)


def kind_of_agent(agent: str) -> str:
    """The task kind an agent's answer counts as ("coder" -> "code"; "auto" when none)."""
    found = agents().get(agent)
    return (found.task_kind if found else None) or "auto"


def job_subjects() -> tuple[str, ...]:
    """Every agent's job subject (what the router publishes to)."""
    return tuple(a.job_subject for a in agents().values())


def nats_users() -> list[tuple[str, Permissions]]:
    """Every NATS user of a deployment: one per service plus the CLI."""
    return [(svc.name, svc.nats_permissions()) for svc in SERVICES] + [(CLI_USER, CLI_PERMISSIONS)]


def placement_roles() -> dict[str, float]:
    """Roles the local stack places by default, with their weights."""
    return {svc.role: svc.weight for svc in SERVICES if svc.role and svc.weight}


def service_for_role(role: str) -> str | None:
    """The service that runs a placement role ("coder" -> "coder-agent"), else None."""
    for svc in SERVICES:
        if role == svc.name or role == svc.role or role in svc.aliases:
            return svc.name
    return None
