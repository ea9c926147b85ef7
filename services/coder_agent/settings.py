from __future__ import annotations

from shared.settings import Settings


class CoderSettings(Settings):
    max_attempts: int = 3  # write, then up to (max_attempts - 1) repairs from sandbox verdicts
    max_tokens: int = 768
    # Repairs sample (greedy decoding tends to repeat the failed program); the first attempt
    # is greedy so a task's first answer is reproducible.
    repair_temperature: float = 0.6
    write_tests: bool = True  # when the task brings no tests, ask the model for some
    tests_max_tokens: int = 256  # small models run on writing asserts until cut off
    sandbox_timeout_s: float = 10.0
    sandbox_memory_mb: int = 256
    top_k: int = 4  # passages retrieved when the task names a collection
    min_score: float = 0.25
