"""``write_report`` / ``mgs report`` end to end on synthetic run directories."""

from __future__ import annotations

import json
import re
import struct

import pytest
from report_runs import realistic_run, write_run

from cli_errors import one_line_error
from mgs.cli import main
from mgs.errors import ConfigError
from mgs.report import ReportOptions, write_report
from mgs.report.plots import STRATEGY_COLORS, run_styles

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = [
        realistic_run(root / "mixed-s0", strategy="mixed", seed=0, steps=20, layers=2),
        realistic_run(root / "mgs-s0", strategy="mgs", seed=0, steps=20, layers=2),
        realistic_run(root / "mgs-s1", strategy="mgs", seed=1, steps=20, layers=2),
        realistic_run(root / "plain", strategy="mixed", seed=1, steps=20, surgery=False),
    ]
    return dirs


def test_report_writes_every_figure_and_links_them(run_dirs, tmp_path):
    result = write_report(run_dirs, tmp_path / "out", options=ReportOptions(smooth=3))
    assert set(result.figures) == {
        "reward",
        "response_length",
        "gradient_cosine",
        "conflict_fraction",
        "conflict_map_mgs",
    }
    for path in result.figures.values():
        width, height = _png_size(path)
        assert width > 400 and height > 250 and path.stat().st_size > 10_000
    text = result.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(p.name for p in result.figures.values())
    assert all((result.markdown.parent / link).is_file() for link in links)
    # mgs has two seeds: the strategy table appears; the untracked run is named in a note
    assert "strategy_reward" in result.tables and "| mgs | 2 | 0, 1 |" in text
    assert "Skipped: no gradient telemetry (surgery/*) in: plain" in text
    assert "conflict map of mixed: its surgery has a single group" in text
    assert "moving average over 3 logged steps" in text


def test_report_numbers_come_from_summary_json(run_dirs, tmp_path):
    result = write_report(run_dirs[:1], tmp_path / "out", labels=["baseline"])
    summary = json.loads((run_dirs[0] / "summary.json").read_text())
    math_after = summary["heldout_after"]["math"]["reward"]
    math_before = summary["heldout_before"]["math"]["reward"]
    expected = f"{math_after:.3f} ({math_after - math_before:+.3f})"
    row = next(line for line in result.tables["eval_reward"].splitlines() if "baseline" in line)
    assert row.split("|")[4].strip() == expected
    assert "strategy_reward" not in result.tables  # one run per strategy: no mean ± std


def test_report_without_any_surgery_data(tmp_path):
    run = realistic_run(tmp_path / "plain", strategy="mixed", seed=0, steps=8, surgery=False)
    result = write_report([run])
    assert result.markdown == run / "report" / "report.md"  # default: <run>/report
    assert set(result.figures) == {"reward", "response_length"}
    text = result.markdown.read_text()
    assert "gradient_cosine.png" not in text and "Skipped: no gradient telemetry" in text


def test_report_of_a_run_without_metrics_or_summary(tmp_path):
    only_summary = write_run(
        tmp_path / "s", heldout_after={"math": {"reward": 0.25, "length": 9, "n": 4}}
    )
    (only_summary / "metrics.jsonl").unlink()
    empty_metrics = write_run(tmp_path / "m", records=[])
    (empty_metrics / "summary.json").unlink()
    result = write_report([only_summary, empty_metrics], tmp_path / "out")
    assert result.figures == {}
    text = result.markdown.read_text()
    assert "| s | mgs | 0 | 0.250 | 0.250 |" in text
    assert "m: no summary.json" in text and "s: no metrics.jsonl" in text
    assert "Skipped: Training reward per domain: no run logged reward/<domain>/mean" in text


def test_unreadable_snapshot_is_skipped_with_a_note(tmp_path):
    run = realistic_run(tmp_path / "r", strategy="mgs", seed=0, steps=6, layers=1, every=3)
    (run / "surgery" / "step_000003.npz").write_bytes(b"not a zip")
    result = write_report([run], tmp_path / "out")
    assert "conflict_map_mgs" in result.figures
    assert any("step_000003.npz is not a readable surgery snapshot" in n for n in result.notes)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="smooth must be"):
        ReportOptions(smooth=0)
    with pytest.raises(ConfigError, match="dpi must be"):
        ReportOptions(dpi=5)


def test_styles_colour_by_strategy_and_dash_by_seed():
    styles = run_styles(["a", "b", "c"], ["mgs", "mgs", "mixed"])
    assert styles["a"].color == styles["b"].color == STRATEGY_COLORS["mgs"]
    assert styles["a"].linestyle != styles["b"].linestyle
    assert styles["c"].color == STRATEGY_COLORS["mixed"]
    single = run_styles(["x", "y"], ["mgs", "mgs"])
    assert single["x"].color == STRATEGY_COLORS["mgs"] != single["y"].color


def test_cli_report_and_its_errors(run_dirs, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["report", str(run_dirs[0]), str(run_dirs[1]), "--out", str(out), "--labels", "mix, mgs"]
    )
    assert code == 0
    assert (out / "report.md").is_file() and "| mix | mixed |" in (out / "report.md").read_text()
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out

    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(run_dirs[0]), "--labels", "a,b"]) == 2
    assert "2 labels for 1 run directories" in capsys.readouterr().err
    assert main(["report", str(run_dirs[0].parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a run directory of `mgs train`" in err and "pass them" in err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")  # was a FileExistsError traceback from mkdir
    err = one_line_error(capsys, ["report", str(run_dirs[0]), "--out", str(a_file)])
    assert f"--out '{a_file}' is a file, not a directory" in err
