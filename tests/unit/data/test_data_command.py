"""``mgs data``: the preview command, its config handling, and one-line errors."""

from __future__ import annotations

import json

import pytest

from mgs.cli import main


def run(capsys, *argv):
    code = main(["data", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_preview_is_the_tiny_defaults_data(capsys):
    # No --config: the data section of the embedded tiny default (what `mgs train` trains on):
    # three sources of 2000 prompts, proportions math 2 : if 1 : chat 1, the custom template.
    code, out, err = run(capsys, "--steps", "2", "mixture.batch_size=8")
    assert code == 0, err
    assert "tiny_math -> math: 2000 prompts" in out and "tiny_chat -> chat: 2000 prompts" in out
    assert "template: custom; batch_size: 8" in out
    # 8 x 2/4 = 4 math, 8 x 1/4 = 2 if and 2 chat
    assert "phase 0: steps 0..end: math 4, if 2, chat 2 prompts per batch" in out
    assert "step  phase  math (epoch)  if (epoch)  chat (epoch)" in out
    assert "1     0      4 (0.00)  2 (0.00)  2 (0.00)" in out  # 4/2000 of a pass: 0.00
    assert out.count("\n--- math, tiny_math/") == 2  # --show defaults to 2 per domain
    assert out.count("\n--- chat, tiny_chat/") == 2 and "reference {'answer': " in out
    assert "User: <query>Write about " in out  # an if prompt


def test_json_preview_is_machine_readable_and_matches_the_mixture(capsys):
    from mgs.data.command import load_data_config
    from mgs.data.pipeline import build_mixture
    from mgs.tiny.model import build_tiny_tokenizer

    overrides = ["mixture.batch_size=9", "mixture.proportions={math: 2, if: 1, chat: 1}"]
    code, out, err = run(capsys, "--json", "--steps", "3", "--show", "1", *overrides)
    assert code == 0, err
    data = json.loads(out)
    mix, _ = build_mixture(load_data_config(None, overrides), build_tiny_tokenizer())
    assert data["fingerprint"] == mix.fingerprint
    # 9 x (1/2, 1/4, 1/4) = 4.5, 2.25, 2.25: floors 4, 2, 2 and the one left goes to math
    assert [b["counts"] for b in data["batches"]] == [{"math": 5, "if": 2, "chat": 2}] * 3
    assert data["batches"][2]["epochs"]["math"] == round(10 / 2000, 4)
    assert [s["rows"] for s in data["sources"]] == [2000, 2000, 2000]
    assert {d: [p["uid"] for p in v] for d, v in data["prompts"].items()} == {
        d: [ex.uid for ex in mix.batch(0).by_domain[d][:1]] for d in ("math", "if", "chat")
    }
    assert data["template"]["name"] == "custom" and data["sampling"] == "exact"


def test_iid_preview_shows_varying_counts(capsys):
    code, out, err = run(capsys, "--json", "--steps", "20", "--show", "0", "mixture.sampling=iid")
    assert code == 0, err
    counts = [b["counts"] for b in json.loads(out)["batches"]]
    assert all(sum(c.values()) == 24 for c in counts) and len({c["math"] for c in counts}) > 2
    code, out, _ = run(capsys, "--steps", "1", "--show", "0", "mixture.sampling=iid")
    assert "each prompt's domain drawn by share: math 0.50, if 0.25, chat 0.25" in out


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
    code, out, _ = run(capsys, "-c", str(config), "--steps", "10", "--show", "0")
    assert code == 0
    assert "phase 1: steps 1..1: chat 2 prompts per batch" in out
    assert "1     1      0 (0.01)  2 (0.00)" in out  # math drew 2 of 372 in step 0
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
        (["mixture.batch_size=2"], "the batch size 2 is smaller than the 3 domains with a share"),
        (["mixture.sampling=weighted"], "must be one of 'exact', 'iid'"),
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
        "mixture.phases[].epochs",
        "mixture.phases[].domain",
        "mixture.sampling",
        "overlong = 'filter'",
        "template.preamble",
        "template.name",
        "max_prompt_tokens = 896",
    ):
        assert key in out
