"""compose, k8s and the local stack name the same services, modules and subjects."""

from __future__ import annotations

import yaml

from shared import subjects as s
from syndicate import deploy, supervisor

from .conftest import REPO

# Subjects/consumers named in deployment files must exist in shared/subjects.py.
KNOWN_NAMES = {v for k, v in vars(s).items() if k.isupper() and isinstance(v, str)}


def test_local_stack_services_are_deployed_the_same_way() -> None:
    deployed = {svc.name: svc for svc in deploy.SERVICES}
    for spec in supervisor.SERVICES:
        assert spec.name in deployed, f"{spec.name} runs locally but is not in compose/k8s"
        assert deployed[spec.name].module == spec.module
        if spec.role:
            assert deployed[spec.name].plan_role == spec.role
    # The gateway joins the local stack with its own issue; nothing else may be missing.
    assert set(deployed) - {spec.name for spec in supervisor.SERVICES} <= {"gateway"}


def test_service_packages_exist_for_what_is_deployed() -> None:
    present = {p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").exists()}
    for svc in deploy.SERVICES:
        package = svc.module.split(".")[1]
        if package in present:  # `python -m services.<package>` is how every container starts it
            assert (REPO / "services" / package / "__main__.py").exists(), svc.module
    assert present <= {svc.module.split(".")[1] for svc in deploy.SERVICES}, "a service package nobody deploys"


def test_permissions_only_name_known_subjects() -> None:
    for user, perms in deploy.nats_users():
        for subject in perms.publish_allow() + perms.subscribe_allow():
            if subject.startswith(("$JS.", "_INBOX")):
                continue
            root = subject.removesuffix(".>").removesuffix(".*")
            if root.startswith("$KV."):  # a key-value bucket: its name must be a known one
                root = root.removeprefix("$KV.")
            event_roots = {s.task_events("").rstrip("."), s.ingest_events("").rstrip(".")}
            known = root in KNOWN_NAMES or root in event_roots or subject in (deploy.TASK_STATE_KV, deploy.EVOLVE_KV)
            assert known, f"{user}: {subject} is not a name from shared/subjects.py"


def test_keda_names_come_from_subjects() -> None:
    docs = yaml.safe_load_all((REPO / "k8s" / "components" / "keda" / "scaledobjects.yaml").read_text())
    for so in filter(None, docs):
        meta = so["spec"]["triggers"][0]["metadata"]
        assert meta["stream"] in KNOWN_NAMES and meta["consumer"] in KNOWN_NAMES
        assert deploy.service(so["spec"]["scaleTargetRef"]["name"]).permissions.jetstream
