from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from syndicate.cli import commands_topology
from tests.topology.machines import SYSFS

app = typer.Typer()
commands_topology.register(app)


@app.callback()
def _root() -> None:
    """Test harness: keeps ``topology`` a subcommand."""


def run(*args: str):
    result = CliRunner().invoke(app, ["topology", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_json_has_ccds_agents_shared_and_notes():
    data = json.loads(run("--sysfs", str(SYSFS / "epyc-7502p"), "--json"))
    assert len(data["ccds"]) == 8 and data["ccds"][0] == [0, 1, 2, 3, 32, 33, 34, 35]
    assert set(data["agents"]) == {"coder", "reasoner", "router"}
    assert data["agents"]["router"] == {**data["agents"]["router"], "threads": 4}
    assert data["agents"]["coder"]["cpus"] == [*range(0, 12), *range(32, 44)]
    assert data["shared_cpus"] == [*range(28, 32), *range(60, 64)]
    assert data["notes"] == []


def test_roles_option_and_notes_on_two_cores():
    data = json.loads(
        run("--sysfs", str(SYSFS / "vm-2core"), "--json", "--roles", "coder=2,reasoner=1")
    )
    assert data["agents"]["coder"]["cpus"] == [0]
    assert data["agents"]["reasoner"] == {**data["agents"]["reasoner"], "cpus": [1], "threads": 1}
    assert any("float" in n for n in data["notes"])


def test_compose_snippet_names_cpuset_per_service():
    out = run("--sysfs", str(SYSFS / "dual-xeon-6248"), "--compose")
    assert out.startswith("services:\n")
    assert '  coder-agent:\n    cpuset: "0-15,40-55"' in out
    assert '  router:\n    cpuset: "16-19,56-59"' in out
    assert '  retriever:\n    cpuset: "35-39,75-79"' in out
    assert 'OMP_NUM_THREADS: "16"' in out


def test_table_output_lists_groups_and_roles():
    out = run("--sysfs", str(SYSFS / "epyc-7502p"))
    assert "28-31,60-63" in out and "reasoner" in out and "whole-groups" in out


def test_bad_roles_exit_2():
    result = CliRunner().invoke(app, ["topology", "--roles", "coder=x"])
    assert result.exit_code == 2
    assert "bad role" in result.output


def test_compose_snippet_is_yaml_with_a_cpuset_per_agent():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(run("--sysfs", str(SYSFS / "epyc-7502p"), "--compose"))
    services = doc["services"]
    assert services["coder-agent"]["cpuset"] == "0-11,32-43"
    assert services["reasoner-agent"]["environment"]["OMP_NUM_THREADS"] == "12"
    assert services["code-sandbox"]["cpuset"] == "28-31,60-63"
