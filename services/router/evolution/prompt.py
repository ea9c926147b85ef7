"""The prompts a coder-agent gets for one candidate.

Mode "islands" (``versions_prompt``), FunSearch's format for a small model: k programs
of one island in ascending score, shown as ``<function>_v0 .. _v{k-1}`` each with its
score, and the model writes ``<function>_v{k}`` — a full rewrite, never a diff (small
models fail diff formats: OpenEvolve #241). What the sandbox said about a recent failure
of the island is shown, and a copy of an existing behaviour is called one. With no
evolved function named, whole programs are versioned the same way.

Mode "generations" (``mutation_prompt``): the parent program with its score and sandbox
verdict, an inspiration program that scores differently, recent failures and a hint.
"""

from __future__ import annotations

from services.router.evolution.program import rename
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
PROMPT_VERSION = 2  # stamped on every candidate's job: prompts of another version are not comparable


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def versions_prompt(spec: EvolveSpec, skeleton: str, versions: list[EvolveProgram],
                    failure: EvolveProgram | None = None, hint: str | None = None) -> str:
    """The user message of one candidate job in mode "islands" (``versions`` ascending)."""
    k = len(versions)
    fn = spec.function
    parts = [f"Task:\n{spec.task.strip()}"]
    if fn is not None:
        shown = []
        for i, p in enumerate(versions):
            code = rename(p.function.strip(), fn, f"{fn}_v{i}")[:MAX_CODE_CHARS]
            shown.append(f"# {fn}_v{i} scores {_fmt(p.score)} (higher is better)\n{code}")
        head = f"{skeleton.strip()}\n\n\n" if skeleton.strip() else ""
        parts.append("```python\n" + head + "\n\n\n".join(shown) + "\n```")
        target = f"`{fn}_v{k}`"
        ask = (f"Write {target}, an improved version of `{fn}_v{k - 1}` that scores higher. Change how it "
               f"works, not only its form. Keep the same arguments. Answer with one ```python block holding "
               f"the complete `def {fn}_v{k}(...)` and any helper functions or imports it needs; no tests, "
               "no examples, no prints.")
    else:
        for i, p in enumerate(versions):
            parts.append(f"Program v{i} scores {_fmt(p.score)} (higher is better):\n"
                         f"```python\n{p.code.strip()[:MAX_CODE_CHARS]}\n```")
        ask = (f"Write program v{k}, an improved version of program v{k - 1} that scores higher. Change how "
               "it works, not only its form. Keep the same function names and signatures. Answer with the "
               "complete program in one ```python block; no tests, no examples, no prints.")
    if failure is not None:
        parts.append(_failure(failure, f"`{fn}_v{k - 1}`" if fn else f"program v{k - 1}"))
    if hint:
        parts.append(f"Idea: {hint}")
    parts.append(ask)
    return "\n\n".join(parts)


def _failure(p: EvolveProgram, last: str) -> str:
    if p.verdict == "duplicate":
        return (f"A recent attempt behaved exactly like an earlier program (same result on every input): "
                f"a new version must change the behaviour of {last}, not only its form.")
    why = p.detail.strip()[-MAX_DETAIL_CHARS:] or p.verdict
    return f"A recent attempt failed ({p.verdict}); the scoring run printed:\n```\n{why}\n```"


# --- mode "generations" ------------------------------------------------------------------
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
    """The user message of one candidate job in mode "generations" (higher score is better).

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
