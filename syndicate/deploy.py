"""What runs where when the syndicate is deployed in containers (compose, Kubernetes).

One table of services — bus name, Python module, image target, NATS permissions — from
which the NATS server's user list is rendered and a placement plan becomes compose
cpusets. ``tests/deploy`` checks that compose.yaml and k8s/ name exactly these services,
so the three ways to run the stack cannot drift apart. Every subject comes from
``shared.subjects``.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

from shared import subjects as s
from shared.settings import format_cpus

INBOX = "_INBOX.>"  # nats-py's reply inboxes (requests, JetStream deliveries, acks' replies)
# JetStream clients need its API (stream/consumer admin, pull fetch, KV gets) and acks.
JETSTREAM_PUBLISH = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>")
TASK_STATE_KV = f"$KV.{s.TASK_STATE_BUCKET}.>"
EVOLVE_KV = f"$KV.{s.EVOLVE_BUCKET}.>"
EVOLVE_RESULTS = s.evolve_results("*")
TASK_EVENTS = s.task_events("*")
INGEST_EVENTS = s.ingest_events("*")


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
class DeployedService:
    """One process of the syndicate as a container / Deployment."""

    name: str  # bus name; also the compose service, the Deployment and the NATS user
    module: str  # started as `python -m <module>`
    image: str  # Dockerfile target: agent (llama.cpp) | sandbox | gateway
    plan_role: str | None  # its key in a placement plan's "agents": exclusive cores
    permissions: Permissions = field(default_factory=Permissions)

    @property
    def password_env(self) -> str:
        """Environment variable holding this service's NATS password."""
        return password_env(self.name)


def password_env(user: str) -> str:
    """'coder-agent' -> 'NATS_CODER_AGENT_PASSWORD'."""
    return f"NATS_{user.upper().replace('-', '_')}_PASSWORD"


def _unique(items: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(items))


SERVICES: tuple[DeployedService, ...] = (
    DeployedService(
        "router", "services.router", "agent", "router",
        Permissions(
            # Evolution runs: candidates scored in code-sandbox, records in the evolve bucket.
            publish=(s.JOB_CODER, s.JOB_REASONER, s.EVAL_RUN, s.TASK_CANCEL, TASK_EVENTS, TASK_STATE_KV,
                     s.SANDBOX_EXEC, EVOLVE_KV),
            # Advisories: a message that exhausted max_deliver becomes a dead letter + failed task.
            subscribe=(s.TASK_SUBMIT, s.STEP_RESULT, TASK_STATE_KV, f"{s.ADVISORY_MAX_DELIVERIES}.>",
                       EVOLVE_RESULTS, EVOLVE_KV),
            jetstream=True,
        ),
    ),
    DeployedService(
        "coder-agent", "services.coder_agent", "agent", "coder",
        Permissions(
            publish=(s.STEP_RESULT, EVOLVE_RESULTS, TASK_EVENTS, s.SANDBOX_EXEC, s.RETRIEVER_SEARCH),
            subscribe=(s.JOB_CODER,),
            jetstream=True,
        ),
    ),
    DeployedService(
        "reasoner-agent", "services.reasoner_agent", "agent", "reasoner",
        Permissions(
            publish=(s.STEP_RESULT, TASK_EVENTS, s.RETRIEVER_SEARCH, s.RETRIEVER_EMBED, s.JOB_CODER),
            subscribe=(s.JOB_REASONER,),
            jetstream=True,
        ),
    ),
    DeployedService(
        "retriever", "services.retriever", "agent", None,
        Permissions(
            publish=(INGEST_EVENTS,),
            subscribe=(s.RETRIEVER_SEARCH, s.RETRIEVER_INGEST, s.RETRIEVER_EMBED, s.INGEST_JOB),
            jetstream=True,
        ),
    ),
    # Only answers requests (allow_responses): untrusted code's host may publish nothing else.
    DeployedService("code-sandbox", "services.code_sandbox", "sandbox", None, Permissions(subscribe=(s.SANDBOX_EXEC,))),
    DeployedService(
        "evaluator", "services.evaluator", "agent", "evaluator",
        Permissions(
            publish=(s.TASK_SUBMIT, s.JOB_CODER, s.JOB_REASONER, s.SANDBOX_EXEC, s.RETRIEVER_SEARCH, TASK_EVENTS),
            subscribe=(s.EVAL_RUN, TASK_EVENTS),
            jetstream=True,
        ),
    ),
    DeployedService(
        "gateway", "services.gateway", "gateway", None,
        Permissions(
            publish=(s.TASK_SUBMIT, s.TASK_CANCEL, s.RETRIEVER_SEARCH, s.RETRIEVER_EMBED, s.METRICS_PING),
            subscribe=(TASK_EVENTS,),
            jetstream=True,
        ),
    ),
)

# The operator's CLI (`syndicate submit/cancel/result/ingest/eval`) is a user, not a service.
CLI_USER = "cli"
CLI_PERMISSIONS = Permissions(
    publish=(
        s.TASK_SUBMIT, s.TASK_CANCEL, s.INGEST_JOB, s.EVAL_RUN, s.RETRIEVER_INGEST, s.RETRIEVER_SEARCH,
        s.SANDBOX_EXEC,  # `syndicate exec`: run a program through code-sandbox
    ),
    subscribe=(TASK_EVENTS, INGEST_EVENTS),
    jetstream=True,
)

# Plan role aliases: a plan may name an agent by role ("coder") or by service name.
_ROLE_ALIASES = {"embedder": "retriever", "sandbox": "code-sandbox"}


def service(name: str) -> DeployedService:
    """The deployed service called ``name`` (KeyError if none)."""
    for svc in SERVICES:
        if svc.name == name:
            return svc
    raise KeyError(name)


