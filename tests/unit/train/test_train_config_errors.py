"""Bad `mgs train` input (issue 12), made the way a user makes it: each case is one ``error:`` line
naming the key the user wrote and the fix, exit status 2, before any model is built."""

from __future__ import annotations

import pytest
import torch

from cli_errors import one_line_error
from mgs.dataclass_config import load_yaml, parse_override
from mgs.errors import ConfigError
from mgs.strategy.combiner import PlainSumCombiner
from mgs.train.config import GRPOConfig, load_config
from mgs.train.update import PolicyUpdater, check_mini_batches


def _error(capsys, argv: list[str]) -> str:
    return one_line_error(capsys, argv)


OVERRIDE_CASES = {
    # 1. torch's AdamW would raise ValueError("Invalid beta parameter at index 0: 2.0")
    "betas out of range": ("optim.betas=[2,3]", "optim.betas must be two numbers in [0, 1)"),
    "one beta": ("optim.betas=[0.9]", "optim.betas must be two numbers in [0, 1), got [0.9]"),
    "negative eps": ("optim.eps=-1", "optim.eps and optim.weight_decay must be finite"),
    # 2. more mini-batches than rollouts: RuntimeError in update.py at the first update
    "mini_batches > rows": (
        "grpo.mini_batches=1000",
        "grpo.mini_batches (1000) is more than the rollouts of a step (data.mixture.batch_size 24 "
        "x rollout.sampling.n 8 = 192), so some mini-batches would be empty; set "
        "grpo.mini_batches to at most 192",
    ),
    # 9. groups without spread: RL does nothing
    "n = 1": ("rollout.sampling.n=1", "rollout.sampling.n is 1: with one rollout per prompt"),
    "greedy rollouts": (
        "rollout.sampling.temperature=0",
        "rollout.sampling.temperature is 0 (greedy decoding): the 8 rollouts of a prompt are "
        "identical, so every advantage (reward - group mean) is 0",
    ),
    "top_k = 1 is greedy too": ("rollout.sampling.top_k=1", "rollout.sampling.top_k is 1"),
    # 10. silently accepted
    "infinite lr": ("optim.lr=inf", "optim.lr must be > 0 and finite, got inf"),
    "nan lr": ("optim.lr=nan", "optim.lr must be > 0 and finite, got nan"),
    "negative threads": ("num_threads=-1", "num_threads must be >= 0 (0: torch's default)"),
    "negative sft steps": ("warmstart.sft.steps=-5", "warmstart.sft.steps must be >= 0"),
    "zero sft lr": ("warmstart.sft.lr=0", "warmstart.sft.lr must be > 0 and finite"),
    "too few rm pairs": ("warmstart.reward_model_pairs=2", "warmstart.reward_model_pairs must"),
    "negative surgery stats period": (
        "logging.surgery_stats_every=-1",
        "logging.surgery_stats_every must be >= 0 (0: never write the arrays), got -1",
    ),
    # 11. the tiny model's positions vs prompt + response (tiny.yaml: 256 + 96)
    "max_positions too small": (
        "model.tiny.max_positions=300",
        "model.tiny.max_positions (300) is smaller than the longest prompt plus response: "
        "data.max_prompt_tokens (256) + rollout.sampling.max_new_tokens (96) = 352",
    ),
    "max_positions below the response": (
        "model.tiny.max_positions=64",
        "rollout.sampling.max_new_tokens (96) leaves no room for a prompt",
    ),
    "unbounded prompts on the tiny model": (
        "data.max_prompt_tokens=null",
        "data.max_prompt_tokens is null, so a prompt could fill all model.tiny.max_positions "
        "(512) and leave no room for the response; set data.max_prompt_tokens to at most 416",
    ),
    # wording: the key the user wrote, not SamplingConfig's `n` or the source's `limit`
    "eval.samples = 0": ("eval.samples=0", "eval.samples must be >= 1, got 0"),
    "eval.prompts_per_domain < 0": (
        "eval.prompts_per_domain=-1",
        "eval.prompts_per_domain must be >= 0 (0 turns it off), got -1",
    ),
    "greedy eval with samples": ("eval.temperature=0", "eval.temperature 0 (greedy) gives 8"),
    # 12. a duplicate key inside an override's YAML value
    "duplicate key in an override": (
        "data.mixture.proportions={math: 1, math: 2}",
        "sets key 'math' twice (line 1); keep one of them",
    ),
}


@pytest.mark.parametrize("case", list(OVERRIDE_CASES))
def test_bad_override_is_one_clear_error(capsys, case: str) -> None:
    override, message = OVERRIDE_CASES[case]
    err = _error(capsys, ["train", "--print-config", override])
    assert message in err


def test_legal_edges_stay_accepted() -> None:
    cfg = load_config(
        None,
        [
            "optim.betas=[0,0.999]",
            "optim.eps=0",
            "num_threads=0",
            "warmstart.sft.steps=0",
            "logging.surgery_stats_every=0",
            "grpo.mini_batches=192",  # exactly the rollouts of a step
            "model.tiny.max_positions=352",  # exactly prompt + response
            "eval.prompts_per_domain=0",
        ],
    )
    assert cfg.grpo.mini_batches == 192 and cfg.model.tiny.max_positions == 352
    # No rollout is trained on with steps: 0, so the RL-only checks do not apply.
    assert load_config(None, ["steps=0", "rollout.sampling.n=1"]).rollout.sampling.n == 1


