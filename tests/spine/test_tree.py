"""The tree itself: no merge left conflict markers behind, every shell script parses.

A merge once left markers in infra/scripts/llama-wheel.sh and broke `make install` on
every machine; this catches that in the first seconds of `make test`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(rb"^(<<<<<<< |>>>>>>> |=======$)", re.MULTILINE)


SKIP = {".git", ".venv", ".syndicate", ".fresh-check", ".hypothesis", "__pycache__", ".mypy_cache", ".ruff_cache"}


def tracked(suffixes: tuple[str, ...] = ()) -> list[Path]:
    """The project's files (walked, not asked of git: a fresh machine's copy may have no git)."""
    found: list[Path] = []
    for d in [REPO, *(p for p in REPO.iterdir() if p.is_dir() and p.name not in SKIP)]:
        if d == REPO:
            found += [p for p in REPO.iterdir() if p.is_file()]
            continue
        found += [p for p in d.rglob("*") if p.is_file() and not SKIP & set(p.relative_to(REPO).parts)]
    return [p for p in found if not suffixes or p.suffix in suffixes]


def test_no_conflict_markers() -> None:
    bad = [str(p.relative_to(REPO)) for p in tracked() if p.suffix not in (".md", ".png", ".gz")
           and p.is_file() and MARKER.search(p.read_bytes())]
    assert not bad, f"merge conflict markers left in {bad}"


def test_shell_scripts_parse() -> None:
    for script in [*tracked((".sh",)), REPO / ".ci" / "run"]:
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script.relative_to(REPO)}: {r.stderr}"
