"""`mgs compare` end to end on a tiny config: every strategy trains, evaluates, and is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgs.cli import main

pytestmark = pytest.mark.slow

OVERRIDES = [
    "steps=2",
    "num_threads=1",
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=2",
    "model.tiny.intermediate_size=64",
    "data.sources=[{domain: math, synthetic: tiny_math, size: 64}, {domain: if, synthetic: tiny_if, size: 64}]",
    "data.mixture.batch_size=4",
    "data.mixture.proportions={math: 1, if: 1}",
    "rewards.routes={math: math, if: ifeval}",
    "rewards.math.num_workers=1",
    "rollout.sampling.n=2",
    "rollout.sampling.max_new_tokens=12",
    "warmstart.sft.steps=0",
    "eval.prompts_per_domain=4",
    "logging.progress=false",
    "logging.save_model=false",
]


def test_compare_trains_evaluates_and_reports(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--seeds",
            "0",
            "--strategies",
            "sequential",
            "mgs",
            "--out",
            str(out),
            *OVERRIDES,
        ]
    )
    assert code == 0
    for name in ("sequential-s0", "mgs-s0"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert set(summary["heldout_after"]) == {"math", "if"}
    report = (out / "report" / "report.md").read_text()
    assert "sequential-s0" in report and "mgs-s0" in report
    assert (out / "report" / "reward.png").stat().st_size > 0
    assert "report:" in capsys.readouterr().out
