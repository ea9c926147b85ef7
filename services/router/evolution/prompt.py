"""The mutation prompt: the task, the parent program with its score and sandbox verdict,
an inspiration program from the population (only when it scores differently), recent
candidates that earned no score (and why), and a hint that varies from child to child so
a generation's candidates differ."""

from __future__ import annotations

from shared.contracts import EvolveProgram, EvolveSpec

DEFAULT_HINTS = (
    "Use a smarter algorithm than the current one.",
    "Handle the input in a better order.",
    "Make a better choice at each step: look at more options before deciding.",
    "Remove the work the current program wastes.",
)
MAX_CODE_CHARS = 6_000
MAX_DETAIL_CHARS = 300
MAX_FAILURES = 2


def _score(p: EvolveProgram) -> str:
    return f"scores {p.score:.6g}" if p.score is not None else f"earns no score ({p.verdict})"


def _program(label: str, p: EvolveProgram) -> str:
    detail = p.detail.strip()[-MAX_DETAIL_CHARS:]
    out = f"{label} {_score(p)} (higher is better):\n```python\n{p.code.strip()[:MAX_CODE_CHARS]}\n```"
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
    """The user message of one candidate job (higher score is better).

    The inspiration is shown only when it behaves differently from the parent (another
    score): a near-copy of the parent teaches a small model nothing but copying."""
    parts = [f"Task:\n{spec.task.strip()}", _program("The current program", parent)]
    if inspiration is not None and inspiration.score != parent.score:
        parts.append(_program("A different program", inspiration))
    for f in failures[:MAX_FAILURES]:
        why = f.detail.strip()[-MAX_DETAIL_CHARS:] or f.verdict
        parts.append(f"A recent attempt earned no score ({f.verdict}):\n```\n{why}\n```")
    parts.append(
        f"Improve the current program. Idea: {hint}\n"
        "Do not copy the current program: change how it works so that it scores higher. Keep the "
        "same function names and signatures; no tests, no examples. Answer with the complete "
        "program in one ```python block."
    )
    return "\n\n".join(parts)

