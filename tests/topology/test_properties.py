"""Property test: the placement rules hold on random machines and role sets."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.topology import RoleSpec, plan_placement
from tests.topology.invariants import check_plan
from tests.topology.machines import make_topology

machines = st.builds(
    make_topology,
    st.lists(st.integers(1, 8), min_size=1, max_size=8),
    smt=st.sampled_from([1, 2]),
    nodes_per_group=st.booleans(),
    adjacent_siblings=st.booleans(),
)
# Irregular group sizes happen (offline cpus, cpusets); so do exotic weights.
weights = st.one_of(
    st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]), st.floats(0.05, 20, allow_nan=False)
)
role_sets = st.dictionaries(
    st.sampled_from(["coder", "reasoner", "router", "critic", "planner", "embed", "judge"]),
    st.builds(RoleSpec, weight=weights),
    min_size=1,
    max_size=7,
)


@settings(max_examples=300, deadline=None)
@given(machines, role_sets, st.one_of(st.none(), st.integers(0, 6)))
def test_plan_invariants_on_random_machines(topo, roles, shared_cores):
    plan = plan_placement(topo, roles, shared_cores=shared_cores)
    check_plan(topo, roles, plan)
    # Deterministic, whatever order the roles come in.
    assert plan_placement(topo, dict(reversed(roles.items())), shared_cores=shared_cores) == plan


@settings(max_examples=100, deadline=None)
@given(machines, role_sets, st.lists(st.integers(0, 12), min_size=7, max_size=7))
# Found by hypothesis (issue #18): the 12- and 6-core budgets spanned groups first and
# took the 2-core groups the small agents needed to stay inside one L3 group.
@example(
    make_topology([2, 2, 2, 2, 2, 5, 5, 8], smt=1),
    {r: RoleSpec(weight=0.25) for r in ["coder", "reasoner", "router", "critic", "planner", "embed", "judge"]},
    [0, 0, 2, 3, 3, 6, 12],
)
def test_min_cores_met_when_possible(topo, roles, mins):
    roles = {
        r: RoleSpec(weight=s.weight, min_cores=m)
        for (r, s), m in zip(roles.items(), mins, strict=False)
    }
    plan = plan_placement(topo, roles)
    check_plan(topo, roles, plan)
    if sum(max(1, s.min_cores) for s in roles.values()) <= len(topo.cores):
        for r, s in roles.items():
            assert plan.agents[r].cores >= s.min_cores, r