def nats_users() -> list[tuple[str, Permissions]]:
    """Every NATS user of a deployment: one per service plus the CLI."""
    return [(svc.name, svc.permissions) for svc in SERVICES] + [(CLI_USER, CLI_PERMISSIONS)]


def render_nats_auth() -> str:
    """The NATS server's ``authorization`` block: one user per service, passwords from env.

    nats-server resolves ``$NAME`` from its environment, so the file holds no secret.
    """

    def quoted(items: list[str]) -> str:
        return ", ".join(f'"{i}"' for i in items)

    lines = [
        "# Generated from syndicate/deploy.py by `syndicate deploy nats-auth`: do not edit by hand.",
        "# One user per service; passwords come from the server's environment (never committed).",
        "authorization {",
        "  users = [",
    ]
    for user, perms in nats_users():
        lines += [
            "    {",
            f'      user: "{user}"',
            f"      password: ${password_env(user)}",
            "      permissions: {",
            f"        publish: {{ allow: [{quoted(perms.publish_allow())}] }}",
            f"        subscribe: {{ allow: [{quoted(perms.subscribe_allow())}] }}",
            "        allow_responses: true",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def new_password(length: int = 32) -> str:
    """A random password that nats-server's config parser reads back as a plain string.

    Letters and digits only, starting with a letter: an all-digit or '1k'-like value would
    be parsed as a number when nats-server expands ``$VAR``.
    """
    alphabet = string.ascii_letters + string.digits
    return secrets.choice(string.ascii_letters) + "".join(
        secrets.choice(alphabet) for _ in range(length - 1)
    )


def credentials_env() -> str:
    """A fresh ``.env`` body: one random NATS password per user."""
    lines = ["# NATS passwords for this deployment (generated; keep out of git)."]
    lines += [f"{password_env(user)}={new_password()}" for user, _ in nats_users()]
    return "\n".join(lines) + "\n"


# --- placement plan -> compose cpusets ----------------------------------------------------
@dataclass(frozen=True)
class Pinning:
    """Where one container runs: its cpuset and the environment that tells it so."""

    cpuset: str
    env: dict[str, str]


def cpusets_from_plan(plan: dict) -> dict[str, Pinning]:
    """Map a placement plan to a cpuset and placement environment per service.

    ``plan`` is ``syndicate topology --json`` output: ``{"ccds": [[cpu, ...], ...],
    "agents": {"coder": {"cpus": [...], "threads": n, "env": {...}}, ...},
    "shared_cpus": [...], "shared_env": {...}}`` (``env``/``shared_*`` optional). Agents
    get their own cores; every other service gets ``shared_cpus`` or, when the plan has
    none, the L3 groups no agent touches (never an agent's SMT siblings), or, when every
    group is taken, whatever cores are left. Key ``"_shared"`` is that shared pinning.
    """
    ccds = [set(group) for group in plan.get("ccds", [])]
    everything = set().union(*ccds) if ccds else set()
    out: dict[str, Pinning] = {}
    taken: set[int] = set()
    for role, entry in plan.get("agents", {}).items():
        name = plan_service(role)
        if name is None:
            continue
        cpus = set(entry["cpus"])
        if cpus & taken:
            raise ValueError(f"placement plan gives cores {sorted(cpus & taken)} to two agents")
        taken |= cpus
        everything |= cpus
        cpuset = format_cpus(sorted(cpus))
        env = {"SYNDICATE_CPUS": cpuset, "OMP_NUM_THREADS": str(entry.get("threads", len(cpus)))}
        out[name] = Pinning(cpuset, {**env, **entry.get("env", {})})
    shared = set(plan.get("shared_cpus") or ())
    if shared & taken:
        raise ValueError(f"placement plan shares agent cores {sorted(shared & taken)}")
    if not shared:
        free_groups = [g for g in ccds if not g & taken]
        shared = set().union(*free_groups) if free_groups else everything - taken
    shared = shared or everything  # fewer cores than agents: the rest share (planner says so)
    cpuset = format_cpus(sorted(shared))
    shared_pin = Pinning(cpuset, {"SYNDICATE_CPUS": cpuset, **plan.get("shared_env", {})})
    for svc in SERVICES:
        out.setdefault(svc.name, shared_pin)
    out["_shared"] = shared_pin
    return out


def plan_service(role: str) -> str | None:
    """The service that runs a plan role ("coder" -> "coder-agent"); None if no such service."""
    names = {svc.name for svc in SERVICES}
    if role in names:
        return role
    if role in _ROLE_ALIASES:
        return _ROLE_ALIASES[role]
    for svc in SERVICES:
        if svc.plan_role == role:
            return svc.name
    return None


INFRA_SERVICES = ("nats", "qdrant", "jaeger")  # third-party containers on the shared cores


def render_compose_cpus(plan: dict) -> str:
    """A compose override pinning each container (cpuset) and telling it its cores.

    Covers every container of compose.yaml. Write it to ``compose.override.yaml``:
    ``docker compose`` merges that file on top of compose.yaml automatically.
    """
    pins = cpusets_from_plan(plan)
    lines = ["# Generated by `syndicate deploy cpus` from a placement plan.", "services:"]
    for name in INFRA_SERVICES:
        lines += [f"  {name}:", f'    cpuset: "{pins["_shared"].cpuset}"']
    for svc in SERVICES:
        pin = pins[svc.name]
        lines += [f"  {svc.name}:", f'    cpuset: "{pin.cpuset}"', "    environment:"]
        lines += [f'      {key}: "{value}"' for key, value in pin.env.items()]
    return "\n".join(lines) + "\n"
