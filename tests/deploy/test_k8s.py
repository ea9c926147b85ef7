"""k8s/: every overlay renders with `kubectl kustomize`, every rendered object validates
against the Kubernetes schemas offline, and the manifests keep the design's promises
(exclusive cores for agents, probes, non-root, NATS-only networking, KEDA on real names)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared import registry
from shared import subjects as s
from syndicate import deploy

from .conftest import AGENTS, K8S_VERSION, OVERLAYS, REPO, containers, load_yaml_docs

KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject.json").read_text())
# (stream, durable consumer) pairs that exist: shared/subjects.py is the single source.
CONSUMERS = {
    (s.TASKS_STREAM, s.ROUTER_TASKS_DURABLE), (s.JOBS_STREAM, s.ROUTER_RESULTS_DURABLE),
    (s.JOBS_STREAM, s.CODER_DURABLE), (s.JOBS_STREAM, s.REASONER_DURABLE),
    (s.INGEST_STREAM, s.RETRIEVER_INGEST_DURABLE), (s.EVAL_STREAM, s.EVALUATOR_DURABLE),
}


def validate(obj: dict[str, Any]) -> None:
    """Validate one object: Kubernetes schemas (strict) or, for KEDA, the schema in tests."""
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, KEDA_SCHEMA)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def base_resources(folder: Path = REPO / "k8s" / "base") -> list[dict[str, Any]]:
    """Every object a kustomization lists (a listed folder: its own kustomization's)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for rel in kustomization["resources"]:
        path = folder / rel
        docs += base_resources(path) if path.is_dir() else load_yaml_docs(path)
    return docs


def test_base_files_validate_without_kubectl() -> None:
    docs = base_resources()
    assert {"Namespace", "StatefulSet", "Deployment", "NetworkPolicy", "PodDisruptionBudget"} <= {d["kind"] for d in docs}
    for obj in docs:
        validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    assert len(docs) > 30
    for obj in docs:
        validate(obj)
    assert all(d["metadata"].get("namespace") == "syndicate" for d in docs if d["kind"] != "Namespace")


def test_validation_rejects_broken_objects(rendered: dict) -> None:
    """The checks above can fail: a misspelt field, a bad type and a bad KEDA trigger."""
    dep = copy.deepcopy(of_kind(rendered["epyc"], "Deployment")["coder-agent"])
    dep["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep)
    dep = copy.deepcopy(of_kind(rendered["epyc"], "Deployment")["coder-agent"])
    dep["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(dep)
    so = copy.deepcopy(of_kind(rendered["multinode"], "ScaledObject")["coder-agent"])
    del so["spec"]["triggers"][0]["metadata"]["consumer"]
    with pytest.raises(jsonschema.ValidationError):
        validate(so)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agents_are_guaranteed_with_integer_cpus(rendered: dict, overlay: str) -> None:
    deployments = of_kind(rendered[overlay], "Deployment")
    assert set(deployments) >= AGENTS
    for name in AGENTS:
        for c in containers(deployments[name]):
            req, lim = c["resources"]["requests"], c["resources"]["limits"]
            assert req == lim, f"{overlay}/{name}: requests {req} != limits {lim} (not Guaranteed QoS)"
            assert re.fullmatch(r"[1-9][0-9]*", str(req["cpu"])), f"{overlay}/{name}: cpu {req['cpu']} is not an integer"
            assert "memory" in req


def test_epyc_agents_fill_whole_l3_groups(rendered: dict) -> None:
    """On the EPYC 7502P an L3 group is 4 cores = 8 logical CPUs: agents take whole groups
    and together leave the shared pool some CPUs of the 56 allocatable."""
    deployments = of_kind(rendered["epyc"], "Deployment")
    cpus = {n: int(containers(deployments[n])[0]["resources"]["requests"]["cpu"]) for n in AGENTS}
    assert all(c % 8 == 0 for c in cpus.values()), cpus
    assert sum(cpus.values()) < 56
    for name, cpu in cpus.items():  # one thread per physical core: SMT siblings are not extra cores
        env = {e["name"]: e.get("value") for e in containers(deployments[name])[0]["env"]}
        assert env["OMP_NUM_THREADS"] == str(cpu // 2), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_probes_and_a_disruption_budget(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    pdb_selectors = [d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    for obj in docs:
        for c in containers(obj):
            assert "readinessProbe" in c and "livenessProbe" in c, f"{obj['metadata']['name']}/{c['name']}"
        if containers(obj) and obj["metadata"]["name"] != "jaeger":  # single in-memory Jaeger: nothing to protect
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert any(sel.items() <= labels.items() for sel in pdb_selectors), obj["metadata"]["name"]


def test_service_probes_ask_the_health_subject(rendered: dict) -> None:
    deployments = of_kind(rendered["epyc"], "Deployment")
    for svc in registry.SERVICES:
        c = containers(deployments[svc.name])[0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["exec"]["command"] == ["python", "-m", "shared.health", svc.name]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_runs_as_root(rendered: dict, overlay: str) -> None:
    for obj in rendered[overlay]:
        if not containers(obj):
            continue
        name = obj["metadata"]["name"]
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        expected_seccomp = "Unconfined" if name == "code-sandbox" else "RuntimeDefault"
        assert pod["securityContext"]["seccompProfile"]["type"] == expected_seccomp, name
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert not sc.get("privileged", False), name


def test_sandbox_runs_in_its_own_user_namespace(rendered: dict) -> None:
    pod = of_kind(rendered["epyc"], "Deployment")["code-sandbox"]["spec"]["template"]["spec"]
    assert pod["hostUsers"] is False  # bwrap's nested namespaces never map to host root
    assert "models" not in {v["name"] for v in pod["volumes"]}  # no model files near untrusted code


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_keep_services_on_nats(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    policies = list(of_kind(docs, "NetworkPolicy").values())
    deny = of_kind(docs, "NetworkPolicy")["default-deny"]
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    allowed_peers = {"nats", "jaeger", "kube-dns"}
    deployments = of_kind(docs, "Deployment")
    for svc in registry.SERVICES:
        labels = deployments[svc.name]["spec"]["template"]["metadata"]["labels"]
        peers: set[str] = set()
        for pol in policies:
            if not _selects(pol, labels):
                continue
            for rule in pol["spec"].get("egress", []):
                for to in rule.get("to", [{}]):
                    sel = to.get("podSelector", {}).get("matchLabels", {})
                    peers.add(sel.get("app.kubernetes.io/name") or sel.get("k8s-app") or "ANY")
        extra = {"qdrant"} if svc.name == "retriever" else set()
        assert peers == allowed_peers | extra, f"{svc.name} may reach {peers}"


def test_services_match_the_deploy_table(rendered: dict) -> None:
    docs = rendered["epyc"]
    deployments = of_kind(docs, "Deployment")
    clients = {n for n, d in deployments.items() if d["spec"]["template"]["metadata"]["labels"].get("syndicate.io/nats-client") == "true"}
    assert clients == {svc.name for svc in registry.SERVICES}
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("nats-credentials"))
    assert set(secret["data"]) == {deploy.password_env(u) for u, _ in registry.nats_users()}
    for svc in registry.SERVICES:
        c = containers(deployments[svc.name])[0]
        assert c["command"] == ["python", "-m", svc.module]
        env = {e["name"]: e for e in c["env"]}
        assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": deploy.password_env(svc.name)}
        assert env["SYNDICATE_NATS_URL"]["value"] == f"nats://{svc.name}:$(NATS_PASSWORD)@nats:4222"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_three_node_jetstream_cluster(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    sts = of_kind(docs, "StatefulSet")["nats"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("nats-config"))
    conf = config["data"]["nats.conf"]
    assert "jetstream" in conf and "include ./auth.conf" in conf
    assert len(re.findall(r"nats://nats-\d\.nats-headless:6222", conf)) == 3
    assert config["data"]["auth.conf"] == deploy.render_nats_auth()


def test_multinode_spreads_nats_and_runs_qdrant_distributed(rendered: dict) -> None:
    docs = rendered["multinode"]
    nats = of_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in nats
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in nats
    qdrant = of_kind(docs, "StatefulSet")["qdrant"]
    assert qdrant["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in containers(qdrant)[0]["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    assert of_kind(docs, "PersistentVolumeClaim")["models"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_keda_scales_on_real_consumers(rendered: dict) -> None:
    docs = rendered["multinode"]
    scaled = of_kind(docs, "ScaledObject")
    deployments = of_kind(docs, "Deployment")
    assert {"coder-agent", "reasoner-agent"} <= set(scaled)
    for name, so in scaled.items():
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target in deployments and "replicas" not in deployments[target]["spec"], target
        meta = so["spec"]["triggers"][0]["metadata"]
        assert so["spec"]["triggers"][0]["type"] == "nats-jetstream"
        assert (meta["stream"], meta["consumer"]) in CONSUMERS, name
        assert meta["natsServerMonitoringEndpoint"].startswith("nats-headless.syndicate.svc")
    assert "ScaledObject" not in {d["kind"] for d in rendered["epyc"]}  # one node: cores are planned, not scaled
