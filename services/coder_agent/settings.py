from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import Settings


class CoderSettings(Settings):
    # Sample, then verify: `candidates` programs are written at once in the engine's slots
    # (the first greedy, the rest sampled), all run against the same checks in
    # code-sandbox, the best is kept (ranking.py). While the best raises or fails a check
    # of the task's own, another round of repairs (from tracebacks only) and fresh
    # samples follows, up to `max_candidates` programs and `max_rounds` rounds.
    # The first round: the greedy answer (+ samples). 1 by measurement: on a CPU where a
    # batch row costs about a single step (the 1.5B on a 2-core machine), 4 at once made the
    # demo 102 s against 66 s for the greedy answer and the tests first, samples only when the
    # evidence does not decide (bench/coder_cases.py --quick: same 3 of 4 right). On a
    # many-core server where 4 rows cost little more than 1, 4 gains coverage in one round.
    candidates: int = Field(default=1, ge=1, le=16)
    samples: int = Field(default=4, ge=0, le=16)  # fresh samples of a later round, while the evidence does not decide
    early_stop: bool = True  # cancel a round's generations once the evidence decides
    # What decides: "all" — the best passes every check that stands, the model's tests
    # included; "task" — it passes the task's own checks and the rule checks (the model's
    # other tests only rank candidates).
    decide_on: Literal["all", "task"] = "all"
    max_candidates: int = Field(default=8, ge=1, le=32)
    max_rounds: int = Field(default=3, ge=1, le=8)  # greedy, then samples and repairs, then more
    sample_temperature: float = 0.8
    repair_temperature: float = 0.2
    max_tokens: int = 768
    # The model writes tests when the task brings fewer checks than this (its own tests,
    # asserts, doctest or prose examples); 0 never asks.
    tests_below_trusted: int = 3
    write_tests: bool = True
    tests_first: bool = False  # the tests before the candidates, not beside them (measured: bench/coder_cases.py)
    # The test block ends at its closing fence (prompts.STOP); the cap only stops a model
    # that never closes it, and a statement it cuts off is left out.
    tests_max_tokens: int = 512
    # The test writer stops after this many complete asserts (it is asked for 3 to 6; the
    # 1.5B goes on enumerating one rule until the cap); 0: only the cap stops it.
    max_tests: int = Field(default=6, ge=0, le=32)
    check_timeout_s: float = 2.0  # per check inside the sandboxed program
    # Each candidate's run: wall time generous (a busy machine must not fail a right
    # program), CPU time tight (what a runaway program really spends).
    sandbox_timeout_s: float = 30.0
    sandbox_cpu_s: float = 10.0
    sandbox_memory_mb: int = 256
    top_k: int = 4  # passages retrieved when the task names a collection
    min_score: float = 0.25
