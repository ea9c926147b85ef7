"""compose.local.yaml over compose.yaml, merged by podman-compose itself: nothing in it comes
from a registry, every image is one `make images` builds, nothing waits for a service the
merge leaves out, and the retriever keeps its embedded store. `make compose-test` runs it
for real; this runs in `make test`, where podman is not installed: `--dry-run` skips
podman-compose's `podman --version` probe (1.6 makes it before every command, `config`
included), and the merge itself never calls podman."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import registry
from syndicate import deploy

from .conftest import REPO

BUILT = re.search(r"ALL_TARGETS=\(([^)]*)\)", (REPO / "infra" / "containers" / "build-images.sh").read_text())


def merged_config(*files: str) -> dict[str, Any]:
    env = {deploy.password_env(user): "x" + user.replace("-", "") for user, _ in registry.nats_users()}
    argv = [sys.executable, "-m", "podman_compose"] + [a for f in files for a in ("-f", str(REPO / f))] + ["--dry-run", "config"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    return merged_config("compose.yaml", "compose.local.yaml")


def test_the_merged_file_validates_against_the_compose_spec(local: dict, tmp_path: Path) -> None:
    (tmp_path / "merged.yaml").write_text(yaml.safe_dump(local))
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(tmp_path / "merged.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_image_comes_from_a_registry(local: dict) -> None:
    assert BUILT is not None
    built = {f"syndicate/{target}" for target in BUILT.group(1).split()}
    for name, svc in local["services"].items():
        repo = svc["image"].removeprefix("localhost/").split(":")[0]
        assert repo in built, f"{name} runs {svc['image']}, which make images does not build"


def test_the_stack_is_the_registry_plus_nats_and_the_collector(local: dict) -> None:
    running = {n for n, s in local["services"].items() if s.get("restart") != "no"}
    assert running == {svc.name for svc in registry.SERVICES} | {"nats", "jaeger"}


def test_nothing_waits_for_a_service_left_out(local: dict) -> None:
    for name, svc in local["services"].items():
        missing = set(svc.get("depends_on") or {}) - set(local["services"])
        assert not missing, f"{name} depends on {missing}, which compose.local.yaml does not start"


def test_the_retriever_embeds_qdrant_in_its_own_volume(local: dict) -> None:
    retriever = local["services"]["retriever"]
    assert retriever["environment"]["SYNDICATE_QDRANT_URL"] == ""
    assert any(str(v).endswith(":/var/lib/syndicate") for v in retriever["volumes"])


def test_the_official_images_stay_the_default(compose: dict) -> None:
    images = {name: compose["services"][name]["image"].split(":")[0] for name in ("nats", "qdrant", "jaeger")}
    assert images == {"nats": "nats", "qdrant": "qdrant/qdrant", "jaeger": "jaegertracing/jaeger"}
