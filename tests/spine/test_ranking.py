"""The coder's checks and ranking on their own: trusted examples read from a task's text,
contradictory model tests, the per-check harness, CodeT dual agreement and dropped tests."""

from __future__ import annotations

import subprocess
import sys

from services.coder_agent.checks import (
    CheckOutcome,
    asserted_value,
    consistent_checks,
    harness,
    read_outcomes,
)
from services.coder_agent.model_tests import parse_model_tests
from services.coder_agent.ranking import Candidate, Tiers, dropped_checks, rank
from services.coder_agent.report import Provenance, summary_sentence
from services.coder_agent.trusted import (
    assert_checks,
    prose_checks,
    task_function_names,
    text_checks,
    trusted_checks,
)


def cand(index: int, passes: list[bool] | None, raised: tuple[int, ...] = ()) -> Candidate:
    """A candidate with the given check outcomes (None: it never reached the checks)."""
    outcomes = None if passes is None else [
        CheckOutcome(i, ok, None, "TypeError: x" if i in raised else ("" if ok else "AssertionError"))
        for i, ok in enumerate(passes)]
    return Candidate(index=index, origin="greedy" if index == 1 else "sampled", code="", answer="", outcomes=outcomes)


def test_dual_agreement_prefers_the_larger_consensus_set() -> None:
    # All checks are the model's.
    pool = [cand(1, [True, True, True]), cand(2, [True, True, False]), cand(3, [True, True, False]),
            cand(4, [True, True, True]), cand(5, [True, True, False])]
    r = rank(pool, n_trusted=0, n_checks=3)
    assert r.dropped == [2] and r.kept == [0, 1]
    # Check 2 is dropped (3 of 5 fail it): then all five agree on {0, 1}, and the tie goes to
    # the larger set of candidates that behave alike (2, 3, 5 also fail check 2 alike).
    assert r.best.index == 2
    # No test dropped (checks 2 and 3 pass in 3 of 6): {0,1,2,3} x 2 = 8 beats {0,1} x 3 = 6.
    a, b, c = [True] * 4, [True, True, False, False], [False, False, True, True]
    pool = [cand(1, b), cand(2, a), cand(3, a), cand(4, b), cand(5, b), cand(6, c)]
    r = rank(pool, n_trusted=0, n_checks=4)
    assert r.dropped == [] and r.best.index == 2


def test_inputs_of_a_dropped_test_still_tell_candidates_apart() -> None:
    # fizzbuzz: every candidate passes check 0; the model got check 1's expected value wrong
    # (all fail it, so it is dropped), but on its input two candidates return the same value.
    def fb(index: int, last: str) -> Candidate:
        c = cand(index, [True, False])
        assert c.outcomes is not None
        c.outcomes[1].actual = f"[..., {last!r}]"
        return c

    r = rank([fb(1, "Fizz"), fb(2, "FizzBuzz"), fb(3, "15"), fb(4, "FizzBuzz")], n_trusted=0, n_checks=2)
    assert r.dropped == [1] and r.best.index == 2


def test_trusted_checks_come_before_agreement_and_broken_code_last() -> None:
    pool = [cand(1, None), cand(2, [False, True, True]), cand(3, [False, True, True]), cand(4, [True, False, False])]
    r = rank(pool, n_trusted=1, n_checks=3)
    assert r.best.index == 4 and r.satisfied
    assert r.scores[1] < min(r.scores[2], r.scores[3], r.scores[4])


def test_a_candidate_that_raises_on_a_standing_check_is_not_clean() -> None:
    r = rank([cand(1, [True, False], raised=(1,))], n_trusted=1, n_checks=2)
    assert r.dropped == [] and not r.satisfied  # one candidate cannot drop a test


def test_dropping_needs_two_voters_and_a_majority() -> None:
    assert dropped_checks([cand(1, [False])], [0]) == []
    assert dropped_checks([cand(1, [False]), cand(2, [True])], [0]) == []
    assert dropped_checks([cand(1, [False]), cand(2, [False]), cand(3, [True])], [0]) == [0]
    assert dropped_checks([cand(1, [False]), cand(2, None)], [0]) == []  # a crash is no voter


def test_summary_sentence_says_what_passed_whose_checks_and_how_many_were_tried() -> None:
    pool = [cand(1, [True, True, True, False]), cand(2, [True, True, False, True])]
    r = rank(pool, n_trusted=2, n_checks=4)
    assert summary_sentence(r, 2, Provenance(stated=2, tests_asked=True)) == (
        "It passes both checks from the task and passes 1 of the 2 tests the model wrote itself; "
        "chosen from 2 candidates (candidate 1, greedy).")
    r = rank([cand(1, [])], n_trusted=0, n_checks=0)
    assert summary_sentence(r, 1, Provenance(stated=0)) == (
        "Unverified by the task: it states no example to check the code against, so the code only runs "
        "(no tests were written); chosen from 1 candidate (candidate 1, greedy).")
    # Checks a caller added (a conversation's earlier ones), rule checks, and a renamed function.
    c = cand(1, [True, False, True, True])
    c.missing = ["remove_odd"]
    r = rank([c], tiers=Tiers([0, 1], [2], [3]))
    assert summary_sentence(r, 1, Provenance(stated=1, extra=1)) == (
        "It does not define `remove_odd`, the name the task's checks call (a renamed function fails them). "
        "It passes the only check from the task and fails the only check kept from earlier in the conversation "
        "and passes the only check the model wrote from the task's rules and passes the only test the model "
        "wrote itself; chosen from 1 candidate (candidate 1, greedy).")
    assert not r.satisfied


