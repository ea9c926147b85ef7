"""syndicate/deploy.py and `syndicate deploy`: plan -> cpusets, credentials, NATS users."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from shared import registry
from shared.settings import parse_cpus
from shared.topology import default_roles, discover, plan_placement
from syndicate import deploy
from syndicate.cli import commands_deploy

from .conftest import REPO


def plan(agents: dict[str, list[int]], ccds: list[list[int]]) -> dict:
    return {"ccds": ccds, "agents": {r: {"cpus": c, "threads": len(c)} for r, c in agents.items()}}


def cpusets(p: dict) -> dict[str, str]:
    return {name: pin.cpuset for name, pin in deploy.cpusets_from_plan(p).items()}


def test_agents_get_their_cores_and_the_rest_share_free_l3_groups() -> None:
    sets = cpusets(plan({"coder": [2, 3], "reasoner": [4, 5]}, [[0, 1, 8, 9], [2, 3, 10, 11], [4, 5, 12, 13]]))
    assert sets["coder-agent"] == "2-3" and sets["reasoner-agent"] == "4-5"
    # Shared services stay off the agents' L3 groups, including their SMT siblings 10-13.
    assert parse_cpus(sets["code-sandbox"]) == [0, 1, 8, 9] == parse_cpus(sets["router"])


def test_the_plans_own_shared_cores_and_environment_win() -> None:
    p = plan({"coder": [0, 1, 4, 5]}, [[0, 1, 4, 5], [2, 3, 6, 7]])
    p["agents"]["coder"].update(threads=2, env={"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"})
    p.update(shared_cpus=[3, 7], shared_env={"OMP_NUM_THREADS": "1"})
    pins = deploy.cpusets_from_plan(p)
    assert pins["coder-agent"].env == {"SYNDICATE_CPUS": "0-1,4-5", "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    assert pins["gateway"].cpuset == "3,7" and pins["gateway"].env["OMP_NUM_THREADS"] == "1"
    p["shared_cpus"] = [1, 3]
    with pytest.raises(ValueError, match="shares agent cores"):
        deploy.cpusets_from_plan(p)


def test_when_every_group_is_taken_the_leftover_cores_are_shared() -> None:
    sets = cpusets(plan({"coder": [0, 1, 2], "reasoner": [4, 5, 6]}, [[0, 1, 2, 3], [4, 5, 6, 7]]))
    assert sets["retriever"] == "3,7"


def test_fewer_cores_than_agents_still_gives_every_service_cores() -> None:
    sets = cpusets(plan({"coder": [0], "reasoner": [1]}, [[0, 1]]))
    assert sets["gateway"] == "0-1"


def test_overlapping_agents_are_refused() -> None:
    with pytest.raises(ValueError, match="two agents"):
        deploy.cpusets_from_plan(plan({"coder": [0, 1], "reasoner": [1, 2]}, [[0, 1, 2, 3]]))


def test_agents_the_plan_lets_share_a_core_keep_it() -> None:
    """The planner's plan for 2 cores and 3 agents: coder and router share core 0."""
    p = plan({"coder": [0], "reasoner": [1], "router": [0]}, [[0, 1]])
    p["agents"]["coder"]["exclusive"] = p["agents"]["router"]["exclusive"] = False
    sets = cpusets(p)
    assert (sets["coder-agent"], sets["router"], sets["reasoner-agent"], sets["gateway"]) == ("0", "0", "1", "0-1")
    p["agents"]["router"]["exclusive"] = True  # only one of the two agrees to share
    with pytest.raises(ValueError, match="two agents"):
        deploy.cpusets_from_plan(p)


def test_the_planners_plan_for_a_two_core_host_renders() -> None:
    """`syndicate topology --json | syndicate deploy cpus --plan -` on a host with fewer
    cores than agents (the planner lets two share a core)."""
    topo = discover(REPO / "tests" / "fixtures" / "sysfs" / "vm-2core")
    summary = plan_placement(topo, default_roles()).summary(topo)
    assert any(a["exclusive"] is False for a in summary["agents"].values())
    text = deploy.render_compose_cpus(summary)
    assert "coder-agent:" in text and 'cpuset: "0-1"' in text


