"""Glue between the placement planner and the local stack: which cores each agent role
gets on this machine."""

from __future__ import annotations

import os
from typing import Any


def stack_plan(roles: list[str]) -> dict[str, Any]:
    """Disjoint cores per agent role on this host (a plain dict, stored in stack.json)."""
    cpus = sorted(os.sched_getaffinity(0))
    agents: dict[str, Any] = {}
    notes: list[str] = []
    if len(cpus) >= len(roles):
        share = len(cpus) // len(roles)
        for i, role in enumerate(roles):
            mine = cpus[i * share:(i + 1) * share]
            agents[role] = {"cpus": mine, "threads": len(mine)}
    else:
        for i, role in enumerate(roles):
            mine = [cpus[i % len(cpus)]]
            agents[role] = {"cpus": mine, "threads": 1}
        notes.append("fewer cores than agents: agents share cores with 1 thread each")
    return {"agents": agents, "notes": notes}
