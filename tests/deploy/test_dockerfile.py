"""infra/docker/Dockerfile: the three runtime targets exist, run as a non-root user, probe
the health subject, and the sandbox image carries no llama.cpp."""

from __future__ import annotations

import re

import pytest

from .conftest import REPO

DOCKERFILE = (REPO / "infra" / "docker" / "Dockerfile").read_text()
TARGETS = ("agent", "sandbox", "gateway")


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = m.group(2) or m.group(1)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def resolve_args(stage: list[str], value: str) -> str:
    """Replace ${ARG} with the ARG's default declared in the stage."""
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", "\n".join(stage), re.MULTILINE))
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), value)


def lineage(name: str, all_stages: dict[str, list[str]]) -> list[str]:
    """Instructions of a stage and the stages it is built FROM."""
    chain: list[str] = []
    while name in all_stages:
        chain = all_stages[name] + chain
        name = all_stages[name][0].split()[1]
    return chain


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_non_root(target: str) -> None:
    st = stages()[target]
    users = [resolve_args(st, line.split(None, 1)[1]) for line in st if line.startswith("USER ")]
    assert users, f"{target} sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{target} runs as {users[-1]}"


@pytest.mark.parametrize("target", TARGETS)
def test_target_probes_the_health_subject(target: str) -> None:
    health = [line for line in stages()[target] if line.startswith("HEALTHCHECK")]
    assert health and "shared.health" in health[0]


def test_sandbox_image_has_bubblewrap_and_no_llama() -> None:
    all_stages = stages()
    sandbox = "\n".join(lineage("sandbox", all_stages) + lineage("venv-sandbox", all_stages))
    assert "bubblewrap" in sandbox
    assert "llama" not in sandbox.lower() and "[llm" not in sandbox
    assert "llama-wheel" in "\n".join(all_stages["venv-agent"])


def test_llama_build_is_portable_avx2() -> None:
    args = re.search(r'ARG LLAMA_CMAKE_ARGS="([^"]+)"', DOCKERFILE).group(1).split()
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args and "-DGGML_AVX512=OFF" in args
    assert not any("march=native" in a for a in args)


def test_models_are_mounted_not_baked() -> None:
    assert not re.search(r"^(COPY|ADD)\s.*\.gguf", DOCKERFILE, re.MULTILINE | re.IGNORECASE)
    assert "SYNDICATE_MODELS_DIR=/models" in DOCKERFILE


def test_build_args_are_documented() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    for arg in set(re.findall(r"^ARG\s+(\w+)", DOCKERFILE, re.MULTILINE)):
        assert arg in docs, f"build arg {arg} is not in docs/deploy.md"


@pytest.mark.parametrize("target", ["agent", "gateway"])
def test_cli_images_carry_the_operators_package(target: str) -> None:
    """compose's `cli` and `models-fetch` tools run the `syndicate` command in these images."""
    all_stages = stages()
    assert "COPY syndicate ./syndicate" in all_stages[target]
    assert "COPY syndicate ./syndicate" in all_stages[f"venv-{target}"]  # pip install "." packages it
    assert not any("syndicate ./syndicate" in line for line in lineage("sandbox", all_stages))


def test_the_base_is_a_build_arg_and_the_official_python_image_by_default() -> None:
    """infra/containers/base-image.sh's local base goes in as BASE_IMAGE; without it the
    images start from python:3.11-slim-bookworm as before."""
    first = next(line for line in DOCKERFILE.splitlines() if line.startswith("FROM "))
    assert first.split()[1] == "${BASE_IMAGE}"
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE, re.MULTILINE))
    base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], defaults["BASE_IMAGE"])
    assert base == "python:3.11-slim-bookworm"


def test_pip_and_the_llama_wheel_are_cached_between_builds_not_in_layers() -> None:
    runs = [line for lines in stages().values() for line in lines if line.startswith("RUN") and "pip " in line]
    assert runs and all("--mount=type=cache" in line for line in runs), runs
    assert "PIP_NO_CACHE_DIR" not in DOCKERFILE  # any value would turn the cache mounts off
