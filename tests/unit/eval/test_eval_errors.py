"""`mgs eval` with bad input (issue 12): an unusable --out or a file of the wrong shape fails at
once, before the model is loaded, instead of after the whole evaluation."""

from __future__ import annotations

import sys
import types

import pytest

import mgs.eval.runner as runner
from cli_errors import one_line_error


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the model would be loaded (or evaluated)."""

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(runner, "load_model", forbidden)
    monkeypatch.setattr(runner, "evaluate_model", forbidden)


def _error(capsys, *argv: str) -> str:
    return one_line_error(capsys, ["eval", *argv])


def test_out_is_checked_before_anything_is_loaded(capsys, tmp_path, no_model) -> None:
    model = str(tmp_path)
    # Was an IsADirectoryError after generating and scoring everything.
    err = _error(capsys, model, "--bench", "tiny_math", "--out", str(tmp_path))
    assert f"--out '{tmp_path}' is a directory; pass a file path, e.g. --out " in err
    assert str(tmp_path / "eval_results.json") in err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    err = _error(capsys, model, "--bench", "tiny_math", "--out", str(a_file / "r.json"))
    assert f"cannot be created: '{a_file}' is a file, not a directory" in err
    (tmp_path / "r.md").mkdir()
    err = _error(capsys, model, "--bench", "tiny_math", "--out", str(tmp_path / "r.json"))
    assert f"the markdown table goes beside it, to {tmp_path / 'r.md'}, which is a directory" in err


def test_a_bench_file_of_another_shape_names_the_kind(capsys, tmp_path, no_model) -> None:
    # Was found only after the model loaded, with a fix meant for training configs ("Set the
    # source's preset: ...").
    chat = tmp_path / "prompts.jsonl"
    chat.write_text('{"prompt": "hi"}\n')
    err = _error(capsys, str(tmp_path), "--bench", f"math500={chat}", "--out", "r.json")
    assert (
        f"benchmark 'math500': {chat}, row 0 has no column 'problem' (its columns: prompt), so it "
        "is not a math500 file (MATH-500 format (json/jsonl/parquet): problem, answer, unique_id); "
        "pass such a file, or the --bench kind that matches yours (kinds read from files: "
        "math500, "
    ) in err
    assert "gsm8k" in err and "tiny_math" not in err  # the kinds with a file, not the built-ins
    assert "preset" not in err


def test_negative_threads(capsys, tmp_path, no_model) -> None:
    err = _error(capsys, str(tmp_path), "--bench", "tiny_math", "--threads", "-1")
    assert "num_threads (--threads) must be >= 0" in err


def test_a_hub_benchmark_out_of_reach_fails_before_the_model_loads(
    capsys, monkeypatch, tmp_path, no_model
) -> None:
    # Was reported after loading the model's weights (minutes for a 7B model).
    def unreachable(*_args, **_kwargs):
        raise ConnectionError("Couldn't reach 'allenai/IFBench_test' on the Hub")

    fake = types.SimpleNamespace(load_dataset=unreachable, load_from_disk=unreachable)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    err = _error(capsys, str(tmp_path), "--bench", "ifbench")
    assert err.startswith(
        "error: could not load Hugging Face dataset 'allenai/IFBench_test': Couldn't reach"
    )
    assert "hf download allenai/IFBench_test" in err
    # the local-copy recipe fetches the benchmark's own configuration and split (was always
    # split='train' without the configuration: GSM8K's training set for an evaluation)
    err = _error(capsys, str(tmp_path), "--bench", "gsm8k")
    assert "datasets.load_dataset('openai/gsm8k', 'main', split='test')" in err


def test_pass_k_below_one_is_named(capsys, tmp_path, no_model) -> None:
    # Was "pass@0 needs at least 0 samples per prompt; pass --samples 0 ...".
    for k in ("0", "-1"):
        err = _error(
            capsys, str(tmp_path), "--bench", "tiny_math", "--samples", "4", "--temperature",
            "0.7", "--pass-k", k,
        )  # fmt: skip
        assert f"pass_k (--pass-k) values must be >= 1, got {k}" in err
