"""The placement rules, as checks every plan must pass (used on the recorded machines
and on random topologies)."""

from __future__ import annotations

from itertools import combinations

from shared.settings import parse_cpus
from shared.topology import PlacementPlan, RoleSpec, Topology


def check_plan(topo: Topology, roles: dict[str, RoleSpec], plan: PlacementPlan) -> None:
    """Assert every invariant of ``plan`` for ``topo`` and ``roles``."""
    assert set(plan.agents) == set(roles)
    all_cpus = set(topo.cpus)
    for role, a in plan.agents.items():
        assert a.cpus and set(a.cpus) <= all_cpus, role
        # Whole physical cores only: an agent owns every SMT sibling of its cores.
        for cpu in a.cpus:
            assert set(topo.core_of(cpu)) <= set(a.cpus), (role, cpu)
        assert a.cores == topo.physical_cores(a.cpus)
        assert 1 <= a.threads <= a.cores
        assert parse_cpus(a.env["SYNDICATE_CPUS"]) == a.cpus
        assert a.env["OMP_NUM_THREADS"] == str(a.threads)
        # Sleeping waits exactly where processes share cores; OpenMP's default elsewhere.
        assert a.env.get("OMP_WAIT_POLICY") == (None if a.exclusive else "PASSIVE")
        assert a.l3_groups == topo.groups_of(a.cpus)

    if len(topo.cores) < len(roles):
        # Too few cores: one core and one thread each, sleeping waits, and it is said.
        assert plan.mode == "shared-cores"
        assert plan.shared_cpus == []
        assert any("share cores" in n for n in plan.notes)
        for role, a in plan.agents.items():
            assert a.cores == 1 and a.threads == 1
            others = [r for r in plan.agents if r != role and plan.agents[r].cpus == a.cpus]
            assert a.exclusive == (not others)
        return

    for (r1, a1), (r2, a2) in combinations(plan.agents.items(), 2):
        assert not set(a1.cpus) & set(a2.cpus), (r1, r2)
    owned = {c for a in plan.agents.values() for c in a.cpus}
    assert not owned & set(plan.shared_cpus)
    assert owned | set(plan.shared_cpus) == all_cpus  # nothing left idle
    assert all(a.threads == a.cores and a.exclusive for a in plan.agents.values())
    if not plan.shared_cpus:
        assert any("float" in n for n in plan.notes)

    # Bigger model, at least as many cores (when no explicit minimum distorts it).
    if not any(s.min_cores for s in roles.values()):
        for r1, r2 in combinations(roles, 2):
            w1, w2 = roles[r1].weight, roles[r2].weight
            c1, c2 = plan.agents[r1].cores, plan.agents[r2].cores
            if w1 > w2:
                assert c1 >= c2, (r1, r2, c1, c2)
            elif w2 > w1:
                assert c2 >= c1, (r2, r1, c2, c1)

    # One L3 group whenever the share fits one; any spanning is stated.
    smallest = min(len(topo.group_cores(g)) for g in range(len(topo.l3_groups)))
    for role, a in plan.agents.items():
        if len(a.l3_groups) > 1:
            if plan.mode == "whole-groups":
                assert all(set(topo.l3_groups[g]) <= set(a.cpus) for g in a.l3_groups)
            else:
                assert any(n.startswith(f"{role}:") and "span" in n for n in plan.notes)
        if len(roles) <= len(topo.l3_groups) and a.cores <= smallest:
            assert len(a.l3_groups) == 1, role
