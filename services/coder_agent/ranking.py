"""Choosing among candidate programs by what they do.

Every candidate runs against the same checks, in three tiers: the **stated** checks (the
task's own tests and examples, and any a caller added), the **rule** checks (asserts the
model wrote from a rule the task states, expecting a value the task's text gives:
model_tests.py) and the model's other **tests**. The model's other tests are not believed
one by one: a test that most of the candidates that ran fail is dropped (a small model
often asserts ``add_1(1, 2) == 3`` for code that rightly returns 4), and the rest vote
with the candidates — CodeT's dual agreement: candidates that pass the same set Y of
tests form a consensus set X, scored |X| x |Y|. Stated and rule checks are never dropped
and come before any agreement: a mistake most samples share does not outvote the task.
The order:

1. a candidate that parses and runs beats one that does not, then one that defines every
   function the task names beats one that renamed one;
2. more stated checks passed, then more rule checks passed;
3. the dual-agreement score, then how many candidates behave exactly alike on every
   check's and probe's call (the values returned, right or wrong: inputs a dropped test
   chose still tell programs apart, the majority behaviour being the likelier right one);
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
    result: ExecResult | None = None  # its last sandbox run
    outcomes: list[CheckOutcome] | None = None  # None: it died before the checks ran
    messages: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # functions the task names that it does not define

    @property
    def ran(self) -> bool:
        return self.parse_error is None and self.outcomes is not None

    def passed(self, indices: list[int]) -> list[int]:
        ok = {o.index for o in self.outcomes or [] if o.ok}
        return [i for i in indices if i in ok]

    def raised(self, indices: list[int]) -> list[CheckOutcome]:
        wanted = set(indices)
        return [o for o in self.outcomes or [] if o.index in wanted and o.raised]


@dataclass(frozen=True)
class Tiers:
    """Indices of the checks by whose they are."""

    stated: list[int]
    rules: list[int] = field(default_factory=list)
    model: list[int] = field(default_factory=list)

    @classmethod
    def split(cls, n_trusted: int, n_checks: int, rules: int = 0) -> Tiers:
        """Checks 0..n_trusted-1 stated, the next ``rules`` rule checks, the rest the model's."""
        return cls(list(range(n_trusted)), list(range(n_trusted, n_trusted + rules)),
                   list(range(n_trusted + rules, n_checks)))


@dataclass
class Ranking:
    """The verdict over a pool of candidates for one set of checks."""

    best: Candidate
    trusted: list[int]  # indices of the stated checks
    kept: list[int]  # indices of the model's tests that stand
    dropped: list[int]  # indices of the model's tests most candidates failed
    scores: dict[int, tuple[int, ...]]  # candidate index -> its sort key
    rules: list[int] = field(default_factory=list)  # indices of the rule checks

    @property
    def standing(self) -> list[int]:
        return self.trusted + self.rules + self.kept

    @property
    def satisfied(self) -> bool:
        """The best candidate runs, defines what the task names, passes every stated and rule check, raises on none that stands."""
        b = self.best
        return (b.ran and not b.missing and len(b.passed(self.trusted)) == len(self.trusted) and len(b.passed(self.rules)) == len(self.rules)
                and not b.raised(self.standing))

    @property
    def decided(self) -> bool:
        """The evidence decides: there is some, and the best candidate passes all of it."""
        return bool(self.standing) and self.satisfied and len(self.best.passed(self.kept)) == len(self.kept)

    def decided_by(self, evidence: str) -> bool:
        """``decided`` ("all"), or decided by the task's own checks and rule checks alone
        ("task": the best passes them, the model's other tests only rank; where the task
        states none and the model wrote no rule check, as "all")."""
        if evidence == "task" and (self.trusted or self.rules):
            return self.satisfied
        return self.decided


def dropped_checks(pool: list[Candidate], model: list[int], min_voters: int = 2) -> list[int]:
    """Model tests that more of the candidates that ran fail than pass (with at least
    ``min_voters`` of them: one candidate cannot tell a wrong test from wrong code)."""
    voters = [c for c in pool if c.ran]
    if len(voters) < min_voters:
        return []
    passes = Counter(i for c in voters for i in c.passed(model))
    return [i for i in model if passes[i] * 2 < len(voters)]


def behaviour(c: Candidate) -> tuple[str, ...]:
    """What a candidate did on every check's and probe's call: the value it returned
    (whatever the check expected, so even a dropped test's inputs tell programs apart),
    else the error."""
    return tuple(o.actual if o.actual is not None else ("ok" if o.ok else o.error.split(":")[0])
                 for o in sorted(c.outcomes or [], key=lambda o: o.index))


def rank(pool: list[Candidate], n_trusted: int | None = None, n_checks: int | None = None, min_voters: int = 2,
         tiers: Tiers | None = None) -> Ranking:
    """Order ``pool`` by ``tiers`` (or: checks 0..n_trusted-1 stated, the rest up to
    n_checks the model's) and pick the best."""
    if not pool:
        raise ValueError("no candidates to rank")
    if tiers is None:
        tiers = Tiers.split(n_trusted or 0, n_checks or 0)
    trusted, rules = tiers.stated, tiers.rules
    dropped = dropped_checks(pool, tiers.model, min_voters)
    kept = [i for i in tiers.model if i not in dropped]

    def signature(c: Candidate) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        return frozenset(c.passed(trusted)), frozenset(c.passed(rules)), frozenset(c.passed(kept))

    consensus = Counter(signature(c) for c in pool if c.ran)
    alike = Counter(behaviour(c) for c in pool if c.ran)
    scores: dict[int, tuple[int, ...]] = {}
    for c in pool:
        if not c.ran:
            scores[c.index] = (0, 0, 0, 0, 0, 0, 0, -c.index)
            continue
        agree = consensus[signature(c)] * len(c.passed(kept))
        clean = int(not c.raised(trusted + rules + kept))
        scores[c.index] = (1, -len(c.missing), len(c.passed(trusted)), len(c.passed(rules)), agree, alike[behaviour(c)],
                           clean, -c.index)
    best = max(pool, key=lambda c: scores[c.index])
    return Ranking(best=best, trusted=trusted, kept=kept, dropped=dropped, scores=scores, rules=rules)
