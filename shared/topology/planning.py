"""The placement planner: which cores each agent's model owns, how many threads it runs,
and which cores stay for the shared services (code-sandbox, retriever, NATS).

Rules, in order of importance:

1. Never oversubscribe: no physical core in two agents, threads = physical cores owned
   (SMT siblings of a core go to the same agent and add no thread). Measured on a 2-core
   box: two unpinned llama.cpp processes with 2 threads each fall to 0.41 tok/s each.
   Thread policy: an agent on cores of its own keeps OpenMP's default wait policy (a
   short spin at each of ggml's barriers; PASSIVE sleeps there and costs a multi-threaded
   model a third of its speed); agents sharing cores run one thread with
   OMP_WAIT_POLICY=PASSIVE, as do the shared services.
2. Keep an agent inside one L3 group (CCX/CCD) whenever its share fits in one.
3. Bigger models (larger ``weight``) get at least as many cores, and whole L3 groups
   when there are enough groups.
4. Reserve about 1/8 of the cores for the shared services when cores are to spare.
5. Degrade, and say so in ``notes``: more agents than groups -> agents split groups;
   fewer cores than agents -> agents share cores with 1 thread and OMP_WAIT_POLICY=PASSIVE.

The result depends only on the topology, the roles and their weights (ties are broken
by role name), never on dict order.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from shared import registry
from shared.errors import ConfigError
from shared.settings import format_cpus
from shared.topology.discovery import Topology

# Share of the physical cores kept for the shared services (below) when cores are
# to spare: one CCX of four on a 32-core EPYC 7502P.
SHARED_FRACTION = 1 / 8
SHARED_SERVICES = ("nats", *(svc.name for svc in registry.SERVICES if not svc.role))

Mode = Literal["whole-groups", "split-groups", "shared-cores"]


class RoleSpec(BaseModel):
    """How much of the machine a role's model deserves."""

    weight: float = Field(default=1.0, gt=0)  # relative size: bigger models get more cores
    min_cores: int = Field(default=0, ge=0)  # physical cores it needs at the least


# The roles the local stack places by default: the registry's, with their weights.
DEFAULT_ROLES: dict[str, RoleSpec] = {
    role: RoleSpec(weight=weight) for role, weight in registry.placement_roles().items()
}


def default_roles() -> dict[str, RoleSpec]:
    """The roles placed when the caller names none."""
    return {name: spec.model_copy() for name, spec in DEFAULT_ROLES.items()}


def parse_roles(text: str) -> dict[str, RoleSpec]:
    """``"coder=2,reasoner=1:4,router=0.5"`` -> roles (``weight`` or ``weight:min_cores``)."""
    roles: dict[str, RoleSpec] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            if not name:
                raise ValueError("empty role name")
            weight, _, min_cores = (value if sep else "1").partition(":")
            roles[name] = RoleSpec(weight=float(weight), min_cores=int(min_cores or 0))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(f"bad role {item!r}: expected name=weight[:min_cores]") from exc
    if not roles:
        raise ConfigError("no roles given")
    return roles


class AgentPlacement(BaseModel):
    """One agent process's share of the machine."""

    cpus: list[int]  # logical cpus it is pinned to (all SMT siblings of its cores)
    threads: int  # llama.cpp threads: one per physical core owned
    cores: int  # physical cores owned
    weight: float
    l3_groups: list[int]  # indices into Topology.l3_groups
    numa_nodes: list[int]  # indices into Topology.numa_nodes
    exclusive: bool = True  # False only when agents must share cores (too few cores)
    env: dict[str, str] = Field(default_factory=dict)


