"""Benchmark metrics as pure functions of per-sample scores (no model, no I/O).

- :func:`pass_at_k`: the unbiased pass@k estimator of Chen et al. 2021 (Codex),
  ``1 - C(n-c, k) / C(n, k)`` for one problem with ``c`` correct out of ``n`` samples, computed as
  the product ``prod_{i=n-c+1}^{n} (1 - k/i)`` so that no binomial coefficient overflows;
- :func:`avg_at_k`: mean correctness over the ``k`` samples of each problem, averaged over problems;
- :func:`ifeval_accuracies`: IFEval's prompt-level and instruction-level accuracies;
- :func:`win_rate`: pairwise wins against a reference, ties counting half;
- :func:`default_ks`: which k a run with ``n`` samples reports.

Everything returns plain floats in [0, 1] (or a mean of the given values); the aggregates in an
evaluation's JSON are these functions applied to its per-sample records.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "avg_at_k",
    "default_ks",
    "ifeval_accuracies",
    "mean",
    "mean_pass_at_k",
    "pairwise_outcome",
    "pass_at_k",
    "win_rate",
]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement from ``n`` samples
    (``c`` of them correct) is correct: ``1 - C(n-c, k) / C(n, k)``.

    Needs ``0 <= c <= n`` and ``1 <= k <= n`` (a ValueError otherwise: pass@k is undefined with
    fewer samples than k).
    """
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least k={k} samples per problem, got n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems; ``counts[p] = (n, c)`` of problem p."""
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def avg_at_k(correct: Sequence[Sequence[float]]) -> float:
    """``correct[p]`` holds the scores (1/0, or any value) of problem p's samples: the mean over
    problems of each problem's mean score. With one sample per problem it is plain accuracy."""
    if not correct or any(len(row) == 0 for row in correct):
        raise ValueError("avg_at_k needs at least one problem and one sample per problem")
    return sum(sum(row) / len(row) for row in correct) / len(correct)


def default_ks(n: int) -> list[int]:
    """The k reported for ``n`` samples per problem: powers of two below ``n``, and ``n`` itself."""
    if n < 1:
        raise ValueError(f"default_ks needs n >= 1, got {n}")
    ks = []
    k = 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


def ifeval_accuracies(
    strict: Sequence[Sequence[bool]], loose: Sequence[Sequence[bool]]
) -> dict[str, float]:
    """IFEval's four accuracies over responses; ``strict[r][i]``: response r followed its prompt's
    instruction i (strict check), likewise ``loose``.

    prompt level: the fraction of responses that follow *every* instruction of their prompt;
    instruction level: the fraction of all (response, instruction) pairs followed, pooled over
    responses (a prompt with 3 instructions weighs 3 times one with 1).
    """
    if len(strict) != len(loose) or not strict:
        raise ValueError("ifeval_accuracies needs as many strict as loose rows, at least one")
    out: dict[str, float] = {}
    for variant, rows in (("strict", strict), ("loose", loose)):
        if any(len(r) == 0 for r in rows):
            raise ValueError("every IFEval response must have at least one instruction")
        out[f"prompt_level_{variant}_acc"] = sum(all(r) for r in rows) / len(rows)
        out[f"inst_level_{variant}_acc"] = sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    return out


def pairwise_outcome(ours: float, reference: float, tie_margin: float = 0.0) -> float:
    """1.0 when ``ours`` beats ``reference`` by more than ``tie_margin``, 0.0 when it loses by more,
    0.5 otherwise (a tie)."""
    if tie_margin < 0:
        raise ValueError(f"tie_margin must be >= 0, got {tie_margin}")
    diff = ours - reference
    if diff > tie_margin:
        return 1.0
    if diff < -tie_margin:
        return 0.0
    return 0.5


def win_rate(ours: Sequence[float], references: Sequence[float], tie_margin: float = 0.0) -> float:
    """Mean of :func:`pairwise_outcome` over paired scores: wins count 1, ties 1/2, losses 0."""
    if len(ours) != len(references) or not ours:
        raise ValueError("win_rate needs as many reference scores as ours, at least one")
    return sum(pairwise_outcome(o, r, tie_margin) for o, r in zip(ours, references)) / len(ours)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; a ValueError for no values (never a silent 0 or NaN)."""
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
