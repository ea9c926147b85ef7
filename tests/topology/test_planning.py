from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import format_cpus
from shared.topology import RoleSpec, default_roles, parse_roles, plan_placement
from tests.topology.invariants import check_plan
from tests.topology.machines import make_topology

TWO = {"coder": RoleSpec(weight=2), "reasoner": RoleSpec(weight=2)}


def cpus(plan, role):
    return format_cpus(plan.agents[role].cpus)


@pytest.mark.parametrize("name", ["vm2", "epyc", "dual"])
@pytest.mark.parametrize(
    "roles",
    [default_roles(), TWO, parse_roles("a=3,b=2,c=1,d=1,e=0.5"), parse_roles("solo=1")],
    ids=["default", "two", "five", "one"],
)
def test_invariants_on_recorded_machines(request, name, roles):
    topo = request.getfixturevalue(name)
    check_plan(topo, roles, plan_placement(topo, roles))


def test_epyc_7502p_default_plan(epyc):
    plan = plan_placement(epyc)
    assert plan.mode == "whole-groups"
    assert cpus(plan, "coder") == "0-11,32-43"  # CCX 0-2
    assert cpus(plan, "reasoner") == "12-23,44-55"  # CCX 3-5
    assert cpus(plan, "router") == "24-27,56-59"  # CCX 6
    assert format_cpus(plan.shared_cpus) == "28-31,60-63"  # CCX 7
    assert [plan.agents[r].threads for r in ("coder", "reasoner", "router")] == [12, 12, 4]
    assert plan.agents["router"].l3_groups == [6]
    assert plan.env_for("coder") == {
        "SYNDICATE_CPUS": "0-11,32-43",
        "OMP_NUM_THREADS": "12",
    }  # cores of its own: OpenMP's default wait policy (PASSIVE sleeps at every barrier)
    assert plan.shared_env["SYNDICATE_CPUS"] == "28-31,60-63"
    assert plan.notes == []


def test_epyc_two_equal_roles_says_the_odd_group_went_by_name(epyc):
    plan = plan_placement(epyc, TWO)
    assert (plan.agents["coder"].cores, plan.agents["reasoner"].cores) == (16, 12)
    assert any("equal weight" in n for n in plan.notes)


def test_dual_socket_default_plan_keeps_each_agent_in_one_socket(dual):
    plan = plan_placement(dual)
    assert plan.mode == "split-groups"
    assert cpus(plan, "coder") == "0-15,40-55"
    assert cpus(plan, "router") == "16-19,56-59"
    assert cpus(plan, "reasoner") == "20-34,60-74"
    assert format_cpus(plan.shared_cpus) == "35-39,75-79"
    assert all(len(a.numa_nodes) == 1 for a in plan.agents.values())
    assert plan.agents["coder"].threads == 16


def test_two_core_machine_two_agents_one_core_each_shared_floats(vm2):
    plan = plan_placement(vm2, TWO)
    assert plan.agents["coder"].cpus == [0] and plan.agents["reasoner"].cpus == [1]
    assert plan.agents["coder"].threads == plan.agents["reasoner"].threads == 1
    assert plan.shared_cpus == []
    assert any("float" in n for n in plan.notes)


def test_two_core_machine_default_roles_router_shares_with_coder(vm2):
    plan = plan_placement(vm2)
    assert plan.mode == "shared-cores"
    assert plan.agents["reasoner"].cpus == [1] and plan.agents["reasoner"].exclusive
    assert plan.agents["coder"].cpus == plan.agents["router"].cpus == [0]
    assert plan.agents["router"].env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_one_core_two_agents_share_it_passively():
    topo = make_topology([1])
    plan = plan_placement(topo, TWO)
    for a in plan.agents.values():
        assert a.cpus == [0] and a.threads == 1 and not a.exclusive
        assert a.env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert any("2 agents on 1 cores" in n for n in plan.notes)


def test_one_smt_core_two_agents_still_one_thread_each():
    topo = make_topology([1], smt=2)
    plan = plan_placement(topo, TWO)
    assert all(a.cpus == [0, 1] and a.threads == 1 for a in plan.agents.values())


def test_more_agents_than_groups_split_groups_and_say_so(epyc):
    roles = {f"agent{i}": RoleSpec(weight=1) for i in range(9)}
    plan = plan_placement(epyc, roles)
    check_plan(epyc, roles, plan)
    assert plan.mode == "split-groups"
    assert any("split groups" in n for n in plan.notes)


def test_min_cores_is_honoured_and_impossible_minimum_is_noted(epyc):
    plan = plan_placement(epyc, {"big": RoleSpec(weight=1, min_cores=20), "small": RoleSpec()})
    assert plan.agents["big"].cores >= 20
    plan = plan_placement(make_topology([2]), {"a": RoleSpec(min_cores=3), "b": RoleSpec()})
    assert any("min_cores" in n for n in plan.notes)


def test_shared_cores_override(dual):
    plan = plan_placement(dual, TWO, shared_cores=0)
    assert plan.shared_cpus == []
    assert plan.agents["coder"].cores == plan.agents["reasoner"].cores == 20
    plan = plan_placement(make_topology([2]), TWO, shared_cores=1)
    assert any("cut" in n for n in plan.notes)


def test_plan_ignores_role_order(dual):
    roles = parse_roles("x=1,y=2,z=1,w=0.5")
    flipped = dict(reversed(list(roles.items())))
    assert plan_placement(dual, roles) == plan_placement(dual, flipped)


def test_numa_nodes_keep_multi_group_agents_together():
    # Two sockets of 8 CCX (2 x EPYC 7502): each big agent inside one NUMA node.
    topo = make_topology([4] * 16, smt=2)
    nodes = (topo.l3_groups[:8], topo.l3_groups[8:])
    topo = type(topo)(
        **{
            **topo.__dict__,
            "numa_nodes": tuple(tuple(sorted(c for g in n for c in g)) for n in nodes),
        }
    )
    plan = plan_placement(topo)
    check_plan(topo, default_roles(), plan)
    assert all(len(a.numa_nodes) == 1 for a in plan.agents.values())
    assert plan.agents["coder"].cores == plan.agents["reasoner"].cores == 24


@pytest.mark.parametrize("text", ["", "=2", "coder=abc", "coder=-1", "coder=1:x"])
def test_bad_roles_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_roles(text)


def test_parse_roles_weight_and_min():
    roles = parse_roles("coder=2:4, router=0.5,plain")
    assert roles["coder"] == RoleSpec(weight=2, min_cores=4)
    assert roles["router"].weight == 0.5 and roles["plain"].weight == 1
