"""`mgs train` into a directory that is not new (issue 12, items 4 and 13): a file is one clear
error before anything runs; an existing run is never reused except by `--resume`; `--overwrite`
deletes an earlier run of `mgs train` first, and never a folder holding anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import mgs.train.run as train_run
from cli_errors import one_line_error
from conftest import tiny_overrides
from mgs.cli import main
from mgs.errors import ConfigError
from mgs.run_dir import RunDir
from mgs.train.new_run import claim_run_dir, clear_run_dir


def _error(capsys, argv: list[str]) -> str:
    return one_line_error(capsys, argv)


def _files(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes: what must survive a refused command."""
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the run gets past its start (the reward-model phase comes first)."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the run started despite a bad run directory")

    monkeypatch.setattr(train_run, "prepare_reward_model", forbidden)


def _fake_run(path: Path, *, steps: int = 3, extra: tuple[str, ...] = ()) -> RunDir:
    """A run directory as `mgs train` leaves it (config, metrics, a checkpoint, a summary)."""
    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.config.write_text(yaml.safe_dump({"steps": steps}))
    run.metrics.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(steps)))
    run.summary.write_text("{}")
    RunDir.checkpoint_model(run.checkpoint(2)).mkdir(parents=True)
    RunDir.checkpoint_state(run.checkpoint(2)).write_bytes(b"state")
    for name in extra:
        (run.path / name).write_text("mine")
    return run


def test_a_file_as_run_directory_is_one_error_before_anything_runs(
    capsys, tmp_path, no_training
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    # Was a FileExistsError traceback, after the reward model and the warm start.
    err = _error(capsys, ["train", *tiny_overrides(), "--run-dir", str(a_file)])
    assert f"--run-dir '{a_file}' is a file, not a directory" in err
    err = _error(capsys, ["train", *tiny_overrides(logging__run_dir=str(a_file))])
    assert f"logging.run_dir '{a_file}' is a file, not a directory" in err
    err = _error(capsys, ["train", *tiny_overrides(), "--run-dir", str(a_file / "run")])
    assert f"'{a_file}' is a file, not a directory" in err
    assert a_file.read_text() == "keep me"


def test_an_existing_run_is_never_reused(capsys, tmp_path, no_training) -> None:
    run = _fake_run(tmp_path / "run")
    before = _files(run.path)
    for argv in (["--run-dir", str(run)], [f"logging.run_dir={run}"]):
        err = _error(capsys, ["train", *tiny_overrides(), *argv])
        assert f"'{run}' already holds a run of `mgs train` (checkpoints, config.yaml" in err
        assert f"continue that run with `mgs train --resume {run}`" in err
        assert "or pass --overwrite to delete it and start over" in err
    assert _files(run.path) == before


def test_overwrite_deletes_only_a_run_of_mgs_train(capsys, tmp_path, no_training) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("{}")
    err = _error(capsys, ["train", *tiny_overrides(), "--run-dir", str(folder), "--overwrite"])
    assert "already holds files that are not part of a run of `mgs train` (train.jsonl)" in err
    assert "--overwrite deletes only a run directory of `mgs train`, never other files" in err
    # A run directory holding a file of the user's is not a run directory any more.
    run = _fake_run(tmp_path / "run", extra=("my_notes.md",))
    before = _files(run.path)
    err = _error(capsys, ["train", *tiny_overrides(), "--run-dir", str(run), "--overwrite"])
    assert "(my_notes.md)" in err
    # Without a config.yaml, layout names alone do not make a run of mgs train.
    report_only = tmp_path / "report_only"
    (report_only / RunDir.REPORT).mkdir(parents=True)
    err = _error(capsys, ["train", *tiny_overrides(), "--run-dir", str(report_only), "--overwrite"])
    assert "but no config.yaml, so it is no run of `mgs train`" in err
    assert _files(run.path) == before and (folder / "train.jsonl").is_file()
    with pytest.raises(ConfigError, match="is not a run directory of `mgs train`"):
        clear_run_dir(run)
    assert _files(run.path) == before


def test_overwrite_starts_the_run_over(capsys, tmp_path) -> None:
    run = _fake_run(tmp_path / "run", steps=5)
    (run.path / RunDir.TENSORBOARD).mkdir()
    code = main(["train", *tiny_overrides(steps=2), "--run-dir", str(run), "--overwrite"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"--overwrite: deleted the earlier run in {run} (checkpoints, config.yaml" in out
    steps = [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()]
    assert steps == [0, 1]  # not 0..4 followed by 0, 1
    assert yaml.safe_load(run.config.read_text())["steps"] == 2
    assert not run.checkpoints.exists() and not run.tensorboard.exists()


def test_an_empty_or_new_directory_is_claimed_without_a_word(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    assert claim_run_dir(tmp_path / "empty", "--run-dir") is None
    assert claim_run_dir(tmp_path / "new" / "run", "--run-dir", overwrite=True) is None
    assert not (tmp_path / "new").exists()  # checked, not created


def test_resume_refuses_options_that_would_start_another_run(capsys, tmp_path) -> None:
    run = _fake_run(tmp_path / "run")
    for extra, message in (
        (["--run-dir", str(tmp_path / "b")], "--resume continues the run in its own directory"),
        (["--overwrite"], "--overwrite deletes a run and --resume continues it"),
        (["-c", str(run.config)], "--resume uses the run's own config.yaml; drop --config"),
    ):
        assert message in _error(capsys, ["train", "--resume", str(run), *extra])


def test_the_default_run_directory_is_never_one_that_exists(tmp_path, monkeypatch) -> None:
    from mgs.train.config import load_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_run.time, "strftime", lambda *_: "20260101-120000")  # one second
    cfg = load_config(None, tiny_overrides())
    first = train_run.default_run_dir(cfg)
    assert first == Path("runs/20260101-120000-mgs")
    first.mkdir(parents=True)
    assert train_run.default_run_dir(cfg) == Path("runs/20260101-120000-mgs-2")
