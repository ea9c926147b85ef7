from __future__ import annotations

from shared.settings import Settings


class RouterSettings(Settings):
    # Task records older than this leave the KV bucket (LangGraph's checkpoints never do).
    task_retention_s: float = 7 * 86_400.0
    deadline_sweep_s: float = 0.5
    job_max_deliver: int = 3
    # Load the `router` role's small model to classify tasks the rules are unsure of.
    router_classifier: bool = True
