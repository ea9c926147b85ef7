"""compose.yaml: valid against the compose spec, and the promises the design makes
(cpusets from the placement plan, per-service NATS users, healthchecks, non-root, Jaeger)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import registry
from shared.settings import parse_cpus
from syndicate import deploy

from .conftest import AGENTS, REPO

PLAN = json.loads((REPO / "infra" / "placement" / "epyc-7502p.json").read_text())
INFRA = {"nats", "qdrant", "jaeger"}
PINNED = {registry.service_for_role(role) for role in PLAN["agents"]} - {None}  # exclusive cores in compose


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services `docker compose up` keeps running (no tool profiles, no one-shot init)."""
    return {
        name: svc for name, svc in compose["services"].items()
        if not svc.get("profiles") and svc.get("restart") != "no"
    }


def test_compose_validates_against_the_compose_spec() -> None:
    out = check_compose_schema(REPO / "compose.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = (REPO / "compose.yaml").read_text().replace("restart: unless-stopped", "restart: [sometimes]", 1)
    (tmp_path / "compose.yaml").write_text(broken)
    assert check_compose_schema(tmp_path / "compose.yaml").returncode != 0


def test_generated_cpu_override_validates(tmp_path: Path) -> None:
    (tmp_path / "compose.override.yaml").write_text(deploy.render_compose_cpus(PLAN))
    out = check_compose_schema(tmp_path / "compose.override.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_services_are_the_deploy_table_plus_infrastructure(compose: dict) -> None:
    assert set(long_running(compose)) == {svc.name for svc in registry.SERVICES} | INFRA


def test_cpusets_are_the_committed_placement_plan(compose: dict) -> None:
    """compose.yaml's cpusets are exactly what `syndicate deploy cpus` makes of the plan."""
    override = yaml.safe_load(deploy.render_compose_cpus(PLAN))["services"]
    for name, svc in long_running(compose).items():
        assert svc["cpuset"] == override[name]["cpuset"], name
        if name not in INFRA:
            for key in ("SYNDICATE_CPUS", "OMP_NUM_THREADS"):
                assert svc["environment"][key] == override[name]["environment"][key], f"{name} {key}"


def test_agent_cpusets_are_disjoint_and_apart_from_the_shared_cores(compose: dict) -> None:
    services = long_running(compose)
    assert {"coder-agent", "reasoner-agent"} <= PINNED
    seen: dict[int, str] = {}
    for name in PINNED:
        for cpu in parse_cpus(services[name]["cpuset"]):
            assert cpu not in seen, f"core {cpu} in both {seen[cpu]} and {name}"
            seen[cpu] = name
    for name, svc in services.items():
        if name not in PINNED:
            assert not set(parse_cpus(svc["cpuset"])) & set(seen), f"{name} shares an agent's cores"


def test_every_service_has_a_healthcheck(compose: dict) -> None:
    for name, svc in long_running(compose).items():
        if name == "jaeger":  # no shell or HTTP client in the image; nothing waits on it
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    for svc in registry.SERVICES:
        assert compose["services"][svc.name]["healthcheck"]["test"] == ["CMD", "python", "-m", "shared.health", svc.name]


def test_no_container_runs_as_root(compose: dict) -> None:
    for name, svc in compose["services"].items():
        uid = str(svc.get("user", "")).split(":")[0]
        if svc.get("labels", {}).get("syndicate.volume-init") == "true":
            # The one-shot chown of the NATS volume: root, but no network and only CHOWN.
            assert svc["network_mode"] == "none" and svc["cap_drop"] == ["ALL"] and svc["cap_add"] == ["CHOWN"]
            continue
        assert uid and uid != "0" and uid != "root", f"{name} runs as {uid or 'the image default'}"


def test_each_service_connects_as_its_own_nats_user(compose: dict) -> None:
    for svc in registry.SERVICES:
        env = compose["services"][svc.name]["environment"]
        url = env["SYNDICATE_NATS_URL"]
        assert re.fullmatch(rf"nats://{svc.name}:\$\{{{deploy.password_env(svc.name)}:\?[^}}]+\}}@nats:4222", url), url
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert compose["services"][svc.name]["restart"] == "unless-stopped"
    nats_env = compose["services"]["nats"]["environment"]
    assert set(nats_env) == {deploy.password_env(u) for u, _ in registry.nats_users()}


def test_nats_has_jetstream_on_a_volume(compose: dict) -> None:
    nats = compose["services"]["nats"]
    assert "nats-data:/data" in nats["volumes"] and "nats-data" in compose["volumes"]
    conf = (REPO / "infra" / "nats" / "nats.conf").read_text()
    assert re.search(r"jetstream\s*\{[^}]*store_dir:\s*/data/", conf)
    assert "qdrant-data:/qdrant/storage" in compose["services"]["qdrant"]["volumes"]
    assert "16686:16686" in compose["services"]["jaeger"]["ports"]


def test_sandbox_has_no_models_and_bwrap_security_options(compose: dict) -> None:
    sandbox = compose["services"]["code-sandbox"]
    assert sandbox["volumes"] == []
    assert {"seccomp:unconfined", "apparmor:unconfined", "no-new-privileges:true"} <= set(sandbox["security_opt"])
    assert sandbox["build"]["target"] == "sandbox"


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agents_mount_models_read_only(compose: dict, name: str) -> None:
    assert "models:/models:ro" in compose["services"][name]["volumes"]