def test_a_binary_config_file_names_the_file(capsys, tmp_path) -> None:
    # 5. was a UnicodeDecodeError traceback, in train, --print-config and mgs data alike
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    for argv in (["train", "-c"], ["train", "--print-config", "-c"], ["data", "--config"]):
        err = _error(capsys, [*argv, str(binary)])
        assert f"config file '{binary}' is not UTF-8 text (byte 0 cannot be decoded)" in err


def test_a_yaml_syntax_error_is_one_line_naming_the_place(capsys, tmp_path) -> None:
    # Was PyYAML's six-line message with a caret drawing (the exit status was already 2).
    config = tmp_path / "run.yaml"
    config.write_text("steps: 3\noptim: {lr: 1.0e-4\n")
    for argv in (["train", "-c"], ["data", "--config"]):
        err = _error(capsys, [*argv, str(config)])
        assert (
            f"config file '{config}' is not valid YAML (line 3, column 1: expected ',' or " in err
        )
        assert err.rstrip().endswith("; fix that line")


def test_override_examples_name_real_keys(capsys) -> None:
    for argv, example in ((["steps"], "grpo.loss.kl_coef=0.01"), (["=3"], "rollout.sampling.n=4")):
        err = _error(capsys, ["train", "--print-config", *argv])
        assert f"e.g. {example}" in err
        load_config(None, [example])  # the example itself is accepted


def test_a_key_written_twice_in_a_config_file_is_rejected(capsys, tmp_path) -> None:
    # 12. PyYAML keeps the last value silently: steps would have been 4.
    config = tmp_path / "run.yaml"
    config.write_text("steps: 3\noptim:\n  lr: 1.0e-4\nsteps: 4\n")
    err = _error(capsys, ["train", "--print-config", "-c", str(config)])
    assert "sets key 'steps' twice (lines 1 and 4); keep one of them" in err
    nested = tmp_path / "nested.yaml"
    nested.write_text("optim:\n  lr: 1.0e-4\n  weight_decay: 0.0\n  lr: 3.0e-4\n")
    assert "sets key 'lr' twice (lines 2 and 4)" in _error(
        capsys, ["data", "--config", str(nested)]
    )


def test_merge_keys_may_override_without_being_duplicates(tmp_path) -> None:
    config = tmp_path / "merge.yaml"
    config.write_text("base: &b {lr: 1, wd: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert load_yaml(config) == {"base": {"lr": 1, "wd": 2}, "run": {"lr": 3, "wd": 2}}
    assert parse_override("x={a: 1, b: 2}") == (["x"], {"a": 1, "b": 2})


def test_a_directory_as_config_is_not_called_missing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is a directory; pass the path of a YAML file"):
        load_yaml(tmp_path)


# ----------------------------------------------------------------- 2. mini-batches at start-up


def test_the_start_up_check_uses_the_rollouts_of_one_rank() -> None:
    # batch 5 over 2 ranks: rank 0 holds ceil(5/2) = 3 prompts x n 2 = 6 rollouts at least.
    check_mini_batches(GRPOConfig(mini_batches=6), batch_size=5, n=2, world_size=2)
    with pytest.raises(ConfigError, match=r"more than the rollouts a rank holds in a step \(6:"):
        check_mini_batches(GRPOConfig(mini_batches=7), batch_size=5, n=2, world_size=2)
    check_mini_batches(GRPOConfig(mini_batches=10), batch_size=5, n=2, world_size=1)


def _updater(k: int, domains: list[str]) -> PolicyUpdater:
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return PolicyUpdater(
        model,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        GRPOConfig(mini_batches=k),
        domains=domains,
        combiner=PlainSumCombiner(model, domains),
        reference=None,
        temperature=1.0,
        pad_token_id=0,
        grad_clip=None,
        device=torch.device("cpu"),
        seed=0,
    )


def test_mini_batches_get_rows_whenever_there_are_as_many_rows_as_mini_batches() -> None:
    # Two domains of 2 rows each, k = 4: dealing each domain from mini-batch 0 left 2 and 3
    # empty (the RuntimeError of issue 12); the deal now continues across domains.
    rows = ["a", "b", "a", "b"]
    minis = _updater(4, ["a", "b"])._mini_batches(rows, 4, torch.Generator().manual_seed(0))
    assert sorted(len(m) for m in minis) == [1, 1, 1, 1]
    assert sorted(r for m in minis for r in m) == [0, 1, 2, 3]
    # Larger: 3 domains of unequal sizes, k = 4: every row once, each domain spread evenly.
    rows = ["a"] * 7 + ["b"] * 2 + ["c"] * 5
    minis = _updater(4, ["a", "b", "c"])._mini_batches(rows, 14, torch.Generator().manual_seed(1))
    assert sorted(r for m in minis for r in m) == list(range(14))
    for domain in "abc":
        counts = [sum(rows[r] == domain for r in m) for m in minis]
        assert max(counts) - min(counts) <= 1, (domain, counts)
    assert sorted(len(m) for m in minis) == [3, 3, 4, 4]


def test_too_few_rows_for_the_mini_batches_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match=r"grpo\.mini_batches \(4\) is more than this step's 3"):
        _updater(4, ["a"])._mini_batches(["a"] * 3, 3, torch.Generator())
