"""Scoring hand-made completions: the response only (never the thought), IFEval strict vs loose,
math correctness, the training reward against the reward router itself, reward-model wins."""

from __future__ import annotations

import pytest

from mgs.data.example import Example
from mgs.data.sources import SourceConfig, load_source
from mgs.errors import ConfigError
from mgs.eval.benchmarks import BENCHMARKS
from mgs.eval.config import EvalConfig
from mgs.eval.scoring import Sample, Scorers, aggregate, primary_metric, score_samples
from mgs.rewards import (
    ExtractionConfig,
    IFEvalRewardConfig,
    MathRewardConfig,
    RewardModelConfig,
    RewardsConfig,
    split_completion,
)
from mgs.rewards.router import RewardRouter
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_reward_model, build_tiny_tokenizer

EXTRACT = ExtractionConfig()


def samples_of(examples: list[Example], completions: list[str]) -> list[Sample]:
    return [
        Sample(ex, text, split_completion(text, EXTRACT).response)
        for ex, text in zip(examples, completions)
    ]


def records_of(samples: list[Sample], scores: list[dict]) -> list[dict]:
    return [
        {
            "id": s.example.uid,
            "response": s.response,
            "finish_reason": "stop",
            "completion_tokens": len(s.completion),
            "scores": sc,
        }
        for s, sc in zip(samples, scores)
    ]


def ifeval_example(uid: str, ids: list[str], kwargs: list[dict]) -> Example:
    return Example(
        uid,
        "ifeval",
        ({"role": "user", "content": "Answer in quotes."},),
        {"instruction_id_list": ids, "kwargs": kwargs},
    )


def test_ifeval_strict_vs_loose_on_hand_made_responses():
    quote = ifeval_example("q", ["startend:quotation"], [{}])
    two = ifeval_example(
        "t", ["startend:quotation", "keywords:existence"], [{}, {"keywords": ["blue"]}]
    )
    completions = [
        '<think>quote it</think> <response>"The sky is blue."</response>',  # follows both ways
        '<response>Sure, here it is:\n"The sky is blue."</response>',  # preamble line: loose only
        '<response>*"Hello there."*</response>',  # markdown stars: loose only
        "<response>No quotes here.</response>",  # fails both
        '<think>"blue"</think> <response>"The sky."</response>',  # keyword only in the thought
        '"The sky is blue." but no response tags',  # no response: follows nothing
    ]
    examples = [quote, quote, quote, quote, two, two]
    samples = samples_of(examples, completions)
    scores = score_samples(BENCHMARKS["ifeval"], samples, Scorers(EvalConfig()))
    assert [s["strict"] for s in scores] == [
        [True],
        [False],
        [False],
        [False],
        [True, False],
        [False, False],
    ]
    assert [s["loose"] for s in scores] == [
        [True],
        [True],
        [True],
        [False],
        [True, False],
        [False, False],
    ]
    metrics = aggregate(BENCHMARKS["ifeval"], records_of(samples, scores), greedy=True, pass_k=None)
    # prompt level: responses following all their instructions; 6 responses
    assert metrics["prompt_level_strict_acc"] == pytest.approx(1 / 6)
    assert metrics["prompt_level_loose_acc"] == pytest.approx(3 / 6)
    # instruction level: 8 instructions in all (4 x 1 + 2 x 2); strict follows 2, loose 4
    assert metrics["inst_level_strict_acc"] == pytest.approx(2 / 8)
    assert metrics["inst_level_loose_acc"] == pytest.approx(4 / 8)
    assert metrics["missing_response_rate"] == pytest.approx(1 / 6)
    assert primary_metric(BENCHMARKS["ifeval"], True, 1) == "prompt_level_strict_acc"


def test_tiny_if_reward_is_the_training_reward():
    examples = load_source(SourceConfig(domain="if", synthetic="tiny_if", split="eval", limit=4))
    demo = [ex.metadata["completion"] for ex in examples]  # the demonstrations follow everything
    completions = [demo[0], demo[1].replace("</response>", ""), "<response>hi</response>", demo[3]]
    samples = samples_of(examples, completions)
    for mode in ("fraction", "all"):
        cfg = EvalConfig(ifeval=IFEvalRewardConfig(mode=mode, variant="strict"))
        scores = score_samples(BENCHMARKS["tiny_if"], samples, Scorers(cfg))
        rewards_cfg = RewardsConfig(routes={"if": "ifeval"}, ifeval=cfg.ifeval)
        with RewardRouter(rewards_cfg) as router:
            expected = router(
                ["if"] * 4,
                [ex.question for ex in examples],
                completions,
                [dict(ex.reference) for ex in examples],
            ).rewards
        assert [s["reward"] for s in scores] == pytest.approx(expected)
        assert scores[0]["reward"] == 1.0 and scores[1]["reward"] == 0.0  # no </response>: 0


