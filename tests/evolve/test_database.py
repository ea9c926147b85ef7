"""The islands database: clusters by score signature, versions drawn from distinct
clusters in ascending score, shorter programs preferred, migration (reset and ring); and
the evolved function cut out of answers and put back into the seed's skeleton."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.router.evolution.database import IslandDatabase, signature_key, softmax_choice
from services.router.evolution.program import (
    NoFunction,
    assemble,
    evolved_from_answer,
    split_program,
)
from shared.contracts import EvolveDatabase, EvolveProgram


def prog(pid: str, score: float, signature: list[float] | None = None, code: str = "def f():\n    pass\n",
         sample: int = 1) -> EvolveProgram:
    return EvolveProgram(run_id="r", program_id=pid, score=score, signature=signature or [score], function=code,
                         sample=sample, verdict="ok")


def database(islands: int = 1, **cfg) -> IslandDatabase:
    return IslandDatabase.empty("r", EvolveDatabase(islands=islands, **cfg), {})


def add(db: IslandDatabase, p: EvolveProgram, island: int = 0) -> bool:
    db.programs[p.program_id] = p
    return db.register(p, island, p.sample)


def test_programs_with_one_signature_share_a_cluster_and_a_better_one_is_the_best() -> None:
    db = database()
    assert add(db, prog("seed", -10.0, [-10, -10], sample=0))
    assert not add(db, prog("a", -10.0, [-10, -10]))  # same behaviour: same cluster
    assert not add(db, prog("b", -10.0, [-9, -11]))  # same mean, other behaviour: its own cluster
    assert add(db, prog("c", -9.0, [-9, -9], sample=3))
    isl = db.islands[0]
    assert isl.clusters == {"-10,-10": ["seed", "a"], "-9,-11": ["b"], "-9,-9": ["c"]}
    assert isl.best_id == "c" and isl.curve == [(0, -10.0), (3, -9.0)]
    assert signature_key(prog("x", 1.5)) == "1.5"


def test_versions_come_from_distinct_clusters_in_ascending_score() -> None:
    db = database(programs_per_prompt=2)
    for pid, score in [("seed", 1.0), ("a", 2.0), ("b", 3.0)]:
        add(db, prog(pid, score))
    rng = random.Random(0)
    for _ in range(50):
        versions = db.choose_versions(0, rng)
        assert len(versions) == 2 and versions[0].score < versions[1].score  # type: ignore[operator]
    # The best cluster is in nearly every prompt at the start temperature (0.1 over scores normalised to 0..1).
    seen = Counter(p.program_id for _ in range(200) for p in db.choose_versions(0, rng))
    assert seen["b"] >= 190 and seen["a"] > seen["seed"]


def test_a_lone_program_makes_a_one_version_prompt() -> None:
    db = database(programs_per_prompt=3)
    add(db, prog("seed", 1.0))
    assert [p.program_id for p in db.choose_versions(0, random.Random(1))] == ["seed"]


def test_inside_a_cluster_shorter_programs_are_likelier() -> None:
    db = database(programs_per_prompt=1)
    add(db, prog("short", 1.0, [1.0], code="def f():\n    return 1\n"))
    add(db, prog("long", 1.0, [1.0], code="def f():\n" + "    x = 1\n" * 200 + "    return x\n"))
    rng = random.Random(2)
    picks = Counter(db.choose_versions(0, rng)[0].program_id for _ in range(400))
    assert picks["short"] > picks["long"] > 0


def test_softmax_choice_is_argmax_at_zero_temperature() -> None:
    assert softmax_choice([0.1, 0.9, 0.5], 0.0, random.Random(0)) == 1


def test_reset_restarts_the_weaker_half_from_a_stronger_island() -> None:
    db = database(islands=4, migration="reset")
    for i, score in enumerate([1.0, 5.0, 2.0, 7.0]):
        add(db, prog(f"p{i}", score, sample=i + 1), island=i)
    add(db, prog("extra", 0.5, sample=9), island=0)
    changed = db.migrate(100, random.Random(3))
    assert sorted(changed) == [0, 2]
    for i in (0, 2):
        isl = db.islands[i]
        assert isl.epoch == 1 and isl.founder in ("p1", "p3")
        assert db.members(i) == [isl.founder] and isl.best_score in (5.0, 7.0)
        assert isl.curve[-1][0] == 100
    assert db.members(1) == ["p1"] and db.members(3) == ["p3"]  # the stronger half is untouched


def test_ring_migration_copies_each_best_into_the_next_island() -> None:
    db = database(islands=3, migration="ring")
    for i, score in enumerate([1.0, 2.0, 3.0]):
        add(db, prog(f"p{i}", score, sample=i + 1), island=i)
    assert sorted(db.migrate(10, random.Random(0))) == [0, 1, 2]
    assert sorted(db.members(0)) == ["p0", "p2"] and db.islands[0].best_id == "p2"
    assert sorted(db.members(1)) == ["p0", "p1"] and db.islands[1].best_id == "p1"
    assert database(islands=3, migration="none").migrate(10, random.Random(0)) == []


SEED = '''import numpy as np

CAP = 100


def priority(item: float, bins: np.ndarray) -> np.ndarray:
    """Docstring."""
    return -(bins - item)
'''


def test_the_evolved_function_is_cut_out_renamed_and_put_back() -> None:
    split = split_program(SEED, "priority")
    assert "def priority" not in split.skeleton and "CAP = 100" in split.skeleton
    answer = '''import math
import numpy as np

def helper(r):
    return r * r

def priority_v1(item, bins):
    return bins

def priority_v2(item: float, bins: np.ndarray) -> np.ndarray:
    # tighter fits first
    return -helper(bins - item) + priority_v2.__name__.count("x")

print(priority_v2(1, np.ones(3)))
'''
    evolved = evolved_from_answer(answer, "priority", 2)
    assert "def priority(item: float" in evolved and "priority.__name__" in evolved
    assert "def helper" in evolved and "import math" in evolved and "# tighter fits first" in evolved
    assert "priority_v1" not in evolved and "print(" not in evolved
    code = assemble(split.skeleton, evolved)
    compile(code, "candidate.py", "exec")
    assert code.startswith("import numpy as np")
    # A bare name or another version number is accepted when the asked one is missing.
    assert "def priority(" in evolved_from_answer("def priority(item, bins):\n    return bins\n", "priority", 2)
    assert "def priority(" in evolved_from_answer("def priority_v5(item, bins):\n    return bins\n", "priority", 2)
    with pytest.raises(NoFunction, match="defines no function priority_v2"):
        evolved_from_answer("def other(item, bins):\n    return bins\n", "priority", 2)
    with pytest.raises(NoFunction, match="SyntaxError"):
        evolved_from_answer("def priority_v2(item, bins)\n    return bins\n", "priority", 2)
