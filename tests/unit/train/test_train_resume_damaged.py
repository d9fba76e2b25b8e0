"""`mgs train --resume` with damaged or hostile checkpoints (issue 12, items 6 and 17) and with
overrides it cannot honour or must record, on a real run directory of the tiny trainer (4 steps,
a checkpoint after steps 1, 2 and 3).

A damaged latest checkpoint is named in a warning and the previous intact one is used, so the
resumed run logs the same metrics as the uninterrupted one; with no intact checkpoint the resume
is one error listing each; `--resume RUN/checkpoints/step_N` picks one. A trainer state holding a
pickled object that would run code is refused, naming the file, and the code never runs.
"""

from __future__ import annotations

import builtins
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from cli_errors import one_line_error
from conftest import tiny_overrides
from mgs.cli import main
from mgs.run_dir import RunDir
from mgs.train.checkpoint import CheckpointError, UnsafeCheckpointError, load_state
from mgs.train.config import load_config
from mgs.train.resume import choose_checkpoint, resume_target
from mgs.train.run import run_training


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints step_000001..3 (every one kept)."""
    path = tmp_path_factory.mktemp("trained") / "run"
    overrides = tiny_overrides(steps=4, logging__checkpoint_every=1, logging__keep_checkpoints=3)
    run_training(load_config(None, overrides), path, echo=lambda _: None)
    return path


@pytest.fixture
def run(trained, tmp_path) -> RunDir:
    """A private copy of the trained run, to damage."""
    shutil.copytree(trained, tmp_path / "run")
    return RunDir(tmp_path / "run")


def _error(capsys, argv: list[str]) -> str:
    return one_line_error(capsys, argv)


def _metrics(run: RunDir) -> list[dict]:
    lines = run.metrics.read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith(("time/", "reward/time/"))}
        for line in lines
    ]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _state(run: RunDir, step: int) -> Path:
    return RunDir.checkpoint_state(run.checkpoint(step))


def _model(run: RunDir, step: int) -> Path:
    return RunDir.checkpoint_model(run.checkpoint(step))


DAMAGE = {
    "truncated trainer_state.pt": (
        lambda r: _truncate(_state(r, 3)),
        "trainer_state.pt is damaged",
    ),
    "truncated model.safetensors": (
        lambda r: _truncate(_model(r, 3) / "model.safetensors"),
        "model/model.safetensors is damaged",
    ),
    "missing model/": (lambda r: shutil.rmtree(_model(r, 3)), "model is missing"),
    "missing config.json": (
        lambda r: (_model(r, 3) / "config.json").unlink(),
        "model/config.json is missing",
    ),
    "missing trainer_state.pt": (lambda r: _state(r, 3).unlink(), "trainer_state.pt is missing"),
}


def test_the_latest_intact_checkpoint_is_chosen(run) -> None:
    assert choose_checkpoint(run) == (run.checkpoint(3), [])


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_latest_checkpoint_is_named_and_skipped(run, case: str) -> None:
    damage, named = DAMAGE[case]
    damage(run)
    chosen, warnings = choose_checkpoint(run)
    assert chosen == run.checkpoint(2)
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: resume: skipped the damaged checkpoint step_000003: ")
    assert f"{run.checkpoint(3)}/{named}" in warnings[0]


def test_resume_falls_back_and_logs_what_the_uninterrupted_run_logged(run, capsys) -> None:
    expected = _metrics(run)
    _truncate(_state(run, 3))
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "warning: resume: skipped the damaged checkpoint step_000003" in out
    assert f"resume: continuing from {run.checkpoint(2)} (step 2)" in out
    resumed = _metrics(run)
    assert [m["step"] for m in resumed] == [0, 1, 2, 3]
    for got, want in zip(resumed, expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], key)
    assert load_state(run.checkpoint(3))["next_step"] == 3  # rewritten intact by the re-run


def test_no_intact_checkpoint_is_one_error_listing_each(run, capsys) -> None:
    before = run.metrics.read_text()
    _truncate(_state(run, 3))
    _truncate(_model(run, 2) / "model.safetensors")
    shutil.rmtree(_model(run, 1))
    err = _error(capsys, ["train", "--resume", str(run)])
    assert f"--resume {run}: no intact checkpoint to continue from" in err
    assert "step_000003: " in err and "trainer_state.pt is damaged" in err
    assert "step_000002: " in err and "model.safetensors is damaged" in err
    assert "step_000001: " in err and f"{_model(run, 1)} is missing" in err
    assert f"`mgs train -c {run.config} --run-dir NEW_DIR`" in err
    assert run.metrics.read_text() == before  # nothing lost


def test_a_checkpoint_can_be_chosen_explicitly(run, capsys) -> None:
    expected = _metrics(run)
    target = run.checkpoint(1)
    found, chosen = resume_target(target)  # the run directory is the checkpoint's grandparent
    assert (found.path, chosen) == (run.path, target)
    found, chosen = resume_target(run.path)
    assert (found.path, chosen) == (run.path, None)
    assert main(["train", "--resume", str(target)]) == 0
    out = capsys.readouterr().out
    assert "continuing from step_000001: the metrics of step 1 on are dropped" in out
    assert "later checkpoints (step_000002, step_000003) are replaced" in out
    resumed = _metrics(run)
    assert [m["step"] for m in resumed] == [0, 1, 2, 3]
    assert resumed[3]["loss/pg_loss"] == pytest.approx(expected[3]["loss/pg_loss"], rel=1e-5)


def test_an_explicit_checkpoint_must_exist_and_be_intact(run, capsys) -> None:
    err = _error(capsys, ["train", "--resume", str(run.checkpoints / "step_000009")])
    assert "does not exist; the checkpoints of" in err
    assert "step_000001, step_000002, step_000003" in err
    _truncate(_model(run, 2) / "model.safetensors")
    err = _error(capsys, ["train", "--resume", str(run.checkpoint(2))])
    assert f"--resume {run.checkpoint(2)} cannot be used: {_model(run, 2)}/model.safetensors" in err
    assert f"`--resume {run}` for its latest intact one" in err


class _Payload:
    """Unpickled by an unsafe loader, writes a marker file (``exec`` of one line)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _plant(run: RunDir, step: int, marker: Path) -> Path:
    """Replace a checkpoint's trainer state by one holding the payload (in torch.save's format)."""
    file = _state(run, step)
    state = torch.load(file, weights_only=True)  # not memory-mapped: the file is rewritten
    state["scheduler"] = _Payload(marker)
    torch.save(state, file)
    return file


