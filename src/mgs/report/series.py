"""Curves and run statistics as arrays and numbers (pure functions, no plotting)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mgs.report.rundir import Run


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` logged steps, ignoring NaN.

    ``out[i] = nanmean(values[i - window + 1 : i + 1])``; NaN where that window holds no finite
    value. ``window <= 1`` returns the values unchanged.
    """
    values = np.asarray(values, dtype=np.float64)  # [S]
    if window <= 1 or values.size == 0:
        return values.copy()
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])  # [S + 1]
    counts = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    n = counts[idx] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[idx] - sums[lo]) / np.maximum(n, 1), np.nan)


def curve(run: Run, key: str, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one metric, smoothed, keeping only the finite points."""
    values = smooth(run.metrics.get(key), window)
    keep = np.isfinite(values)
    return run.metrics.steps[keep], values[keep]


def finite_mean(values: np.ndarray) -> float:
    """Mean of the finite entries (NaN when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, sample std (ddof 1; NaN for one value), n)`` of the finite values."""
    arr = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std, int(arr.size)


def surgery_time_share(run: Run) -> float:
    """Share of the step time spent in the surgery (``sum time/surgery / sum time/step``)."""
    surgery, step = run.metrics.get("time/surgery"), run.metrics.get("time/step")
    both = np.isfinite(surgery) & np.isfinite(step)
    total = float(step[both].sum())
    return float(surgery[both].sum()) / total if total > 0 else math.nan


def has_surgery(run: Run) -> bool:
    """Whether the run logged per-domain gradient telemetry (not: mixed without tracking)."""
    return run.metrics.has("surgery/conflict_frac") or bool(run.pairs())


def union(lists: Sequence[Sequence[str]]) -> list[str]:
    """Union of names, keeping first-seen order."""
    return list(dict.fromkeys(name for names in lists for name in names))


def strategy_groups(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by strategy, in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.strategy, []).append(run)
    return groups
