"""compose, k8s and the local stack run the registry's services, modules and subjects."""

from __future__ import annotations

import shutil

import yaml

from shared import registry
from shared import subjects as s
from syndicate import generated, supervisor

from .conftest import REPO

# Subjects/consumers named in deployment files must exist in shared/subjects.py.
KNOWN_NAMES = {v for k, v in vars(s).items() if k.isupper() and isinstance(v, str)}


def test_the_local_stack_runs_the_registry() -> None:
    assert supervisor.select_services(None) == registry.SERVICES
    assert [u for u, _ in registry.nats_users()] == [svc.name for svc in registry.SERVICES] + [registry.CLI_USER]


def test_service_packages_exist_for_what_is_deployed() -> None:
    present = {p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").exists()}
    for svc in registry.SERVICES:
        package = svc.module.split(".")[1]
        if package in present:  # `python -m services.<package>` is how every container starts it
            assert (REPO / "services" / package / "__main__.py").exists(), svc.module
    assert present <= {svc.module.split(".")[1] for svc in registry.SERVICES}, "a service package nobody deploys"


def test_permissions_only_name_known_subjects() -> None:
    for user, perms in registry.nats_users():
        for subject in perms.publish_allow() + perms.subscribe_allow():
            if subject.startswith(("$JS.", "_INBOX")):
                continue
            root = subject.removesuffix(".>").removesuffix(".*")
            if root.startswith("$KV."):  # a key-value bucket: its name must be a known one
                root = root.removeprefix("$KV.")
            event_roots = {s.task_events("").rstrip("."), s.ingest_events("").rstrip(".")}
            known = root in KNOWN_NAMES or root in event_roots or subject in (registry.TASK_STATE_KV, registry.EVOLVE_KV)
            assert known, f"{user}: {subject} is not a name from shared/subjects.py"


def test_keda_names_come_from_subjects() -> None:
    docs = yaml.safe_load_all((REPO / "k8s" / "components" / "keda" / "scaledobjects.yaml").read_text())
    for so in filter(None, docs):
        meta = so["spec"]["triggers"][0]["metadata"]
        assert meta["stream"] in KNOWN_NAMES and meta["consumer"] in KNOWN_NAMES
        assert registry.service(so["spec"]["scaleTargetRef"]["name"]).nats_permissions().jetstream


def test_generated_deployment_files_match_the_registry() -> None:
    stale = generated.stale_files(REPO)
    assert stale == [], f"{[str(p.relative_to(REPO)) for p in stale]}: run `syndicate deploy manifests --write`"


def test_a_hand_edit_of_a_generated_file_is_caught(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for rel in ("compose.yaml", "infra/placement/epyc-7502p.json", "infra/nats/auth.conf", "k8s/base"):
        src, dst = REPO / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    assert generated.stale_files(tmp_path) == []
    k8s = tmp_path / "k8s" / "base" / "services" / "coder-agent.yaml"
    k8s.write_text(k8s.read_text().replace("cpu: '4'", "cpu: '3'"))
    compose = tmp_path / "compose.yaml"
    compose.write_text(compose.read_text().replace('OMP_NUM_THREADS: "12"', 'OMP_NUM_THREADS: "11"', 1))
    assert set(generated.stale_files(tmp_path)) == {k8s, compose}
