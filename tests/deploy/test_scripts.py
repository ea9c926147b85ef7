"""The project's own files are whole: every shell script parses, and no file carries a
merge's conflict markers (a merge once left them in llama-wheel.sh: `make install` then
failed on every fresh machine, while machines with a built venv never ran the script)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SKIP_DIRS = {".git", ".venv", ".syndicate", ".fresh-check", ".hypothesis", "node_modules", "__pycache__", ".mypy_cache",
             ".ruff_cache"}
TEXT = {".py", ".sh", ".md", ".toml", ".yaml", ".yml", ".json", ".conf", ".cfg", ".txt", ".html", ".css", ".js", ".lock",
        ".Dockerfile", ""}
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> |\|\|\|\|\|\|\| )", re.MULTILINE)


def project_files() -> list[Path]:
    out = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if any(part in SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in TEXT or path.name in ("Makefile", "Dockerfile"):
            out.append(path)
    return out


@pytest.mark.parametrize("script", sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("infra/**/*.sh")))
def test_every_shell_script_parses(script: str) -> None:
    check = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_no_file_carries_conflict_markers() -> None:
    marked = [str(p.relative_to(REPO)) for p in project_files() if MARKER.search(p.read_bytes())]
    assert marked == [], f"conflict markers left by a merge in: {marked}"
