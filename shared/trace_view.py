"""A task's spans shaped for a waterfall: what ``syndicate trace`` prints in the terminal
and the gateway's console draws in the browser (the spans as ``shared.telemetry.read_trace``
returns them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_INDENT = 4  # deeper spans are drawn at this depth: the names stay readable


@dataclass(frozen=True)
class WaterfallRow:
    """One span: its service, shortened name, depth in the tree and times relative to the
    trace's first span (seconds)."""

    span_id: str
    service: str
    label: str
    depth: int
    start_s: float
    duration_s: float
    status: str
    attributes: dict[str, Any]


def without_create_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastStream opens a zero-length 'create' span before each publish: hide them, and
    re-parent their children so the tree stays whole."""
    hidden = {s["span_id"]: s["parent_id"] for s in spans if s["name"].endswith(" create")}
    out = []
    for s in spans:
        if s["span_id"] in hidden:
            continue
        parent = s["parent_id"]
        while parent in hidden:
            parent = hidden[parent]
        out.append({**s, "parent_id": parent})
    return out


def span_label(name: str) -> str:
    """Shorter span names: reply inboxes and per-task event subjects."""
    if name.startswith("_INBOX."):
        return "reply " + name.rsplit(" ", 1)[-1]
    return re.sub(r"^(syndicate\.task\.events)\.\S+", r"\1", name).removeprefix("syndicate.")


def depths(spans: list[dict[str, Any]]) -> dict[str, int]:
    """Each span's distance from its trace's root (a span whose parent is missing counts
    as a root)."""
    parent = {s["span_id"]: s["parent_id"] for s in spans}
    out: dict[str, int] = {}
    for sid in parent:
        d, p = 0, parent[sid]
        while p in parent and d < 50:
            d, p = d + 1, parent[p]
        out[sid] = d
    return out


def waterfall(spans: list[dict[str, Any]]) -> tuple[list[WaterfallRow], float]:
    """The rows in start order and the trace's total length in seconds (spans as stored,
    'create' spans already removed or not, as the caller chose)."""
    if not spans:
        return [], 0.0
    t0 = min(s["start"] for s in spans)
    total = max(s["end"] for s in spans) - t0
    depth = depths(spans)
    rows = [
        WaterfallRow(
            span_id=s["span_id"], service=s["service"], label=span_label(s["name"]),
            depth=min(depth[s["span_id"]], MAX_INDENT), start_s=s["start"] - t0,
            duration_s=max(0.0, s["end"] - s["start"]), status=s.get("status", "unset"),
            attributes=s.get("attributes") or {},
        )
        for s in sorted(spans, key=lambda s: s["start"])
    ]
    return rows, total