def test_the_planted_payload_runs_when_loaded_unsafely(run, tmp_path) -> None:
    # The oracle for the next tests: the payload is live, so its marker proves a load ran it.
    marker = tmp_path / "marker"
    file = _plant(run, 3, marker)
    torch.load(file, weights_only=False)
    assert marker.read_text() == "ran"


def test_a_trainer_state_that_would_run_code_is_refused(run, tmp_path, capsys) -> None:
    marker = tmp_path / "marker"
    file = _plant(run, 3, marker)
    with pytest.raises(UnsafeCheckpointError, match=r"holds a Python object \(exec\)") as caught:
        load_state(run.checkpoint(3))
    assert str(file) in str(caught.value)
    # Not skipped for the intact step_000002: a planted object stops the resume.
    err = _error(capsys, ["train", "--resume", str(run)])
    assert f"{file} holds a Python object (exec)" in err
    assert "refusing to load it" in err
    assert not marker.exists()


def test_a_plain_pickle_is_refused_without_being_unpickled(run, tmp_path) -> None:
    marker = tmp_path / "marker"
    file = _state(run, 3)
    file.write_bytes(pickle.dumps(_Payload(marker)))  # the legacy, non-zip format
    with pytest.raises(CheckpointError, match=r"not a file torch\.save wrote"):
        load_state(run.checkpoint(3))
    chosen, warnings = choose_checkpoint(run)
    assert chosen == run.checkpoint(2) and "trainer_state.pt is damaged" in warnings[0]
    assert not marker.exists()


# ------------------------------------------------------------------ overrides on resume


def test_steps_not_past_the_checkpoint_is_refused_and_nothing_is_lost(run, capsys) -> None:
    # Was: exit 0, metrics.jsonl cut back to the checkpoint's steps and model/ replaced by the
    # checkpoint's older weights, with summary.json saying the lower step count.
    before = {f: f.read_bytes() for f in (run.metrics, run.config, run.summary)}
    err = _error(capsys, ["train", "--resume", str(run), "steps=3"])
    assert f"--resume {run}: step_000003 has 3 steps done and steps is 3" in err
    assert "pass steps=N with N > 3 to train on" in err
    assert f"--resume {run.checkpoints}/step_K for an earlier checkpoint (K < 3)" in err
    assert {f: f.read_bytes() for f in before} == before


def test_overrides_that_change_the_weights_shapes_are_refused(run, capsys) -> None:
    err = _error(capsys, ["train", "--resume", str(run), "model.tiny.hidden_size=64"])
    assert f"--resume {run}: model.tiny.hidden_size: 32 there, 64 now:" in err
    assert "a resume cannot change this; drop the override" in err
    err = _error(capsys, ["train", "--resume", str(run), "model.lora={r: 4}"])
    assert "model.lora: None there, '(absent)' now" in err


def test_a_resumes_overrides_are_recorded_in_the_runs_config(run, capsys) -> None:
    assert main(["train", "--resume", str(run), "steps=5"]) == 0
    out = capsys.readouterr().out
    assert f"resume: {run.config} records the overrides (steps: 4 there, 5 now)" in out
    assert load_config(run.config).steps == 5
    assert [m["step"] for m in _metrics(run)] == [0, 1, 2, 3, 4]
    assert json.loads(run.summary.read_text())["steps"] == 5
    # The next plain resume continues the 5-step run (it used to read steps: 4 and cut it back).
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "records the overrides" not in out
    assert [m["step"] for m in _metrics(run)] == [0, 1, 2, 3, 4]
