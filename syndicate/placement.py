"""Glue between the placement planner (shared.topology) and the local stack: which cores
each agent role gets on this machine."""

from __future__ import annotations

from typing import Any

from shared.topology import DEFAULT_ROLES, RoleSpec, discover, plan_placement


def stack_plan(roles: list[str]) -> dict[str, Any]:
    """Disjoint cores per agent role on this host (a plain dict, stored in stack.json):
    ``{"agents": {role: {"cpus", "threads", "env"}}, "shared_cpus", "mode", "notes"}``.
    Role sizes come from the planner's defaults; an unknown role weighs 1."""
    specs = {r: DEFAULT_ROLES.get(r, RoleSpec()) for r in dict.fromkeys(roles)}
    if not specs:
        return {"agents": {}, "shared_cpus": [], "mode": "none", "notes": []}
    topology = discover()
    plan = plan_placement(topology, specs)
    return {
        "agents": {
            r: {"cpus": a.cpus, "threads": a.threads, "env": a.env} for r, a in plan.agents.items()
        },
        "shared_cpus": plan.shared_cpus,
        "mode": plan.mode,
        "notes": plan.notes + list(topology.notes),
    }
