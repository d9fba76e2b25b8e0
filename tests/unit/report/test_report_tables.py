"""Smoothing, statistics and the markdown tables, against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_runs import write_run

from mgs.report.rundir import load_run
from mgs.report.series import mean_std, smooth, surgery_time_share
from mgs.report.tables import (
    eval_table,
    paired_differences,
    paired_table,
    strategy_table,
    surgery_table,
)


def test_smooth_is_a_trailing_mean_that_ignores_nan():
    values = np.array([1.0, np.nan, 3.0, 5.0])
    np.testing.assert_allclose(smooth(values, 1), values, equal_nan=True)
    np.testing.assert_allclose(smooth(values, 2), [1.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(smooth(values, 3), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(smooth(np.array([np.nan, 2.0]), 2), [np.nan, 2.0], equal_nan=True)


def test_mean_std_uses_the_sample_std_of_finite_values():
    mean, std, n = mean_std([0.6, 0.8, math.nan])
    assert (mean, n) == (pytest.approx(0.7), 2) and std == pytest.approx(math.sqrt(0.02))
    mean, std, n = mean_std([0.5])
    assert mean == 0.5 and math.isnan(std) and n == 1


def _heldout(**domains):
    return {d: {"reward": r, "length": n, "n": 8} for d, (r, n) in domains.items()}


@pytest.fixture
def runs(tmp_path):
    before = _heldout(math=(0.5, 50.0), chat=(0.5, 40.0))
    rec = [{"step": 0, "reward/math/mean": 0.1, "reward/chat/mean": 0.1}]
    specs = [
        ("mgs-0", "mgs", 0, _heldout(math=(0.6, 30.0), chat=(0.4, 20.0)), before),
        ("mgs-1", "mgs", 1, _heldout(math=(0.8, 30.0), chat=(0.5, 20.0)), before),
        ("mixed-0", "mixed", 0, _heldout(math=(0.55, 30.0)), {}),
    ]
    return [
        load_run(
            write_run(
                tmp_path / name,
                strategy=s,
                seed=seed,
                records=rec,
                heldout_after=after,
                heldout_before=bef,
            )
        )
        for name, s, seed, after, bef in specs
    ]


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_eval_table_shows_after_and_change_per_domain(runs):
    table = eval_table(runs)
    assert table.splitlines()[0] == "| run | strategy | seed | math | chat | mean |"
    assert _rows(table) == [
        ["mgs-0", "mgs", "0", "0.600 (+0.100)", "0.400 (-0.100)", "0.500 (+0.000)"],
        ["mgs-1", "mgs", "1", "0.800 (+0.300)", "0.500 (+0.000)", "0.650 (+0.150)"],
        ["mixed-0", "mixed", "0", "0.550", "–", "0.550"],
    ]
    lengths = _rows(eval_table(runs, "length"))
    assert lengths[0][3:] == ["30.0 (-20.0)", "20.0 (-20.0)", "25.0 (-20.0)"]


def test_strategy_table_mean_and_std_over_seeds(runs):
    rows = _rows(strategy_table(runs))
    # math 0.6, 0.8 -> 0.7 ± 0.1414; chat 0.4, 0.5 -> 0.45 ± 0.0707; run means 0.5, 0.65
    assert rows[0] == ["mgs", "2", "0, 1", "0.700 ± 0.141", "0.450 ± 0.071", "0.575 ± 0.106"]
    assert rows[1] == ["mixed", "1", "0", "0.550", "–", "0.550"]
    change = _rows(strategy_table(runs, change=True))
    # math +0.1, +0.3 -> +0.2 ± 0.1414; chat -0.1, 0.0 -> -0.05 ± 0.0707
    assert change[0][3:] == ["+0.200 ± 0.141", "-0.050 ± 0.071", "+0.075 ± 0.106"]
    assert change[1][3:] == ["–", "–", "–"]


def test_tables_without_heldout_results_are_none(tmp_path):
    run = load_run(write_run(tmp_path / "r", records=[{"step": 0}]))
    assert eval_table([run]) is None and strategy_table([run]) is None


def test_surgery_table_averages_finite_steps(tmp_path):
    records = [
        {
            "step": 0,
            "surgery/conflict_frac": 0.2,
            "surgery/cos/a__b": 0.1,
            "surgery/projected_frac": 0.5,
            "surgery/num_groups": 7,
            "time/surgery": 0.1,
            "time/step": 1.0,
        },
        {
            "step": 1,
            "surgery/conflict_frac": "nan",
            "surgery/cos/a__b": -0.3,
            "surgery/projected_frac": 0.1,
            "surgery/num_groups": 7,
            "time/surgery": 0.1,
            "time/step": 1.0,
        },
        {
            "step": 2,
            "surgery/conflict_frac": 0.4,
            "surgery/cos/a__b": None,
            "surgery/projected_frac": 0.0,
            "surgery/num_groups": 7,
            "time/surgery": 0.1,
            "time/step": 2.0,
        },
    ]
    tracked = load_run(write_run(tmp_path / "t", strategy="pcgrad", records=records))
    plain = load_run(write_run(tmp_path / "p", strategy="mixed", records=[{"step": 0}]))
    assert surgery_time_share(tracked) == pytest.approx(0.3 / 4.0)
    table = surgery_table([tracked, plain])
    assert "cos a vs b" in table.splitlines()[0]
    assert _rows(table) == [["t", "pcgrad", "global", "7", "0.300", "0.200", "-0.100", "7.50"]]
    assert surgery_table([plain]) is None


def test_a_pipe_in_a_label_does_not_break_the_table(runs):
    runs[0].label = "mgs|tensor"
    row = eval_table(runs).splitlines()[2]
    assert row.startswith("| mgs\\|tensor | mgs |") and row.count(" | ") == 5  # 6 cells


def test_paired_differences_mean_and_95_percent_interval_by_hand():
    # mgs - mixed on seeds 0..2: 0.10, 0.20, 0.30 -> mean 0.2, sample std 0.1, t(0.975, 2) =
    # 4.302653: half width 4.302653 * 0.1 / sqrt(3) = 0.248414.
    mean, low, high, n = paired_differences(
        {0: 0.6, 1: 0.7, 2: 0.9, 5: 9.0}, {0: 0.5, 1: 0.5, 2: 0.6}
    )
    assert n == 3 and mean == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.2 - 0.248414, 0.2 + 0.248414), abs=1e-6)
    assert paired_differences({0: 1.0}, {0: 0.5})[1:] == pytest.approx(
        (math.nan, math.nan, 1), nan_ok=True
    )


def test_paired_table_marks_intervals_that_exclude_zero(tmp_path):
    runs = []
    for seed, (mixed, mgs, seq) in enumerate(
        [(0.5, 0.61, 0.3), (0.6, 0.70, 0.9), (0.4, 0.52, 0.1)]
    ):
        for strategy, value in (("mixed", mixed), ("mgs", mgs), ("sequential", seq)):
            after = {"math": {"reward": value}}
            write_run(
                tmp_path / f"{strategy}-s{seed}", strategy=strategy, seed=seed, heldout_after=after
            )
            runs.append(load_run(tmp_path / f"{strategy}-s{seed}"))
    table = paired_table(runs)
    lines = table.splitlines()
    assert lines[0] == "| difference | paired seeds | math |"
    mgs_row = next(line for line in lines if line.startswith("| mgs − mixed"))
    seq_row = next(line for line in lines if line.startswith("| sequential − mixed"))
    # mgs: +0.11, +0.10, +0.12: mean +0.110, sd 0.01 -> interval [+0.085, +0.135], excludes 0.
    assert "| 3 | +0.110 [+0.085, +0.135]* |" in mgs_row
    # sequential: -0.2, +0.3, -0.3: the interval spans 0, no star.
    assert seq_row.endswith("] |") and "*" not in seq_row
    assert paired_table([r for r in runs if r.strategy != "mixed"]) is None  # no baseline
