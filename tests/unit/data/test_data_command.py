"""``mgs data``: the preview command, its config handling, and one-line errors."""

from __future__ import annotations

import pytest

from mgs.cli import main


def run(capsys, *argv):
    code = main(["data", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_preview(capsys):
    code, out, err = run(capsys, "--steps", "2", "mixture.batch_size=8")
    assert code == 0, err
    assert "tiny_math -> math: 512 prompts" in out
    assert "phase 0: steps 0..end: math 4, chat 4 prompts per batch" in out
    assert "0     0      4 (0.00)  4 (0.00)" in out
    assert "1     0      4 (0.01)  4 (0.01)" in out
    assert "--- step 0, math, tiny_math/" in out and "reference {'answer': " in out


def test_config_file_with_a_data_section_and_prefixed_overrides(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {name: tiny}\n"
        "data:\n"
        "  sources: [{domain: math, synthetic: tiny_math, size: 8}]\n"
        "  mixture: {batch_size: 4}\n"
    )
    code, out, err = run(
        capsys, "--config", str(config), "--steps", "3", "--show", "0", "data.mixture.seed=2"
    )
    assert code == 0, err
    assert "seed: 2" in out
    assert "2     0      4 (1.00)" in out  # 8 prompts, 4 per step: step 2 starts epoch 1
    assert "---" not in out


def test_a_bare_data_section_and_a_bounded_schedule(capsys, tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text(
        "sources: [{domain: math, synthetic: tiny_math}, {domain: chat, synthetic: tiny_chat}]\n"
        "mixture:\n"
        "  batch_size: 2\n"
        "  phases: [{proportions: {math: 1}, steps: 1}, {proportions: {chat: 1}, steps: 1}]\n"
    )
    code, out, _ = run(capsys, "--config", str(config), "--steps", "10", "--show", "0")
    assert code == 0
    assert "phase 1: steps 1..1: chat 2 prompts per batch" in out
    assert "1     1      0 (0.00)  2 (0.00)" in out
    assert "\n2 " not in out  # the schedule ends after 2 steps


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["mixture.batch_sise=8"],
            "unknown config key 'data.mixture.batch_sise'; did you mean 'batch_size'",
        ),
        (
            ["mixture.proportions={math: 1, code: 1}"],
            "names domain 'code', which no source provides",
        ),
        (["template.name=llama"], "unknown prompt template 'llama'"),
        (["--config", "/nonexistent.yaml"], "does not exist"),
        (["--tokenizer", "/nonexistent"], "is not a folder"),
        (["--steps", "-1"], "must be >= 0"),
    ],
)
def test_mistakes_are_one_line_errors(capsys, argv, needle):
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_help_config_lists_every_key(capsys):
    code, out, _ = run(capsys, "--help-config")
    assert code == 0
    for key in (
        "sources[].domain",
        "sources[].preset",
        "mixture.batch_size",
        "mixture.phases[].steps",
        "template.name",
        "max_prompt_tokens = 896",
    ):
        assert key in out
