from __future__ import annotations

from shared.settings import Settings


class ReasonerSettings(Settings):
    max_tokens: int = 512
    top_k: int = 5
    # Hits scoring below this are treated as "nothing relevant" rather than cited.
    min_score: float = 0.25
    search_timeout_s: float = 20.0
