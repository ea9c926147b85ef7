"""What an agent measured while it ran, kept where ``syndicate plan`` finds it after the
agent stopped: ``<state_dir>/agents/<role>.json`` with its last generation rate (and the
last one it made alone, when no other request shared its batch), its resident memory now
and at its peak, its model, threads and cpus. Written at most every ``every_s`` seconds,
atomically, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any


def record_path(state_dir: Path, role: str) -> Path:
    return state_dir / "agents" / f"{role}.json"


def resident_bytes(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes (empty when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for key, name in (("VmRSS", "rss_bytes"), ("VmHWM", "rss_peak_bytes")):
        if m := re.search(rf"^{key}:\s+(\d+) kB", status, flags=re.M):
            out[name] = int(m.group(1)) * 1024
    return out


class MeasurementRecorder:
    """Keeps one agent's record file up to date (``observe`` after every generation)."""

    def __init__(self, path: Path, base: dict[str, Any], every_s: float = 2.0) -> None:
        self.path, self.base, self.every_s = path, base, every_s
        self.state: dict[str, Any] = {}
        self._written = 0.0

    def observe(self, output_tokens: int, seconds: float, ttft_s: float | None, alone: bool) -> None:
        """One finished generation; ``alone``: no other request ran during it."""
        decode_s = seconds - (ttft_s or 0.0)
        if output_tokens < 8 or decode_s <= 0:
            return  # too short to say anything about the rate
        rate = round((output_tokens - 1) / decode_s, 2)
        self.state["gen_tok_s"] = rate
        if alone:
            self.state["gen_tok_s_alone"] = rate
        if time.monotonic() - self._written >= self.every_s:
            self.write()

    def write(self) -> None:
        self._written = time.monotonic()
        rec = {**self.base, **self.state, **resident_bytes(), "pid": os.getpid(), "at": time.time()}
        with contextlib.suppress(OSError):  # a read-only state dir costs the record, never the answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(rec))
            tmp.replace(self.path)