def test_rule_checks_are_never_dropped_and_outrank_agreement() -> None:
    # fizzbuzz: three candidates share a mistake (never 'FizzBuzz') and agree on the
    # model's tests; one is right. The rule check, failed by most, still decides.
    wrong, right = [True, False, True, True], [True, True, False, False]
    pool = [cand(1, wrong), cand(2, wrong), cand(3, right), cand(4, wrong)]
    r = rank(pool, tiers=Tiers([0], [1], [2, 3]))
    assert r.rules == [1] and r.dropped == [] and r.best.index == 3
    assert not r.decided  # it fails model tests that stand: the evidence does not decide yet
    r = rank(pool, tiers=Tiers([0], [], [1, 2, 3]))  # as a plain model test it would be dropped
    assert r.dropped == [1] and r.best.index == 1


def test_contradictory_model_tests_are_discarded() -> None:
    model = ['assert p("x") == True', 'assert p("x") == False', 'assert not p("y")', 'assert p("z")',
             "assert q(1) == 2", "assert q(2) == 5", "assert q(3) == 3"]
    trusted = ["assert q(1) == 2", "assert q(3) == 4"]
    kept, discarded = consistent_checks(model, trusted)
    assert kept == ['assert not p("y")', 'assert p("z")', "assert q(2) == 5"]
    assert discarded == ['assert p("x") == True', 'assert p("x") == False', "assert q(3) == 3"]
    assert asserted_value("assert 5 == f(2)") == ("f(2)", "int:5")
    assert asserted_value("assert f(2) == 1.0") != asserted_value("assert f(2) == 1")


def test_examples_in_prose_become_checks_and_prose_that_is_no_example_does_not() -> None:
    text = '''def tri(n):
    """tri(1) = 3
    tri(n) = 1 + n / 2, if n is even.
    tri(2) = 1 + (2 / 2) = 2
    Examples:
    tri(3) = [1, 3, 2, 8]
    for tri(0) == [1]
    tri(5) should return [1, 3, 2, 8, 3, 15].
    other(1) => 2
    other(2) is 3
    """'''
    assert task_function_names(text) == ["tri"]
    # A strong separator makes an example of any function; "is" only of the task's own.
    assert prose_checks(text) == ["assert tri(1) == 3", "assert tri(3) == [1, 3, 2, 8]", "assert tri(0) == [1]",
                                  "assert tri(5) == [1, 3, 2, 8, 3, 15]", "assert other(1) == 2"]
    task = "Write a Python function fizzbuzz(n) returning a list; fizzbuzz(3) returns ['1', '2', 'Fizz'].\nassert fizzbuzz(1) == ['1']"
    assert text_checks(task) == ["assert fizzbuzz(1) == ['1']", "assert fizzbuzz(3) == ['1', '2', 'Fizz']"]


def test_every_stated_assert_is_a_check_wherever_it_stands() -> None:
    task = ("Write a function to remove odd numbers from a given list.\n"
            "For example: assert remove_odd([1,2,3]) == [2], and `assert remove_odd([]) == []`.\n"
            "```python\nassert remove_odd([4, 5]) == [4]\n```\n"
            "def check(xs):\n    assert xs == sorted(xs)\n    assert isinstance(xs, list)\n"
            "Also remove_even([1, 2]) -> [1]; sum_odd([1, 3]) is 4.")
    assert assert_checks(task) == ["assert remove_odd([1,2,3]) == [2]", "assert remove_odd([]) == []",
                                   "assert remove_odd([4, 5]) == [4]"]
    assert prose_checks(task) == ["assert remove_even([1, 2]) == [1]"]  # "is" only for a function the task names
    t = trusted_checks(task, [])
    assert t.required_names() == ["remove_odd", "remove_even"] and t.stated == 4
    # A stub's example under another name is of the stub, unless the task names that function too.
    stub = 'def grade(xs):\n    """Letter grades.\n    grade_equation([4.0]) ==> "A+"\n    """\n'
    assert text_checks(stub) == ["assert grade([4.0]) == 'A+'"]
    assert text_checks('def helper(x):\n    """main(2) -> 3"""\n') == ["assert helper(2) == 3"]
    assert text_checks('Write main(x).\ndef helper(x):\n    """main(2) -> 3"""\n') == ["assert main(2) == 3"]
    t = trusted_checks("Write add(a, b).", [], extra=["assert add(1, 1) == 2", ""])
    assert t.checks == ["assert add(1, 1) == 2"] and t.stated == 0 and t.extra == 1