def test_math_scores_the_response_not_the_thought_and_matches_the_router():
    examples = load_source(
        SourceConfig(domain="math", synthetic="tiny_math", split="eval", limit=4)
    )
    answers = [ex.reference["answer"] for ex in examples]
    wrong = str(int(answers[2]) + 1)
    completions = [
        f"<think>easy</think> <response>\\boxed{{{answers[0]}}}</response>",  # right
        f"<think>\\boxed{{{answers[1]}}}</think> <response>no idea</response>",  # right in thought
        f"<think>hm</think> <response>\\boxed{{{wrong}}}</response>",  # wrong
        f"<think>sure</think> \\boxed{{{answers[3]}}}",  # right, but no response block
    ]
    cfg = EvalConfig(math=MathRewardConfig(num_workers=1))
    samples = samples_of(examples, completions)
    scorers = Scorers(cfg)
    try:
        scores = score_samples(BENCHMARKS["tiny_math"], samples, scorers)
    finally:
        scorers.close()
    assert [s["correct"] for s in scores] == [1.0, 0.0, 0.0, 0.0]
    rewards_cfg = RewardsConfig(routes={"math": "math"}, math=cfg.math)
    with RewardRouter(rewards_cfg) as router:
        expected = router(
            ["math"] * 4,
            [ex.question for ex in examples],
            completions,
            [dict(ex.reference) for ex in examples],
        ).rewards
    assert [s["reward"] for s in scores] == expected
    metrics = aggregate(
        BENCHMARKS["tiny_math"], records_of(samples, scores), greedy=True, pass_k=None
    )
    assert metrics["greedy_pass@1"] == 0.25 and metrics["reward"] == 0.25


def test_sampled_math_aggregates_by_prompt():
    # prompt a: 2 of 4 samples correct, prompt b: 0 of 4, prompt c: 4 of 4
    correct = {"a": [1, 0, 1, 0], "b": [0, 0, 0, 0], "c": [1, 1, 1, 1]}
    records = [
        {
            "id": pid,
            "response": "x",
            "finish_reason": "length" if pid == "b" else "stop",
            "completion_tokens": 10,
            "scores": {"correct": float(v)},
        }
        for pid, values in correct.items()
        for v in values
    ]
    kind = BENCHMARKS["math500"]
    metrics = aggregate(kind, records, greedy=False, pass_k=None)
    assert metrics["avg@4"] == pytest.approx((0.5 + 0 + 1) / 3)
    # pass@k per prompt: a (n=4, c=2): 1 - C(2,k)/C(4,k): k=1 0.5, k=2 1 - 1/6, k=4 1
    assert metrics["pass@1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert metrics["pass@2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert metrics["pass@4"] == pytest.approx((1 + 0 + 1) / 3)
    assert set(metrics) >= {"avg@4", "pass@1", "pass@2", "pass@4"} and "pass@3" not in metrics
    assert aggregate(kind, records, greedy=False, pass_k=[3])["pass@3"] == pytest.approx(
        (1 + 0 + 1) / 3  # a: 1 - C(2,3)/C(4,3) = 1
    )
    assert metrics["truncated_rate"] == pytest.approx(4 / 12)
    assert primary_metric(kind, False, 4) == "avg@4" and primary_metric(kind, True, 1) == (
        "greedy_pass@1"
    )


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    tokenizer = build_tiny_tokenizer()
    small = TinyModelConfig(
        hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64
    )
    out = tmp_path_factory.mktemp("rm")
    build_tiny_reward_model(tokenizer, small).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_reward_model_win_rate_ties_and_missing_responses(reward_model_dir):
    def row(i: int, reference: str) -> Example:
        return Example(
            f"alpaca/{i}",
            "chat",
            ({"role": "user", "content": f"Tell me about item {i}."},),
            {"baseline_output": reference},
        )

    examples = [row(0, "Same answer."), row(1, "A reference."), row(2, "Another one.")]
    completions = [
        "<think>t</think> <response>Same answer.</response>",  # identical to the reference: tie
        "<response>Something else entirely.</response>",
        "no response block",  # a loss, scored by the RM as the empty response
    ]
    rm = RewardModelConfig(path=str(reward_model_dir), device="cpu")
    cfg = EvalConfig(reward_model=rm, tie_margin=1e-4)
    samples = samples_of(examples, completions)
    scorers = Scorers(cfg)
    scores = score_samples(BENCHMARKS["alpacaeval"], samples, scorers)
    direct = scorers.reward_model().score(
        [ex.question for ex in examples], ["Same answer.", "Something else entirely.", ""]
    )
    assert [s["rm_score"] for s in scores] == pytest.approx(direct, abs=1e-5)
    assert scores[0]["win"] == 0.5 and scores[2]["win"] == 0.0
    expected_1 = 1.0 if scores[1]["rm_score"] > scores[1]["ref_rm_score"] + 1e-4 else 0.0
    assert scores[1]["win"] == expected_1
    metrics = aggregate(
        BENCHMARKS["alpacaeval"], records_of(samples, scores), greedy=True, pass_k=None
    )
    assert metrics["win_rate"] == pytest.approx((0.5 + expected_1 + 0.0) / 3)
    assert metrics["judged_rate"] == 1.0
    assert metrics["rm_score"] == pytest.approx(sum(direct) / 3, abs=1e-5)


def test_reward_model_benchmarks_name_the_flag_when_no_model_is_set():
    sample = samples_of(
        [Example("c/0", "chat", ({"role": "user", "content": "hi"},), {})], ["<response>x"]
    )
    with pytest.raises(ConfigError, match="--reward-model DIR"):
        score_samples(BENCHMARKS["chat"], sample, Scorers(EvalConfig()))
    with pytest.raises(ConfigError, match="--reward-model DIR"):
        Scorers(EvalConfig(reward_model=RewardModelConfig(path="/nonexistent/rm"))).reward_model()