def test_roles_map_to_services_and_unknown_roles_are_ignored() -> None:
    sets = cpusets(plan({"router": [0], "evaluator": [1], "embedder": [2], "mystery": [3]}, [[0, 1, 2, 3]]))
    assert (sets["router"], sets["evaluator"], sets["retriever"]) == ("0", "1", "2")


def test_committed_plan_is_the_planners_output_for_the_epyc_7502p() -> None:
    """infra/placement/epyc-7502p.json is what the placement planner makes of the
    recorded EPYC 7502P sysfs tree (skipped until shared.topology and its fixture exist)."""
    topology = pytest.importorskip("shared.topology", reason="placement planner not merged yet")
    sysfs = REPO / "tests" / "fixtures" / "sysfs" / "epyc-7502p"
    if not sysfs.exists():
        pytest.skip("recorded EPYC 7502P sysfs tree not present")
    t = topology.discover(sysfs)
    fresh = topology.plan_placement(t).summary(t)
    committed = json.loads((REPO / "infra" / "placement" / "epyc-7502p.json").read_text())
    assert {k: committed[k] for k in fresh} == json.loads(json.dumps(fresh)), "regenerate infra/placement/epyc-7502p.json"


def test_committed_plan_matches_the_epyc_7502p() -> None:
    p = json.loads((REPO / "infra" / "placement" / "epyc-7502p.json").read_text())
    assert sorted(c for g in p["ccds"] for c in g) == list(range(64))
    assert all(len(g) == 8 for g in p["ccds"])  # 4 cores + 4 SMT siblings share one 16 MB L3
    for entry in p["agents"].values():
        assert entry["threads"] <= len(entry["cpus"])


def test_override_is_compose_yaml_for_every_container() -> None:
    p = json.loads((REPO / "infra" / "placement" / "epyc-7502p.json").read_text())
    services = yaml.safe_load(deploy.render_compose_cpus(p))["services"]
    assert set(services) == {s.name for s in registry.SERVICES} | set(deploy.INFRA_SERVICES)
    assert services["coder-agent"]["cpuset"] == "0-11,32-43"
    assert services["coder-agent"]["environment"]["OMP_NUM_THREADS"] == "12"  # physical cores, not SMT threads


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    commands_deploy.register(app)

    @app.callback()
    def _root() -> None:
        """Needed so typer keeps `deploy` as a sub-command."""

    return app


def test_cli_cpus_reads_a_plan_from_stdin(cli: typer.Typer) -> None:
    p = plan({"coder": [1]}, [[0, 1]])
    out = CliRunner().invoke(cli, ["deploy", "cpus", "--plan", "-"], input=json.dumps(p))
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.output)["services"]["coder-agent"]["cpuset"] == "1"
    bad = CliRunner().invoke(cli, ["deploy", "cpus", "--plan", "-"], input=json.dumps(plan({"coder": [0], "reasoner": [0]}, [[0]])))
    assert bad.exit_code == 2


def test_cli_credentials_writes_once_and_rotates_only_with_force(cli: typer.Typer, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    assert CliRunner().invoke(cli, ["deploy", "credentials", "--out", str(env)]).exit_code == 0
    first = env.read_text()
    assert env.stat().st_mode & 0o777 == 0o600
    assert {line.split("=")[0] for line in first.splitlines() if "=" in line} == {deploy.password_env(u) for u, _ in registry.nats_users()}
    assert CliRunner().invoke(cli, ["deploy", "credentials", "--out", str(env)]).exit_code == 1
    assert env.read_text() == first
    assert CliRunner().invoke(cli, ["deploy", "credentials", "--out", str(env), "--force"]).exit_code == 0
    assert env.read_text() != first


def test_sandbox_user_may_publish_nothing_of_its_own() -> None:
    perms = registry.service("code-sandbox").nats_permissions()
    assert set(perms.publish_allow()) == {"syndicate.health.ping", "syndicate.dlq.>"}
    assert not perms.jetstream