def test_rule_checks_quote_the_task_and_expect_values_it_states() -> None:
    task = ("Write fizzbuzz(n): a list of strings for 1 to n: 'Fizz' for multiples of 3, 'Buzz' for multiples "
            "of 5, 'FizzBuzz' for multiples of both, the number itself otherwise.")
    block = ("# 'FizzBuzz' for multiples of both\nassert fizzbuzz(15)[-1] == 'FizzBuzz'\n"
             "assert fizzbuzz(3) == ['1', '2', 'Fizz']  # 'Fizz' for multiples of 3\n"
             "# the number itself otherwise\nassert fizzbuzz(2) == ['1', '2']\n"
             "# returns a greeting\nassert fizzbuzz(5)[-1] == 'Buzz'\n"
             "print(fizzbuzz(3))\nassert fizzbuzz(1) == ['1']")
    tests = parse_model_tests(block, task, ["fizzbuzz"])
    assert [(t.source, t.rule) for t in tests] == [
        ("assert fizzbuzz(15)[-1] == 'FizzBuzz'", True),
        ("assert fizzbuzz(3) == ['1', '2', 'Fizz']", False),  # '1' and '2' are worked out, not stated
        ("assert fizzbuzz(3)[2] == 'Fizz'", True),  # but its 'Fizz' item is (a numeral never is)
        ("assert fizzbuzz(2) == ['1', '2']", False),
        ("assert fizzbuzz(5)[-1] == 'Buzz'", False),  # the quote is not the task's
        ("assert fizzbuzz(1) == ['1']", False)]
    assert tests[1].quote == "'Fizz' for multiples of 3".strip("'")
    cut = parse_model_tests("# 'Buzz' for multiples of 5\nassert fizzbuzz(5)[-1] == 'Buzz'\nassert fizzbuzz(", task, ["fizzbuzz"])
    assert [(t.source, t.rule) for t in cut] == [("assert fizzbuzz(5)[-1] == 'Buzz'", True)]


def run_harness(code: str, checks: list[str], limit_s: float = 0.5) -> list[CheckOutcome] | None:
    proc = subprocess.run([sys.executable, "-c", code + "\n" + harness(checks, limit_s, ["import math"])],
                          capture_output=True, text=True, timeout=30)
    return read_outcomes(proc.stderr)


def test_harness_reports_each_check_with_its_value_error_or_timeout() -> None:
    code = "def f(x):\n    if x == 3:\n        while True: pass\n    return math.floor(x) * 2 if x else 1 // x\n"
    out = run_harness(code, ["assert f(2) == 4", "assert f(1) == 3", "assert f(0) == 0", "assert f(3) == 6", "assert f(4) == 8"])
    assert out is not None
    assert [(o.ok, o.actual) for o in out[:2]] == [(True, "4"), (False, "2")]
    assert out[2].error.startswith("ZeroDivisionError") and out[2].raised and not out[1].raised
    assert out[3].error.startswith("Timeout") and out[3].raised
    assert out[4].error.startswith("skipped") and not out[4].raised
    assert run_harness("raise SystemExit(3)", ["assert True"]) is None


def test_probes_vary_one_literal_argument_of_the_checks_calls() -> None:
    from services.coder_agent.probes import probe_calls

    checks = [f"assert fizzbuzz({i}) == []" for i in range(1, 11)] + ["assert other(3) == 3", "assert len(fizzbuzz(2)) == 2"]
    probes = probe_calls(checks, ["fizzbuzz"])
    assert probes[0] == "fizzbuzz(21)" and "fizzbuzz(15)" in probes and len(probes) == 8
    assert not any(p.startswith("other") for p in probes)
    assert not set(probes) & {f"fizzbuzz({i})" for i in range(1, 11)}
    assert probe_calls(['assert f("ab", [1, 2]) == 0'], ["f"], limit=20) == [
        "f('ba', [1, 2])", "f('', [1, 2])", "f('AB', [1, 2])", "f('aba', [1, 2])",
        "f('ab', [2, 1])", "f('ab', [1])", "f('ab', [1, 2, 1])", "f('ab', [])"]


def test_probes_report_values_in_a_canonical_form() -> None:
    code = "def f(x):\n    return {'b': {3, 1}, 'a': 0.1 + 0.2} if x else 1 // x\n"
    proc = subprocess.run([sys.executable, "-c", code + "\n" + harness(["assert f(1) == 0"], 1.0, probes=["f(2)", "f(0)"])],
                          capture_output=True, text=True, timeout=30)
    out = read_outcomes(proc.stderr)
    assert out is not None and [o.index for o in out] == [0, 1, 2]
    assert not out[0].ok and out[1].ok and out[1].actual == "{'a': 0.3, 'b': {1, 3}}"
    assert out[2].error.startswith("ZeroDivisionError")
    assert proc.returncode == 1  # the check failed
    clean = subprocess.run([sys.executable, "-c", code + "\n" + harness(["assert f(1) != 0"], 1.0, probes=["f(0)"])],
                           capture_output=True, text=True, timeout=30)
    assert clean.returncode == 0  # a probe that raises never fails a run
