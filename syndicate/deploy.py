"""What runs where when the syndicate is deployed in containers (compose, Kubernetes).

From the service registry (``shared.registry``) the NATS server's user list is rendered
and a placement plan becomes compose cpusets. ``tests/deploy`` checks that compose.yaml
and k8s/ name exactly the registry's services, so the three ways to run the stack cannot
drift apart.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from shared.registry import SERVICES, nats_users, service_for_role
from shared.settings import format_cpus


def password_env(user: str) -> str:
    """'coder-agent' -> 'NATS_CODER_AGENT_PASSWORD'."""
    return f"NATS_{user.upper().replace('-', '_')}_PASSWORD"


def render_nats_auth() -> str:
    """The NATS server's ``authorization`` block: one user per service, passwords from env.

    nats-server resolves ``$NAME`` from its environment, so the file holds no secret.
    """

    def quoted(items: list[str]) -> str:
        return ", ".join(f'"{i}"' for i in items)

    lines = [
        "# Generated from shared/registry.py by `syndicate deploy nats-auth`: do not edit by hand.",
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

    Two agents on one core are refused, unless the plan marks both ``"exclusive": false``:
    the planner's own plan for a host with fewer cores than agents (one thread each,
    OMP_WAIT_POLICY=PASSIVE), which is then carried into compose as it is.
    """
    ccds = [set(group) for group in plan.get("ccds", [])]
    everything = set().union(*ccds) if ccds else set()
    out: dict[str, Pinning] = {}
    taken: set[int] = set()
    sharing: set[int] = set()  # cores of agents the plan itself lets share
    for role, entry in plan.get("agents", {}).items():
        name = service_for_role(role)
        if name is None:
            continue
        cpus = set(entry["cpus"])
        shares = entry.get("exclusive") is False
        if cpus & taken and not (shares and cpus & taken <= sharing):
            raise ValueError(f"placement plan gives cores {sorted(cpus & taken)} to two agents")
        taken |= cpus
        if shares:
            sharing |= cpus
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
