"""`mgs rm-train` with bad input (issue 12): one clear error, exit 2, nothing trained; and it never
writes over a directory it did not write (a trained policy), nor loses the old model on failure."""

from __future__ import annotations

import json

import pytest

import mgs.tiny.reward_model as tiny_rm
from cli_errors import one_line_error
from mgs.cli import main
from mgs.tiny.reward_model import SUMMARY_FILE


def _error(capsys, *argv: str) -> str:
    return one_line_error(capsys, ["rm-train", *argv])


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a model would be trained."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("trained despite bad input")

    monkeypatch.setattr(tiny_rm, "train_tiny_reward_model", forbidden)


def test_inputs_are_checked_before_training(capsys, tmp_path, no_training) -> None:
    binary = tmp_path / "pairs.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    out = str(tmp_path / "rm")
    err = _error(capsys, "--pairs", str(binary), "--out", out)
    assert f"pairs file '{binary}' is not UTF-8 text (byte 0 cannot be decoded)" in err
    assert "is a directory" in _error(capsys, "--pairs", str(tmp_path), "--out", out)
    # --epochs 0 used to train 2 epochs silently (`if args.epochs` read 0 as "not given").
    err = _error(capsys, "--epochs", "0", "--out", out)
    assert "--epochs must be >= 1 (passes over the pairs), got 0" in err
    # Used to speak of "a synthetic source's size".
    err = _error(capsys, "--num-pairs", "0", "--out", out)
    assert "--num-pairs must be at least 4 (a share is held out to measure the accuracy)" in err


def test_out_must_be_a_directory_that_can_be_created(capsys, tmp_path, no_training) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    # Was a FileExistsError traceback after the whole training.
    err = _error(capsys, "--num-pairs", "8", "--out", str(a_file))
    assert f"--out '{a_file}' is a file, not a directory" in err
    err = _error(capsys, "--num-pairs", "8", "--out", str(a_file / "rm"))
    assert f"'{a_file}' is a file, not a directory" in err
    assert a_file.read_text() == "keep me"


def test_a_trained_policy_is_never_written_over(capsys, tmp_path, no_training) -> None:
    policy = tmp_path / "runs" / "x" / "model"
    policy.mkdir(parents=True)
    (policy / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    (policy / "model.safetensors").write_bytes(b"weights")
    err = _error(capsys, "--num-pairs", "8", "--out", str(policy))
    assert "already holds files (config.json, model.safetensors); rm-train never writes" in err
    # --overwrite replaces only what rm-train wrote.
    err = _error(capsys, "--num-pairs", "8", "--out", str(policy), "--overwrite")
    assert f"is not a reward model of `mgs rm-train` (no {SUMMARY_FILE}" in err
    assert (policy / "model.safetensors").read_bytes() == b"weights"


def test_overwrite_replaces_an_earlier_reward_model_only_once_the_new_one_is_saved(
    capsys, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "rm"
    argv = ["rm-train", "--num-pairs", "12", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    first = json.loads((out / SUMMARY_FILE).read_text())
    assert "already holds files" in _error(capsys, *argv[1:])  # no silent second write

    def crash(pairs, out_dir, cfg):  # dies half-way through writing its folder
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(tiny_rm, "train_tiny_reward_model", crash)
    with pytest.raises(RuntimeError, match="killed"):
        main([*argv, "--overwrite", "--seed", "1"])
    assert json.loads((out / SUMMARY_FILE).read_text()) == first  # the old model is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]  # no temporary folder left
    monkeypatch.undo()
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    second = json.loads((out / SUMMARY_FILE).read_text())
    assert second["config"]["seed"] == 1 and first["config"]["seed"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]
