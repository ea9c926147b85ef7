"""Choosing among candidate programs by what they do (CodeT's dual agreement).

Every candidate runs against the same checks: first the trusted ones (the task's own
tests and examples), then the tests the model wrote. The model's tests are not believed
one by one: a test that most of the candidates that ran fail is dropped (a small model
often asserts ``add_1(1, 2) == 3`` for code that rightly returns 4), and the rest vote
with the candidates — candidates that pass the same set Y of model tests form a consensus
set X, scored |X| x |Y|. The order:

1. a candidate that parses and runs beats one that does not;
2. more trusted checks passed beats fewer (so a later candidate never replaces an earlier
   one that passes more of the task's own checks);
3. the dual-agreement score, then how many candidates behave exactly alike on every
   check's call (the values returned, right or wrong: inputs a dropped test chose still
   tell programs apart, the majority behaviour being the likelier right one);
4. no exception or timeout on any check standing;
5. the earlier candidate (the greedy one first).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.coder_agent.checks import CheckOutcome
from shared.contracts import ExecResult


@dataclass
class Candidate:
    """One program tried: where it came from, what running it against the checks gave."""

    index: int  # 1-based, in the order tried
    origin: str  # "greedy", "sampled", "repair of 2"
    code: str
    answer: str  # the model's whole reply (a repair continues this conversation)
    tokens: int = 0
    seconds: float = 0.0
    parse_error: str | None = None
    result: ExecResult | None = None
    outcomes: list[CheckOutcome] | None = None  # None: it died before the checks ran
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.parse_error is None and self.outcomes is not None

    def passed(self, indices: list[int]) -> list[int]:
        ok = {o.index for o in self.outcomes or [] if o.ok}
        return [i for i in indices if i in ok]

    def raised(self, indices: list[int]) -> list[CheckOutcome]:
        wanted = set(indices)
        return [o for o in self.outcomes or [] if o.index in wanted and o.raised]


@dataclass
class Ranking:
    """The verdict over a pool of candidates for one set of checks."""

    best: Candidate
    trusted: list[int]  # indices of the trusted checks
    kept: list[int]  # indices of the model's checks that stand
    dropped: list[int]  # indices of the model's checks most candidates failed
    scores: dict[int, tuple[int, ...]]  # candidate index -> its sort key

    @property
    def satisfied(self) -> bool:
        """The best candidate runs, passes every trusted check, raises on none that stands."""
        b = self.best
        return b.ran and len(b.passed(self.trusted)) == len(self.trusted) and not b.raised(self.trusted + self.kept)


def dropped_checks(pool: list[Candidate], model: list[int], min_voters: int = 2) -> list[int]:
    """Model checks that more of the candidates that ran fail than pass (with at least
    ``min_voters`` of them: one candidate cannot tell a wrong test from wrong code)."""
    voters = [c for c in pool if c.ran]
    if len(voters) < min_voters:
        return []
    passes = Counter(i for c in voters for i in c.passed(model))
    return [i for i in model if passes[i] * 2 < len(voters)]


def behaviour(c: Candidate) -> tuple[str, ...]:
    """What a candidate did on every check's call: the value it returned (whatever the
    check expected, so even a dropped test's inputs tell programs apart), else the error."""
    return tuple(o.actual if o.actual is not None else ("ok" if o.ok else o.error.split(":")[0])
                 for o in c.outcomes or [])


def rank(pool: list[Candidate], n_trusted: int, n_checks: int, min_voters: int = 2) -> Ranking:
    """Order ``pool`` (checks 0..n_trusted-1 trusted, the rest the model's) and pick the best."""
    if not pool:
        raise ValueError("no candidates to rank")
    trusted = list(range(n_trusted))
    model = list(range(n_trusted, n_checks))
    dropped = dropped_checks(pool, model, min_voters)
    kept = [i for i in model if i not in dropped]

    def signature(c: Candidate) -> tuple[frozenset[int], frozenset[int]]:
        return frozenset(c.passed(trusted)), frozenset(c.passed(kept))

    consensus = Counter(signature(c) for c in pool if c.ran)
    alike = Counter(behaviour(c) for c in pool if c.ran)
    scores: dict[int, tuple[int, ...]] = {}
    for c in pool:
        if not c.ran:
            scores[c.index] = (0, 0, 0, 0, 0, -c.index)
            continue
        agree = consensus[signature(c)] * len(c.passed(kept))
        scores[c.index] = (1, len(c.passed(trusted)), agree, alike[behaviour(c)], int(not c.raised(trusted + kept)), -c.index)
    best = max(pool, key=lambda c: scores[c.index])
    return Ranking(best=best, trusted=trusted, kept=kept, dropped=dropped, scores=scores)


def summary_sentence(r: Ranking, tried: int, model_tests_asked: bool) -> str:
    """One plain sentence: which checks the chosen code passed, which of them the model
    wrote itself, and how many candidates were tried."""
    b = r.best
    chosen = f"chosen from {tried} candidate{'s' * (tried != 1)} (candidate {b.index}, {b.origin})"
    if not b.ran:
        why = b.parse_error or (b.result.status if b.result else "it did not run")
        return f"No candidate ran to the checks (the best one failed: {why}); {chosen}."
    parts = []
    if r.trusted:
        parts.append(_share(len(b.passed(r.trusted)), len(r.trusted), "check", "from the task"))
    if r.kept:
        parts.append(_share(len(b.passed(r.kept)), len(r.kept), "test", "the model wrote itself"))
    if not parts:
        none = "the model wrote none the candidates agreed on" if model_tests_asked else "no tests were written"
        return f"It runs, with no checks to pass (the task brings none and {none}); {chosen}."
    return f"It {' and '.join(parts)}; {chosen}."


def _share(passed: int, total: int, noun: str, whose: str) -> str:
    """"passes all 3 checks from the task", "passes 2 of the 3 tests ...", "fails the only check ..."."""
    if total == 1:
        return f"{'passes' if passed else 'fails'} the only {noun} {whose}"
    if passed == total:
        return f"passes {'both' if total == 2 else f'all {total}'} {noun}s {whose}"
    return f"passes {'none' if passed == 0 else passed} of the {total} {noun}s {whose}"
