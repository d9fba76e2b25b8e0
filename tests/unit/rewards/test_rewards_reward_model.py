"""Reward model: the tiny Bradley-Terry model trains, saves as a HF directory and scores through
the same RewardModelScorer a real reward model uses."""

from __future__ import annotations

import json
import random

import pytest

from mgs.errors import ConfigError, DataError
from mgs.rewards import RewardModelConfig, RewardsConfig
from mgs.rewards.reward_model import RewardModelReward, RewardModelScorer, render_conversations
from mgs.rewards.router import RewardRouter
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.reward_model import SUMMARY_FILE, TinyRMConfig, train_tiny_reward_model

TOPICS = ["cats", "rain", "music", "trains", "bread", "stars", "boats", "tea"]


def polite_vs_rude(n: int, seed: int) -> list[tuple[str, str, str]]:
    """A separable preference: chosen is polite and on topic, rejected is rude."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        prompt = rng.choice(["Tell me about {t}.", "What do you think of {t}?"]).format(t=topic)
        chosen = rng.choice(
            ["Thank you for asking! I think {t} are lovely.", "Happy to help: {t} bring joy."]
        ).format(t=topic)
        rejected = rng.choice(
            ["Go away, {t} are stupid.", "Ugh, stop asking me about {t}!", "Whatever. Stupid {t}."]
        ).format(t=topic)
        pairs.append((prompt, chosen, rejected))
    return pairs


FAST = TinyRMConfig(
    model=TinyModelConfig(
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        max_positions=256,
    ),
    epochs=2,
    batch_size=32,
    lr=3e-3,
    max_length=128,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pairs = polite_vs_rude(500, seed=0)
    out = train_tiny_reward_model(pairs, tmp_path_factory.mktemp("rm"), FAST)
    return out, pairs


def test_tiny_rm_learns_a_separable_preference(trained):
    out, _ = trained
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["held_out_pairs"] == 50
    assert summary["held_out_accuracy"] > 0.9
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_saved_model_reloads_with_identical_scores_on_fresh_pairs(trained):
    out, _ = trained
    fresh = polite_vs_rude(40, seed=123)
    prompts = [p for p, _, _ in fresh]
    scorer = RewardModelScorer(out, device="cpu", batch_size=8)
    chosen = scorer.score(prompts, [c for _, c, _ in fresh])
    rejected = scorer.score(prompts, [r for _, _, r in fresh])
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(fresh) > 0.9
    again = RewardModelScorer(out, device="cpu", batch_size=3).score(
        prompts, [c for _, c, _ in fresh]
    )
    assert again == pytest.approx(chosen, abs=1e-5)  # batching / padding does not change a score


def test_scorer_renders_with_the_models_chat_template(trained):
    import torch

    out, _ = trained
    scorer = RewardModelScorer(out, device="cpu")
    (text,) = render_conversations(scorer.tokenizer, ["Hi?"], ["Hello!"])
    assert text == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    ids = scorer.tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        expected = scorer.model(**ids).logits[0, 0].item()
    assert scorer.score(["Hi?"], ["Hello!"]) == pytest.approx([expected], abs=1e-6)
    assert not scorer.model.training


def test_reward_model_reward_through_the_router(trained):
    out, _ = trained
    cfg = RewardsConfig(
        routes={"chat": "reward_model"},
        reward_model=RewardModelConfig(path=str(out), device="cpu", batch_size=4),
    )
    with RewardRouter(cfg) as router:
        result = router(
            ["chat", "chat"],
            ["Tell me about tea.", "Tell me about tea."],
            [
                "<think>be nice</think><response>Thank you for asking! I think tea are lovely.</response>",
                "<think>be nice</think><response>Go away, tea are stupid.</response>",
            ],
            [{}, {}],
        )
    assert result.rewards[0] > result.rewards[1]


def test_bad_paths_and_templates_are_config_errors(tmp_path, trained):
    with pytest.raises(ConfigError, match=r"set rewards\.reward_model\.path"):
        RewardModelReward(RewardModelConfig())
    with pytest.raises(ConfigError, match="cannot load the reward model"):
        RewardModelScorer(tmp_path / "missing", device="cpu").score(["a"], ["b"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained[0])
    tok.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        render_conversations(tok, ["a"], ["b"])


def test_a_policy_is_refused_as_reward_model(tmp_path, tokenizer, tiny_policy):
    # Was accepted: transformers initialised the missing score head at random, so the "reward"
    # was noise (a different number for every load) in eval and in training alike.
    policy = tmp_path / "policy"
    tiny_policy(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1).save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    with pytest.raises(ConfigError) as caught:
        RewardModelScorer(policy, device="cpu").score(["a"], ["b"])
    assert f"the reward model '{policy}' (Qwen2ForCausalLM) has no trained score head" in str(
        caught.value
    )
    assert "score.weight missing" in str(caught.value)


def test_training_input_is_checked():
    with pytest.raises(DataError, match="at least 4"):
        train_tiny_reward_model([("a", "b", "c")], "unused", FAST)
    with pytest.raises(ConfigError, match="eval_fraction"):
        TinyRMConfig(eval_fraction=1.0)


def test_rm_train_command_on_a_pairs_file(tmp_path, capsys):
    from mgs.cli import main

    pairs_file = tmp_path / "pairs.jsonl"
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in polite_vs_rude(40, seed=1)]
    pairs_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "rm"
    assert main(["rm-train", "--pairs", str(pairs_file), "--out", str(out), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "held-out pair accuracy:" in printed and str(out) in printed
    assert RewardModelScorer(out, device="cpu").score(["a"], ["b"])  # loads as a real RM
    pairs_file.write_text('{"prompt": "a", "chosen": 1}\n')
    assert main(["rm-train", "--pairs", str(pairs_file), "--out", str(out)]) == 2
    assert "pairs.jsonl:1: expected an object" in capsys.readouterr().err


def test_rm_train_command_defaults_to_the_tiny_chat_domain(tmp_path, capsys):
    pytest.importorskip("mgs.tiny.domains")
    from mgs.cli import main

    out = tmp_path / "rm"
    assert main(["rm-train", "--num-pairs", "100", "--epochs", "1", "--out", str(out)]) == 0
    assert "tiny chat domain (100 pairs)" in capsys.readouterr().out
    assert json.loads((out / SUMMARY_FILE).read_text())["held_out_pairs"] == 10
