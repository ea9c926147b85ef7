from __future__ import annotations

from shared.settings import Settings


class RouterSettings(Settings):
    # task_retention_s (shared Settings): task records older than this leave the KV bucket.
    deadline_sweep_s: float = 0.5
    job_max_deliver: int = 3
    # Admission control: a submitted task beyond this many active (routed or running)
    # tasks ends `rejected` at once with an `overloaded` error (back-pressure to the
    # submitter) instead of queueing without bound behind the agents.
    max_active_tasks: int = 500
    # Load the `router` role's small model to classify tasks the rules are unsure of.
    router_classifier: bool = True