class PlacementPlan(BaseModel):
    """Where every agent runs; ``notes`` states every compromise the planner made."""

    mode: Mode
    agents: dict[str, AgentPlacement]
    shared_cpus: list[int]  # reserved for shared services; empty: they float over all cpus
    shared_env: dict[str, str]
    notes: list[str] = Field(default_factory=list)

    def env_for(self, role: str) -> dict[str, str]:
        """Environment for the process of ``role`` (SYNDICATE_CPUS, OMP_* variables)."""
        return dict(self.agents[role].env)

    def summary(self, topology: Topology) -> dict:
        """The plan as plain JSON-able data, with the L3 groups it was made from."""
        return {
            "ccds": [list(g) for g in topology.l3_groups],
            "l3_source": topology.l3_source,
            "numa_nodes": [list(n) for n in topology.numa_nodes],
            "mode": self.mode,
            "agents": {
                role: {
                    "cpus": a.cpus,
                    "threads": a.threads,
                    "cores": a.cores,
                    "weight": a.weight,
                    "l3_groups": a.l3_groups,
                    "numa_nodes": a.numa_nodes,
                    "exclusive": a.exclusive,
                    "env": a.env,
                }
                for role, a in self.agents.items()
            },
            "shared_cpus": self.shared_cpus,
            "shared_env": self.shared_env,
            "notes": self.notes + list(topology.notes),
        }

    def compose_cpusets(self) -> dict[str, dict[str, str]]:
        """Per compose service: ``cpuset`` (when pinned) and environment."""
        out: dict[str, dict[str, str]] = {}
        for role, a in self.agents.items():
            out[registry.service_for_role(role) or f"{role}-agent"] = {
                "cpuset": format_cpus(a.cpus),
                **a.env,
            }
        for service in SHARED_SERVICES:
            entry = dict(self.shared_env)
            if self.shared_cpus:
                entry["cpuset"] = format_cpus(self.shared_cpus)
            out[service] = entry
        return out


def plan_placement(
    topology: Topology,
    roles: dict[str, RoleSpec] | None = None,
    *,
    shared_cores: int | None = None,
) -> PlacementPlan:
    """Assign disjoint cores to every role's agent and a pool to the shared services.

    ``shared_cores`` overrides the shared-service reserve (physical cores, default about
    1/8 of the machine when cores are to spare; 0 lets them float). Raises ConfigError
    when no role is given.
    """
    roles = dict(roles if roles is not None else default_roles())
    if not roles:
        raise ConfigError("no roles to place")
    order = sorted(roles, key=lambda r: (-roles[r].weight, r))
    n, total = len(order), len(topology.cores)
    notes: list[str] = []
    if total < n:
        return _share_cores(topology, roles, order, notes)

    mins = {r: max(1, roles[r].min_cores) for r in order}
    if sum(mins.values()) > total:
        notes.append(
            f"min_cores ({', '.join(f'{r}={roles[r].min_cores}' for r in order if roles[r].min_cores)})"
            f" exceed the {total} cores: ignored"
        )
        mins = dict.fromkeys(order, 1)
    spare = total - sum(mins.values())
    if shared_cores is None:
        reserve = min(spare, max(1, round(total * SHARED_FRACTION))) if spare else 0
    else:
        reserve = min(max(0, shared_cores), spare)
        if reserve < shared_cores:
            notes.append(f"shared reserve cut from {shared_cores} to {reserve} cores")
    if reserve == 0:
        notes.append(
            f"no core to spare for shared services ({', '.join(SHARED_SERVICES)}):"
            " they float over all cpus"
        )

    placed = _whole_groups(topology, roles, order, mins, reserve, notes)
    mode: Mode = "whole-groups"
    if placed is None:
        mode = "split-groups"
        if len(topology.l3_groups) > 1:
            notes.append(
                f"{n} agents{' + shared pool' if reserve else ''} for"
                f" {len(topology.l3_groups)} L3 groups: agents split groups"
            )
        placed = _split_groups(topology, roles, order, mins, reserve, notes)
    agent_cores, shared = placed

    agents = {r: _agent(topology, roles[r], agent_cores[r], exclusive=True) for r in order}
    shared_cpus = sorted(c for core in shared for c in core)
    notes += _uneven_ties(agents, order)
    return PlacementPlan(
        mode=mode,
        agents=agents,
        shared_cpus=shared_cpus,
        shared_env=_shared_env(shared_cpus, len(shared)),
        notes=notes,
    )


Cores = list[tuple[int, ...]]


