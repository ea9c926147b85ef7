"""Reading files for an ingest: which files under a folder are documents (no binaries,
no build/VCS folders), and their grouping into IngestRequest batches under the NATS
payload limit. The CLI reads the operator's files with it; the gateway's MCP ``ingest``
tool reads only folders under its allow-list (``skip`` refuses the rest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.contracts import IngestDocument, IngestRequest

SKIP_DIRS = {"node_modules", "__pycache__", "venv", "dist", "build", "target", "site-packages"}
MAX_FILE_BYTES = 700_000  # one file must fit in one NATS message (1 MB default limit)
BATCH_BYTES = 200_000
BATCH_FILES = 16


@dataclass
class IngestPlan:
    batches: list[list[IngestDocument]] = field(default_factory=list)
    roots: dict[str, list[str]] = field(default_factory=dict)  # root -> paths found under it
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0

    @property
    def files(self) -> int:
        return sum(len(b) for b in self.batches)


def display_path(p: Path) -> str:
    """Relative to the working folder when under it (stable across machines), else absolute."""
    p = p.resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return p.as_posix()


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") or part in SKIP_DIRS or part.endswith(".egg-info") for part in rel[:-1]):
            continue
        if p.is_file() and not p.name.startswith("."):
            out.append(p)
    return out


def looks_binary(data: bytes) -> bool:
    """True for content that is not UTF-8 text (NUL bytes, or undecodable)."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a character cut at the 8 KiB boundary is still text
    return False


def plan_ingest(
    paths: list[Path], tags: list[str] | None = None, *, skip: Callable[[Path], str | None] | None = None,
) -> IngestPlan:
    """Read the files under ``paths`` and group them into batches under the payload limit.

    ``skip(file)`` may name a reason to leave a file unread (checked before it is opened)."""
    plan = IngestPlan()
    batch: list[IngestDocument] = []
    size = 0
    for root in paths:
        if not root.exists():
            plan.skipped.append(f"{root}: no such file or folder")
            continue
        found = plan.roots.setdefault(display_path(root), [])
        for f in _walk(root):
            shown = display_path(f)
            if skip is not None and (reason := skip(f)):
                plan.skipped.append(f"{shown}: {reason}")
                continue
            data = f.read_bytes()
            if len(data) > MAX_FILE_BYTES:
                plan.skipped.append(f"{shown}: too large ({len(data) // 1000} kB)")
                continue
            if looks_binary(data):
                plan.skipped.append(f"{shown}: binary")
                continue
            text = data.decode("utf-8", errors="replace")
            found.append(shown)
            if batch and (size + len(data) > BATCH_BYTES or len(batch) >= BATCH_FILES):
                plan.batches.append(batch)
                batch, size = [], 0
            batch.append(IngestDocument(path=shown, content=text, tags=list(tags or [])))
            size += len(data)
            plan.total_bytes += len(data)
    if batch:
        plan.batches.append(batch)
    return plan


def requests_for(plan: IngestPlan, collection: str, prune: bool, job_id: str) -> list[IngestRequest]:
    """One request per batch, plus one prune request per root (documents travel elsewhere)."""
    reqs = [IngestRequest(collection=collection, documents=b, job_id=job_id, batch=i) for i, b in enumerate(plan.batches)]
    if prune:
        for root, present in plan.roots.items():
            reqs.append(IngestRequest(collection=collection, job_id=job_id, batch=len(reqs),
                                      prune_missing=True, root=root, present_paths=present))
    return reqs
