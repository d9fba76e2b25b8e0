"""Reading run directories: metrics parsing, strategy / seed, and errors that say what to pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_runs import write_run

from mgs.cli import main
from mgs.errors import MgsError
from mgs.report.rundir import RunDirError, load_run, load_runs, parse_metrics


def test_parse_metrics_aligns_steps_and_reads_nan_strings():
    lines = [
        json.dumps({"step": 0, "reward/math/mean": 0.5, "loss/policy": "nan"}),
        "",
        json.dumps({"step": 2, "reward/math/mean": 0.7, "surgery/cos/a__b": None}),
        json.dumps({"step": 1, "reward/math/mean": "inf", "note": "text"}),
    ]
    metrics, notes = parse_metrics(lines)
    assert notes == []
    np.testing.assert_array_equal(metrics.steps, [0, 1, 2])
    np.testing.assert_array_equal(metrics.get("reward/math/mean"), [0.5, np.inf, 0.7])
    assert np.isnan(metrics.get("loss/policy")).all()
    assert np.isnan(metrics.get("note")).all()
    assert np.isnan(metrics.get("never/logged")).all() and len(metrics.get("never/logged")) == 3
    assert not metrics.has("surgery/cos/a__b")  # logged, but never a number
    assert metrics.has("reward/math/mean")


def test_parse_metrics_last_record_of_a_step_wins():
    lines = [json.dumps({"step": s, "x": v}) for s, v in [(0, 1.0), (1, 2.0), (1, 3.0)]]
    metrics, _ = parse_metrics(lines)
    np.testing.assert_array_equal(metrics.get("x"), [1.0, 3.0])


def test_parse_metrics_warns_when_two_runs_wrote_one_file(tmp_path, capsys):
    # What a second `mgs train` into the same directory used to leave (steps 0, 1, 2, 0, 1).
    steps = [(0, 1.0), (1, 2.0), (2, 3.0), (0, 10.0), (1, 20.0)]
    lines = [json.dumps({"step": s, "x": v}) for s, v in steps]
    metrics, notes = parse_metrics(lines)
    np.testing.assert_array_equal(metrics.get("x"), [10.0, 20.0, 3.0])  # a mix of both runs
    assert notes == [
        "warning: metrics.jsonl, line 4 goes back to step 0 after step 2: two runs wrote into "
        "this directory, so its curves mix them (the last record of each step is plotted); "
        "train each run into its own directory"
    ]
    _, notes = parse_metrics(lines[:3])  # one run (a resumed one drops what it runs again)
    assert notes == []
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"warning: run: {run / 'metrics.jsonl'}, line 4 goes back to step 0 after step 2" in out


def test_parse_metrics_skips_a_truncated_last_line_only():
    good = json.dumps({"step": 0, "x": 1.0})
    metrics, notes = parse_metrics([good, '{"step": 1, "x"'])
    assert metrics.steps.tolist() == [0] and "truncated last line (2)" in notes[0]
    with pytest.raises(RunDirError, match=r"line 1 is not JSON"):
        parse_metrics(['{"step": 1, "x"', good])
    with pytest.raises(RunDirError, match=r'line 1 has no "step"'):
        parse_metrics([json.dumps({"x": 1.0})])


def test_load_run_reads_strategy_seed_domains_pairs_and_snapshots(tmp_path):
    records = [
        {
            "step": 0,
            "reward/math/mean": 0.1,
            "reward/chat/mean": 0.2,
            "reward/mean": 0.15,
            "surgery/cos/math__chat": -0.1,
        }
    ]
    run_dir = write_run(
        tmp_path / "r",
        strategy="mgs",
        seed=3,
        records=records,
        config_extra={"strategy": {"name": "mgs", "granularity": "module"}},
    )
    (run_dir / "surgery").mkdir()
    for step in (20, 3, 100):
        (run_dir / "surgery" / f"step_{step:06d}.npz").write_bytes(b"")
    (run_dir / "surgery" / "notes.npz").write_bytes(b"")
    run = load_run(run_dir)
    assert run.label == "r" and run.seed == 3
    assert run.strategy == "mgs (pcgrad, module)" and run.granularity == "module"
    assert run.domains() == ["math", "chat"]  # reward/mean is not a domain
    assert run.pairs() == ["math__chat"]
    assert [p.name for p in run.snapshots] == [
        "step_000003.npz",
        "step_000020.npz",
        "step_000100.npz",
    ]
    assert run.notes == []


@pytest.mark.parametrize(
    ("strategy", "granularity"), [("mixed", "global"), ("pcgrad", "global"), ("mgs", "tensor")]
)
def test_named_strategies_resolve_their_granularity(tmp_path, strategy, granularity):
    run = load_run(write_run(tmp_path / "r", strategy=strategy, records=[{"step": 0}]))
    assert (run.strategy, run.granularity) == (strategy, granularity)


def test_run_without_config_or_summary_is_loaded_with_notes(tmp_path):
    run_dir = tmp_path / "partial"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 0, "x": 1}) + "\n")
    run = load_run(run_dir)
    assert run.strategy == "unknown" and run.seed is None and run.summary is None
    assert any("no summary.json" in n for n in run.notes)
    assert any("no config.yaml" in n for n in run.notes)
    assert run.heldout("after") == {}


def test_errors_say_what_a_run_directory_holds(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RunDirError, match="is a file; pass the run directory"):
        load_run(tmp_path / "file.txt")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(MgsError, match=r"expected metrics.jsonl .* found notes.txt"):
        load_run(other)
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        write_run(runs / name, records=[{"step": 0}])
    with pytest.raises(RunDirError, match=r"holds 2 run directories \(a, b\): pass them"):
        load_run(runs)


def test_load_runs_labels(tmp_path):
    a = write_run(tmp_path / "x" / "run", records=[{"step": 0}])
    b = write_run(tmp_path / "y" / "run", records=[{"step": 0}])
    assert [r.label for r in load_runs([a, b])] == ["x/run", "y/run"]
    assert [r.label for r in load_runs([a, b], ["mixed", "mgs"])] == ["mixed", "mgs"]
    with pytest.raises(RunDirError, match="1 labels for 2 run directories"):
        load_runs([a, b], ["only"])
    with pytest.raises(RunDirError, match="labels must be distinct"):
        load_runs([a, b], ["same", "same"])
    with pytest.raises(RunDirError, match="no run directory given"):
        load_runs([])
