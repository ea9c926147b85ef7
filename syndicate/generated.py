"""Every deployment file generated from the service registry, in one place: the NATS
users (auth.conf, twice), compose.yaml's service parts and the Kubernetes manifests of
the services. ``syndicate deploy manifests --write`` writes them; ``tests/deploy`` fails
when a committed one differs."""

from __future__ import annotations

from pathlib import Path

from syndicate import compose_file, deploy, k8s_manifests


def generated_files(repo: Path) -> dict[Path, str]:
    """Path -> the text it must hold, for every generated file of ``repo``."""
    auth = deploy.render_nats_auth()
    files = {repo / "infra" / "nats" / "auth.conf": auth, repo / "k8s" / "base" / "nats" / "auth.conf": auth,
             repo / "compose.yaml": compose_file.render(repo)}
    folder = k8s_manifests.services_dir(repo)
    files.update({folder / name: text for name, text in k8s_manifests.render_all().items()})
    return files


def stale_files(repo: Path) -> list[Path]:
    """Generated files whose committed text differs from what the registry renders."""
    return [p for p, text in generated_files(repo).items() if not p.is_file() or p.read_text() != text]


def write_files(repo: Path) -> list[Path]:
    """Write every stale generated file (and remove service manifests of services gone);
    the paths changed."""
    changed = []
    for path, text in generated_files(repo).items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    keep = set(generated_files(repo))
    for old in k8s_manifests.services_dir(repo).glob("*.yaml"):
        if old not in keep:
            old.unlink()
            changed.append(old)
    return changed
