"""The Kubernetes manifests of the syndicate's services, rendered from the service registry:
one Deployment (+ PodDisruptionBudget, + Service for HTTP) per registry entry in
``k8s/base/services/<name>.yaml``, and the list of them in
``k8s/base/services/kustomization.yaml``. ``syndicate deploy manifests --write`` writes
them; ``tests/deploy`` fails when the committed files differ from what this renders.

Placed services (a placement ``role``) get Guaranteed QoS with integer CPU requests ==
limits, so the kubelet's static CPU manager gives them exclusive cores; the others are
Burstable and share the pool. Overlays resize them per machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shared.registry import SERVICES, Service
from syndicate.deploy import password_env

UID = 10001
HTTP_PORT = 8080
HEALTH_PROBES = (  # name, period s, failures: (agents, others) — a model load takes minutes
    ("startupProbe", 10, (60, 18)),
    ("readinessProbe", 15, (2, 2)),
    ("livenessProbe", 30, (6, 6)),
)


def services_dir(repo: Path) -> Path:
    return repo / "k8s" / "base" / "services"


def render_all() -> dict[str, str]:
    """File name (inside k8s/base/services) -> its text, for every registry service."""
    files = {f"{svc.name}.yaml": render_service(svc) for svc in SERVICES}
    files["kustomization.yaml"] = _dump_docs(
        [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
          "resources": [f"{svc.name}.yaml" for svc in SERVICES]}],
        "# The syndicate's services: one file each, generated from shared/registry.py.",
    )
    return files


def render_service(svc: Service) -> str:
    """The manifests of one service as YAML text (comment header included)."""
    pinned = svc.role is not None
    header = (
        f"# {svc.name}: an agent. Guaranteed QoS with integer CPU requests == limits, so the kubelet's\n"
        "# static CPU manager gives it exclusive cores (overlays size them; see docs/deploy.md).\n"
        if pinned else
        f"# {svc.name}: a shared-pool service (Burstable QoS); it never takes an agent's cores.\n"
    ) + "# Generated from shared/registry.py by `syndicate deploy manifests --write`: do not edit by hand."
    docs = [_deployment(svc, pinned)]
    if svc.image == "gateway":
        docs.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc.name, "labels": {"app.kubernetes.io/name": svc.name}},
            "spec": {"selector": {"app.kubernetes.io/name": svc.name},
                     "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}]},
        })
    docs.append({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": svc.name},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": svc.name}}},
    })
    return _dump_docs(docs, header)


def _deployment(svc: Service, pinned: bool) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": svc.name, "app.kubernetes.io/component": "agent" if pinned else "service",
              "syndicate.io/nats-client": "true"}
    sandbox, models = svc.image == "sandbox", svc.image == "agent"
    spec: dict[str, Any] = {"replicas": 1, "revisionHistoryLimit": 3,
                            "selector": {"matchLabels": {"app.kubernetes.io/name": svc.name}}}
    if pinned:  # never two copies on the exclusive cores at once
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pod: dict[str, Any] = {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 60}
    if sandbox:  # bubblewrap's own user namespace needs the pod's to be a fresh one
        pod["hostUsers"] = False
    security: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "Unconfined" if sandbox else "RuntimeDefault"}}
    if sandbox:  # the service applies its own seccomp filter to every untrusted program
        security["appArmorProfile"] = {"type": "Unconfined"}
    pod["securityContext"] = security
    pod["containers"] = [_container(svc, pinned, sandbox, models)]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                                     {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}]
    if models:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}})
    pod["volumes"] = volumes
    spec["template"] = {"metadata": {"labels": dict(labels)}, "spec": pod}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": svc.name, "labels": labels},
            "spec": spec}


def _container(svc: Service, pinned: bool, sandbox: bool, models: bool) -> dict[str, Any]:
    d = svc.deployment
    env = [
        {"name": "SYNDICATE_SERVICE", "value": svc.name},
        {"name": "OTEL_SERVICE_NAME", "value": svc.name},
        {"name": "SYNDICATE_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NATS_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "nats-credentials", "key": password_env(svc.name)}}},
        {"name": "SYNDICATE_NATS_URL", "value": f"nats://{svc.name}:$(NATS_PASSWORD)@nats:4222"},
    ]
    container: dict[str, Any] = {
        "name": svc.name, "image": f"syndicate/{svc.image}:latest", "command": ["python", "-m", svc.module],
        "env": env, "envFrom": [{"configMapRef": {"name": "syndicate-env"}}],
    }
    if svc.image == "gateway":
        container["ports"] = [{"name": "http", "containerPort": HTTP_PORT}]
    requests = {"cpu": d.cpu, "memory": d.memory}
    limits = dict(requests) if pinned else {"cpu": d.cpu_limit or d.cpu, "memory": d.memory_limit or d.memory}
    container["resources"] = {"requests": requests, "limits": limits}
    probe = ["python", "-m", "shared.health", svc.name]
    for name, period, (agent_failures, other_failures) in HEALTH_PROBES:
        container[name] = {"exec": {"command": list(probe)}, "periodSeconds": period, "timeoutSeconds": 5,
                           "failureThreshold": agent_failures if models else other_failures}
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}}
    if sandbox:  # a fresh /proc in the box's pid namespace
        security["procMount"] = "Unmasked"
    container["securityContext"] = security
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "state", "mountPath": "/var/lib/syndicate"}]
    if models:
        mounts.append({"name": "models", "mountPath": "/models", "readOnly": True})
    container["volumeMounts"] = mounts
    return container


def _dump_docs(docs: list[dict[str, Any]], header: str) -> str:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)
    return f"{header}\n{body}"
