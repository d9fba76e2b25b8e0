"""A whole `mgs train` run in-process on the small test config: the phases, the run directory."""

from __future__ import annotations

import json

from mgs.cli import main
from mgs.run_dir import RunDir


def test_held_out_evaluation_every_n_steps_is_logged(tmp_path, overrides) -> None:
    run = RunDir(tmp_path / "run")
    args = overrides(steps=4, eval__every=2, eval__prompts_per_domain=3)
    assert main(["train", "--run-dir", str(run.path), *args]) == 0
    lines = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    logged = [sorted(k for k in m if k.startswith("heldout/")) for m in lines]
    expected = ["heldout/chat/reward", "heldout/math/reward"]
    assert logged == [[], expected, [], expected]  # after steps 2 and 4 (0-based 1 and 3)
    summary = json.loads(run.summary.read_text())
    # The evaluation after the last step is the one summary.json reports after RL.
    assert lines[3]["heldout/math/reward"] == summary["heldout_after"]["math"]["reward"]
    assert set(summary["heldout_before"]) == {"math", "chat"}