def _agent(topology: Topology, spec: RoleSpec, cores: Cores, *, exclusive: bool) -> AgentPlacement:
    cpus = sorted(c for core in cores for c in core)
    threads = len(cores)
    # On cores of its own an agent keeps OpenMP's default wait policy: ggml meets a
    # barrier between ops and PASSIVE sleeps at each (0.5B, 2 threads: 24.3 tok/s with
    # the default, 16.1 with PASSIVE). Where processes share cores (_share_cores) their
    # threads must sleep instead: spinning ones collapse a shared core 100x.
    env = {"SYNDICATE_CPUS": format_cpus(cpus), "OMP_NUM_THREADS": str(threads)}
    if not exclusive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return AgentPlacement(
        cpus=cpus,
        threads=threads,
        cores=len(cores),
        weight=spec.weight,
        l3_groups=topology.groups_of(cpus),
        numa_nodes=topology.nodes_of(cpus),
        exclusive=exclusive,
        env=env,
    )


def _uneven_ties(agents: dict[str, AgentPlacement], order: list[str]) -> list[str]:
    """Say so when roles of equal weight got different core counts (indivisible cores or
    groups; the tie goes to the role whose name sorts first)."""
    notes = []
    for weight in sorted({agents[r].weight for r in order}, reverse=True):
        same = [r for r in order if agents[r].weight == weight]
        counts = {agents[r].cores for r in same}
        if len(counts) > 1:
            notes.append(
                f"{', '.join(same)} have equal weight but got "
                f"{'/'.join(str(agents[r].cores) for r in same)} cores: the units did not"
                " divide evenly (ties go by role name)"
            )
    return notes


def _shared_env(shared_cpus: list[int], cores: int) -> dict[str, str]:
    # Several shared services run on this pool (or float over agents' cores): sleep, don't spin.
    env = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(max(1, cores))}
    if shared_cpus:
        env["SYNDICATE_CPUS"] = format_cpus(shared_cpus)
    return env


def _share_cores(
    topology: Topology, roles: dict[str, RoleSpec], order: list[str], notes: list[str]
) -> PlacementPlan:
    """Fewer cores than agents: one core per agent, heaviest agents alone first."""
    load = [0.0] * len(topology.cores)
    members: list[list[str]] = [[] for _ in topology.cores]
    for r in order:
        i = min(range(len(load)), key=lambda k: (load[k], k))
        load[i] += roles[r].weight
        members[i].append(r)
    agents: dict[str, AgentPlacement] = {}
    for i, names in enumerate(members):
        for r in names:
            agents[r] = _agent(topology, roles[r], [topology.cores[i]], exclusive=len(names) == 1)
            # One thread even if the core has SMT siblings: the core is already shared.
            agents[r].threads = 1
            agents[r].env["OMP_NUM_THREADS"] = "1"
    shared_with = [
        f"{'+'.join(names)} on cpu {format_cpus(list(topology.cores[i]))}"
        for i, names in enumerate(members)
        if len(names) > 1
    ]
    notes.append(
        f"{len(order)} agents on {len(topology.cores)} cores: agents share cores"
        f" ({'; '.join(shared_with)}), 1 thread each with OMP_WAIT_POLICY=PASSIVE"
    )
    notes.append(f"shared services ({', '.join(SHARED_SERVICES)}) float over all cpus")
    return PlacementPlan(
        mode="shared-cores",
        agents={r: agents[r] for r in order},
        shared_cpus=[],
        shared_env=_shared_env([], 0),
        notes=notes,
    )


