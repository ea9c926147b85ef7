"""The mutation prompt: the task, the parent program with its score and sandbox verdict,
an inspiration program from the population, recent candidates that earned no score (and
why), and a hint that varies from child to child so a generation's candidates differ."""

from __future__ import annotations

from shared.contracts import EvolveProgram, EvolveSpec

DEFAULT_HINTS = (
    "Make one focused change that raises the score.",
    "Use a different, better algorithm for the same job.",
    "Look at what the score measures and remove wasted work.",
    "Combine the best ideas of the programs shown.",
)
MAX_CODE_CHARS = 6_000
MAX_DETAIL_CHARS = 300
MAX_FAILURES = 2


def _score(p: EvolveProgram) -> str:
    return f"score {p.score:.6g}" if p.score is not None else f"no score ({p.verdict})"


def _program(label: str, p: EvolveProgram) -> str:
    detail = p.detail.strip()[-MAX_DETAIL_CHARS:]
    out = f"{label} ({_score(p)}):\n```python\n{p.code.strip()[:MAX_CODE_CHARS]}\n```"
    if detail:
        out += f"\nIts scoring run printed:\n```\n{detail}\n```"
    return out


def hint_for(spec: EvolveSpec, generation: int, child: int) -> str:
    hints = spec.hints or list(DEFAULT_HINTS)
    return hints[(generation + child) % len(hints)]


def mutation_prompt(
    spec: EvolveSpec, parent: EvolveProgram, inspiration: EvolveProgram | None,
    failures: list[EvolveProgram], hint: str,
) -> str:
    """The user message of one candidate job (higher score is better)."""
    parts = [f"Task:\n{spec.task.strip()}", _program("Current program", parent)]
    if inspiration is not None:
        parts.append(_program("Another program for the same task", inspiration))
    for f in failures[:MAX_FAILURES]:
        why = f.detail.strip()[-MAX_DETAIL_CHARS:] or f.verdict
        parts.append(f"A recent attempt earned no score ({f.verdict}):\n```\n{why}\n```")
    parts.append(
        f"{hint} Write an improved version of the current program that earns a higher score. "
        "Keep the same function names and signatures. Answer with the complete program in one ```python block."
    )
    return "\n\n".join(parts)
