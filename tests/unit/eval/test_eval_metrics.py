"""Metric functions: hand-worked pass@k / avg@k / IFEval accuracies / win rates, and an exact
rational oracle for pass@k on many random (n, c, k)."""

from __future__ import annotations

import random
from fractions import Fraction
from math import comb

import pytest

from mgs.eval.metrics import (
    avg_at_k,
    default_ks,
    ifeval_accuracies,
    mean,
    mean_pass_at_k,
    pairwise_outcome,
    pass_at_k,
    win_rate,
)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        # n = 5 samples, c = 2 correct, so n - c = 3 wrong: pass@k = 1 - C(3, k) / C(5, k)
        (1, 1 - 3 / 5),  # C(3,1) = 3, C(5,1) = 5   -> 0.4
        (2, 1 - 3 / 10),  # C(3,2) = 3, C(5,2) = 10 -> 0.7
        (3, 1 - 1 / 10),  # C(3,3) = 1, C(5,3) = 10 -> 0.9
        (4, 1.0),  # C(3,4) = 0: any 4 of 5 samples include a correct one
        (5, 1.0),
    ],
)
def test_pass_at_k_n5_c2_by_hand(k, expected):
    assert pass_at_k(5, 2, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 0, 5) == 0.0  # nothing correct
    assert pass_at_k(5, 5, 1) == 1.0 and pass_at_k(5, 5, 5) == 1.0  # everything correct
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # pass@1 is the fraction correct
    with pytest.raises(ValueError, match="at least k=6 samples"):
        pass_at_k(5, 2, 6)  # n < k
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)  # c > n
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 0)


def test_pass_at_k_matches_exact_binomials_on_random_inputs():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 200)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-9)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    # C(2000, 1000) ~ 1e600 does not fit in a float; the product form never builds it.
    exact = 1 - Fraction(comb(1990, 1000), comb(2000, 1000))
    assert pass_at_k(2000, 10, 1000) == pytest.approx(float(exact), abs=1e-12)


def test_mean_pass_at_k_averages_problems():
    # problem 1: n=5, c=2 -> pass@2 = 0.7; problem 2: n=5, c=0 -> 0; problem 3: c=5 -> 1
    assert mean_pass_at_k([(5, 2), (5, 0), (5, 5)], 2) == pytest.approx((0.7 + 0 + 1) / 3)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)


def test_avg_at_k_by_hand():
    # problem means 2/4, 0/4, 4/4 -> (0.5 + 0 + 1) / 3 = 0.5
    assert avg_at_k([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]) == pytest.approx(0.5)
    assert avg_at_k([[1], [0], [0], [1]]) == 0.5  # k = 1: plain accuracy
    # avg@k equals the unbiased pass@1 averaged over problems
    rows = [[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]]
    counts = [(len(r), sum(r)) for r in rows]
    assert avg_at_k(rows) == pytest.approx(mean_pass_at_k(counts, 1))
    with pytest.raises(ValueError):
        avg_at_k([[1, 0], []])


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(5) == [1, 2, 4, 5]
    assert default_ks(8) == [1, 2, 4, 8]
    assert default_ks(16) == [1, 2, 4, 8, 16]


def test_ifeval_accuracies_by_hand():
    # three responses with 2, 1 and 3 instructions
    strict = [[True, False], [True], [False, False, True]]
    loose = [[True, True], [True], [False, True, True]]
    out = ifeval_accuracies(strict, loose)
    assert out["prompt_level_strict_acc"] == pytest.approx(1 / 3)  # only response 2 follows all
    assert out["inst_level_strict_acc"] == pytest.approx(3 / 6)  # 1 + 1 + 1 of 2 + 1 + 3
    assert out["prompt_level_loose_acc"] == pytest.approx(2 / 3)  # responses 1 and 2
    assert out["inst_level_loose_acc"] == pytest.approx(5 / 6)  # 2 + 1 + 2 of 6
    with pytest.raises(ValueError):
        ifeval_accuracies([[True]], [])
    with pytest.raises(ValueError):
        ifeval_accuracies([[]], [[]])


def test_win_rate_counts_ties_half():
    ours = [2.0, 2.0, 3.0, 0.0, 5.0]
    refs = [0.0, 2.0, 4.0, 0.0, 1.0]
    # win, tie, loss, tie, win -> (1 + 0.5 + 0 + 0.5 + 1) / 5 = 0.6
    assert win_rate(ours, refs) == pytest.approx(0.6)
    # a margin of 1.0 makes the 3.0 vs 4.0 loss a tie (a gap of exactly the margin is a tie);
    # the 2.0 vs 0.0 win stays a win: (1 + .5 + .5 + .5 + 1) / 5
    assert win_rate(ours, refs, tie_margin=1.0) == pytest.approx(0.7)
    assert pairwise_outcome(0.2, 0.1) == 1.0 and pairwise_outcome(0.1, 0.2) == 0.0
    assert pairwise_outcome(0.1, 0.1) == 0.5
    with pytest.raises(ValueError):
        win_rate([1.0], [])
    with pytest.raises(ValueError):
        pairwise_outcome(1.0, 0.0, tie_margin=-1)


def test_mean_refuses_no_values():
    assert mean([1.0, 2.0]) == 1.5
    with pytest.raises(ValueError):
        mean([])
