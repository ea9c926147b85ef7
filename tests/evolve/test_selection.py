"""The selection rule: elitism, duplicates by normalised code, a cap per score value, and
binary-tournament parents."""

from __future__ import annotations

import random

from services.router.evolution.selection import (
    normalized_hash,
    pick_parents,
    select_survivors,
    tournament,
)
from shared.contracts import EvolveProgram


def prog(pid: str, score: float | None, gen: int = 1, code: str | None = None) -> EvolveProgram:
    code = code if code is not None else f"def f():\n    return {pid!r}\n"
    return EvolveProgram(run_id="r", program_id=pid, generation=gen, code=code, code_hash=normalized_hash(code), score=score)


def ids(progs: list[EvolveProgram]) -> list[str]:
    return [p.program_id for p in progs]


def test_hash_ignores_comments_docstrings_and_layout_but_not_logic() -> None:
    a = "def f(x):\n    return x + 1\n"
    b = 'def f(x):\n    """Add one."""\n    # comment\n    return (x +   1)\n\n\n'
    c = "def f(x):\n    return x + 2\n"
    assert normalized_hash(a) == normalized_hash(b)
    assert normalized_hash(a) != normalized_hash(c)
    # Code that does not parse (missing colon) is compared by its tokens.
    assert normalized_hash("def f(x)\n    return x  # c\n") == normalized_hash("def f(x)\n  return x\n")
    assert normalized_hash("def f(x)\n    return x\n") != normalized_hash("def f(x)\n    return y\n")


def test_best_survives_and_order_is_by_score() -> None:
    pool = [prog("seed", 1.0, gen=0), prog("a", 3.0), prog("b", 2.0), prog("c", 5.0)]
    assert ids(select_survivors(pool, 2)) == ["c", "a"]
    assert ids(select_survivors(pool, 10)) == ["c", "a", "b", "seed"]


def test_unscored_programs_never_survive() -> None:
    pool = [prog("seed", 1.0, gen=0), prog("crash", None), prog("nan", float("nan"))]
    assert ids(select_survivors(pool, 4)) == ["seed"]
    assert select_survivors([prog("x", None)], 4) == []


def test_duplicate_code_keeps_the_oldest_copy() -> None:
    code = "def f():\n    return 2\n"
    older = prog("g1-c1", 2.0, gen=1, code=code)
    newer = prog("g2-c3", 2.0, gen=2, code="# same\n" + code)
    other = prog("g2-c1", 1.5, gen=2)
    assert ids(select_survivors([newer, other, older], 3)) == ["g1-c1", "g2-c1"]


def test_ties_keep_the_elite_until_strictly_beaten() -> None:
    seed = prog("seed", 4.0, gen=0)
    same = prog("g1-c1", 4.0, gen=1)
    assert ids(select_survivors([same, seed], 1)) == ["seed"]
    better = prog("g1-c2", 4.5, gen=1)
    assert ids(select_survivors([same, seed, better], 1)) == ["g1-c2"]


def test_a_score_plateau_takes_at_most_half_the_places_while_others_remain() -> None:
    plateau = [prog(f"p{i}", 10.0) for i in range(5)]
    lower = [prog("low1", 3.0), prog("low2", 2.0)]
    survivors = select_survivors(plateau + lower, 4)
    assert ids(survivors) == ["p0", "p1", "low1", "low2"]  # ceil(4/2) = 2 from the plateau
    # With nothing else left, the plateau fills the free places.
    assert ids(select_survivors(plateau, 4)) == ["p0", "p1", "p2", "p3"]


def test_tournament_prefers_the_higher_score_and_is_seeded() -> None:
    pop = [prog("a", 1.0), prog("b", 2.0), prog("c", 3.0)]
    wins = [tournament(pop, random.Random(i)).program_id for i in range(200)]
    assert wins.count("c") > wins.count("b") > wins.count("a") == 0  # the worst never wins a pair
    assert [tournament(pop, random.Random(5)).program_id for _ in range(3)] == \
           [tournament(pop, random.Random(5)).program_id for _ in range(3)]


def test_parents_come_with_the_best_other_program_as_inspiration() -> None:
    pop = [prog("a", 1.0), prog("b", 2.0), prog("c", 3.0)]
    for i in range(20):
        parent, insp = pick_parents(pop, random.Random(i))
        assert insp is not None and insp.program_id != parent.program_id
        assert insp.program_id == ("b" if parent.program_id == "c" else "c")
    only, none = pick_parents([prog("seed", 1.0, gen=0)], random.Random(0))
    assert only.program_id == "seed" and none is None