def _whole_groups(
    topology: Topology,
    roles: dict[str, RoleSpec],
    order: list[str],
    mins: dict[str, int],
    reserve: int,
    notes: list[str],
) -> tuple[dict[str, Cores], Cores] | None:
    """Every agent gets whole L3 groups (bigger models more), the shared pool whole groups
    too. Only for equal-sized groups, and only when there are enough of them."""
    groups = list(range(len(topology.l3_groups)))
    sizes = {len(topology.group_cores(g)) for g in groups}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    shared_groups = max(1, round(reserve / size)) if reserve else 0
    seats_total = len(groups) - shared_groups
    least = {r: math.ceil(mins[r] / size) for r in order}
    if sum(least.values()) > seats_total:
        return None
    seats = _proportional(seats_total, roles, order, least)

    free: dict[int, list[int]] = {}
    for g in groups:
        free.setdefault(topology.node_of_group(g), []).append(g)
    taken: dict[str, list[int]] = {}
    for r in sorted(order, key=lambda r: (-seats[r], order.index(r))):
        k = seats[r]
        fitting = [nd for nd in sorted(free) if len(free[nd]) >= k]
        if fitting:
            node = min(fitting, key=lambda nd: (len(free[nd]), nd))  # best fit
            taken[r], free[node] = free[node][:k], free[node][k:]
        else:
            taken[r] = []
            for nd in sorted(free, key=lambda nd: (-len(free[nd]), nd)):
                grab = free[nd][: k - len(taken[r])]
                taken[r] += grab
                free[nd] = free[nd][len(grab) :]
            notes.append(f"{r}: its {k} L3 groups span NUMA nodes (no node had {k} free)")
    agent_cores = {
        r: [core for g in sorted(taken[r]) for core in topology.group_cores(g)] for r in order
    }
    shared = [core for nd in sorted(free) for g in free[nd] for core in topology.group_cores(g)]
    return agent_cores, sorted(shared)


def _split_groups(
    topology: Topology,
    roles: dict[str, RoleSpec],
    order: list[str],
    mins: dict[str, int],
    reserve: int,
    notes: list[str],
) -> tuple[dict[str, Cores], Cores]:
    """Core budgets proportional to weight, each packed into one L3 group when it fits
    (best fit, biggest first); budgets no single group can hold span groups last, so
    they never take the cores a smaller agent needed to stay inside one group. What is
    left is the shared pool."""
    budgets = _proportional(len(topology.cores) - reserve, roles, order, mins)
    free = {g: topology.group_cores(g) for g in range(len(topology.l3_groups))}
    agent_cores: dict[str, Cores] = {}
    spanning: list[str] = []
    for r in sorted(order, key=lambda r: (-budgets[r], order.index(r))):
        b = budgets[r]
        fitting = [g for g in free if len(free[g]) >= b]
        if fitting:
            g = min(fitting, key=lambda g: (len(free[g]), g))
            agent_cores[r], free[g] = free[g][:b], free[g][b:]
        else:
            spanning.append(r)
    for r in spanning:
        b = budgets[r]
        # Span as few groups as possible, inside one NUMA node if one has room.
        by_node: dict[int, list[int]] = {}
        for g in free:
            by_node.setdefault(topology.node_of_group(g), []).append(g)
        roomy = [nd for nd in by_node if sum(len(free[g]) for g in by_node[nd]) >= b]
        pool = (
            by_node[min(roomy, key=lambda nd: (sum(len(free[g]) for g in by_node[nd]), nd))]
            if roomy
            else list(free)
        )
        got: Cores = []
        for g in sorted(pool, key=lambda g: (-len(free[g]), g)):
            grab = free[g][: b - len(got)]
            got += grab
            free[g] = free[g][len(grab) :]
        agent_cores[r] = sorted(got)
        spanned = topology.groups_of([c for core in got for c in core])
        notes.append(f"{r}: its {b} cores span L3 groups {spanned} (no single group had {b} free)")
    shared = sorted(core for g in free for core in free[g])
    return agent_cores, shared


def _proportional(
    total: int, roles: dict[str, RoleSpec], order: list[str], mins: dict[str, int]
) -> dict[str, int]:
    """Split ``total`` units (cores or L3 groups) by weight, largest remainder first,
    each role at least its minimum. Monotone in weight when minimums are equal."""
    budgets: dict[str, int] = {}
    active = list(order)
    remaining = total
    while True:
        weight = sum(roles[r].weight for r in active)
        quota = {r: remaining * roles[r].weight / weight for r in active}
        below = [r for r in active if quota[r] < mins[r]]
        if not below:
            break
        for r in below:
            budgets[r] = mins[r]
            remaining -= mins[r]
            active.remove(r)
        if not active:
            return budgets
    floors = {r: int(math.floor(quota[r] + 1e-9)) for r in active}
    left = remaining - sum(floors.values())
    ranked = sorted(active, key=lambda r: (-(quota[r] - floors[r]), order.index(r)))
    for r in ranked[:left]:
        floors[r] += 1
    budgets.update(floors)
    return budgets
