"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.evaluation import metrics


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 2), (10, 3, 1), (10, 3, 5), (20, 1, 10), (7, 0, 3), (4, 4, 2)])
def test_pass_at_k_matches_the_combinatorial_definition(n: int, c: int, k: int) -> None:
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_known_values() -> None:
    assert metrics.pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert metrics.pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the fraction correct
    assert metrics.pass_at_k(3, 2, 2) == 1.0  # fewer than k failures: every k-subset has a pass
    assert metrics.mean_pass_at_k([(1, 1), (1, 0), (1, 0), (1, 1)], 1) == pytest.approx(0.5)


def test_pass_at_k_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError):
        metrics.pass_at_k(2, 1, 5)
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 4, 1)


@pytest.mark.parametrize(("text", "want"), [
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),
    ("#### 1,234", "1234"),
    ("So the total is 5 apples. The answer is $18.00.", "18"),
    ("The answer is: -3", "-3"),
    ("Therefore \\boxed{42} is it", "42"),
    ("first 3 then 4, finally 0.50", "0.5"),
    ("no digits here", None),
])
def test_final_number_extraction(text: str, want: str | None) -> None:
    assert metrics.extract_final_number(text) == want


def test_qa_exact_match_uses_the_final_numbers() -> None:
    gold = "Janet sells 16 - 3 - 4 = 9 duck eggs.\n#### 18"
    assert metrics.qa_exact_match("... so she makes $18 a day. The answer is 18.", gold)
    assert metrics.qa_exact_match("The answer is 18.0", "18")
    assert not metrics.qa_exact_match("The answer is 17.", gold)
    assert not metrics.qa_exact_match("I don't know", gold)


def test_choose_raw_and_length_normalised() -> None:
    lls = [-4.0, -6.0, -3.0]
    assert metrics.choose(lls) == 2
    # per character: -4/2 = -2, -6/12 = -0.5, -3/1 = -3 -> the long answer wins
    assert metrics.choose(lls, [2, 12, 1]) == 1


def test_chunk_nll_and_perplexity_by_hand() -> None:
    # 4 tokens, vocab 3. n_ctx = 4: scored positions are 2 only (predicting token 3).
    logits = np.array([[0.0, 0.0, 0.0]] * 2 + [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    tokens = [0, 1, 2, 1]
    assert list(metrics.scored_positions(4)) == [2]
    nll = metrics.chunk_nll(logits, tokens)
    # -log softmax([1,2,3])[1] = log(e^1 + e^2 + e^3) - 2
    want = math.log(math.e + math.e**2 + math.e**3) - 2.0
    assert nll.tolist() == pytest.approx([want])
    assert metrics.perplexity([want, 0.0]) == pytest.approx(math.exp(want / 2))


def test_chunk_spans_are_non_overlapping_and_drop_the_tail() -> None:
    assert metrics.chunk_spans(10, 4) == [(0, 4), (4, 8)]
    assert metrics.chunk_spans(10, 4, limit=1) == [(0, 4)]
    assert metrics.chunk_spans(3, 4) == []


def test_kl_divergence_and_same_top_by_hand() -> None:
    ref = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])  # p = (1/4, 3/4), (1/2, 1/2)
    same = np.array([[0.0, math.log(3.0)], [0.0, 0.0]])
    kl, top = metrics.kl_and_top(ref, same)
    assert kl.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert top.tolist() == [True, True]
    other = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # q = (1/2, 1/2), (3/4, 1/4)
    kl, top = metrics.kl_and_top(ref, other)
    k0 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    k1 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl.tolist() == pytest.approx([k0, k1])
    assert top.tolist() == [False, True]  # argmax(ref row 1) is 0 on a tie, like q's
    s = metrics.kld_summary(kl, top)
    assert s["kld_mean"] == pytest.approx((k0 + k1) / 2)
    assert s["same_top"] == pytest.approx(0.5)
