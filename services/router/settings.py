from __future__ import annotations

from shared.settings import Settings


class RouterSettings(Settings):
    # Task records older than this leave the KV bucket (LangGraph's checkpoints never do).
    task_retention_s: float = 7 * 86_400.0
    deadline_sweep_s: float = 0.5
    job_max_deliver: int = 3
