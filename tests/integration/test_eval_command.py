"""``mgs eval`` end to end on a tiny model built in-process: real MATH-500 / IFEval / AlpacaEval rows,
the tiny domains, a run directory, and the command's one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import yaml

from conftest import shared_file
from mgs.cli import main
from mgs.data.templates import TemplateConfig
from mgs.eval import BenchmarkSpec, EvalConfig, EvalResult, evaluate_model
from mgs.eval.metrics import (
    avg_at_k,
    ifeval_accuracies,
    mean,
    mean_pass_at_k,
    pairwise_outcome,
)
from mgs.eval.runner import load_model
from mgs.rewards import ExtractionConfig, split_completion
from mgs.rewards.ifeval import ifeval_check
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_reward_model, build_tiny_tokenizer

SMALL = TinyModelConfig(
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    intermediate_size=64,
    max_positions=4096,  # every prompt of the first rows fits: nothing is skipped
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny policy directory and an untrained tiny reward model directory."""
    root = tmp_path_factory.mktemp("eval_models")
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_policy(tokenizer, SMALL)
    policy.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    build_tiny_reward_model(tokenizer, SMALL).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    return {"policy": root / "policy", "rm": root / "rm", "model": policy, "tokenizer": tokenizer}


def in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def test_eval_on_real_benchmark_rows(tiny, tmp_path, capsys):
    files = {
        "math500": shared_file("math500.json"),
        "ifeval": shared_file("ifeval.json"),
        "alpacaeval": shared_file("alpacaeval2_gpt4_baseline.json"),
    }
    out = tmp_path / "results.json"
    argv = ["eval", str(tiny["policy"]), "--limit", "3", "--max-new-tokens", "24"]
    for name, path in files.items():
        argv += ["--bench", f"{name}={path}"]
    argv += ["--reward-model", str(tiny["rm"]), "--out", str(out), "--no-progress"]
    argv += ["--set", "math.num_workers=1", "--set", "reward_model.device=cpu"]
    # an untrained model writes no tags: score its whole text, so every scorer sees a response
    argv += ["--on-missing-response", "after_think"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| benchmark | prompts x samples | metric | value |" in printed
    assert (tmp_path / "results.md").read_text().startswith("Evaluation of")

    data = json.loads(out.read_text())
    assert set(data) == {"model", "mgs_version", "seconds", "config", "benchmarks"}
    assert list(data["benchmarks"]) == ["math500", "ifeval", "alpacaeval"]
    rows = {name: json.loads(path.read_text())[:3] for name, path in files.items()}
    extraction = ExtractionConfig(**data["config"]["extraction"])
    for name, bench in data["benchmarks"].items():
        assert bench["kind"] == name and bench["path"] == str(files[name])
        assert bench["num_prompts"] == 3 and bench["samples"] == 1 and bench["skipped"] == []
        records = bench["records"]
        assert len(records) == 3 and [r["sample"] for r in records] == [0, 0, 0]
        for r in records:
            assert r["completion_tokens"] <= 24 and r["finish_reason"] in ("stop", "length")
            assert r["response"] == split_completion(r["completion"], extraction).response
            assert r["response"] is not None  # after_think: the text itself
        m = bench["metrics"]
        assert bench["primary"] in m
        assert m["missing_response_rate"] == mean([r["response"] is None for r in records])
        assert m["truncated_rate"] == mean([r["finish_reason"] == "length" for r in records])
        assert m["completion_tokens"] == mean([r["completion_tokens"] for r in records])

    math_bench = data["benchmarks"]["math500"]
    ids = [f"math500/{row['unique_id']}" for row in rows["math500"]]
    assert [r["id"] for r in math_bench["records"]] == ids
    assert [r["reference"]["answer"] for r in math_bench["records"]] == [
        row["answer"] for row in rows["math500"]
    ]
    correct = [[r["scores"]["correct"]] for r in math_bench["records"]]
    assert all(c[0] in (0.0, 1.0) for c in correct)
    assert math_bench["primary"] == "greedy_pass@1"
    assert math_bench["metrics"]["greedy_pass@1"] == avg_at_k(correct)

    ifeval = data["benchmarks"]["ifeval"]
    strict, loose = [], []
    for r, row in zip(ifeval["records"], rows["ifeval"]):
        assert r["id"] == f"ifeval/{row['key']}"
        n = len(row["instruction_id_list"])
        assert len(r["scores"]["strict"]) == len(r["scores"]["loose"]) == n
        for loose_flag, key in ((False, "strict"), (True, "loose")):  # rescore: same verdicts
            expected = ifeval_check(
                r["response"],
                row["instruction_id_list"],
                row["kwargs"],
                loose=loose_flag,
                prompt=row["prompt"],
            )
            assert r["scores"][key] == expected
        strict.append(r["scores"]["strict"])
        loose.append(r["scores"]["loose"])
    expected = ifeval_accuracies(strict, loose)
    assert {k: ifeval["metrics"][k] for k in expected} == expected
    assert all(in_unit(v) for v in expected.values())

    alpaca = data["benchmarks"]["alpacaeval"]
    scores = [r["scores"] for r in alpaca["records"]]
    assert all(s["judge"] == "reward_model" for s in scores)
    assert [s["win"] for s in scores] == [
        pairwise_outcome(s["rm_score"], s["ref_rm_score"]) for s in scores
    ]
    assert all(math.isfinite(s["rm_score"]) and math.isfinite(s["ref_rm_score"]) for s in scores)
    m = alpaca["metrics"]
    assert m["win_rate"] == pytest.approx(mean([s["win"] for s in scores]))
    assert m["rm_score"] == pytest.approx(mean([s["rm_score"] for s in scores]))
    assert m["ref_rm_score"] == pytest.approx(mean([s["ref_rm_score"] for s in scores]))
    assert in_unit(m["win_rate"]) and alpaca["primary"] == "win_rate"
    loaded = EvalResult.load(out)  # the file reads back into the API's result type
    assert loaded.headline()["alpacaeval"] == pytest.approx(m["win_rate"])


def test_evaluate_model_in_memory_with_sampling_is_seeded(tiny):
    cfg = EvalConfig(
        samples=2,
        temperature=1.0,
        max_new_tokens=12,
        limit=3,
        progress=False,
        template=TemplateConfig(name="zero_think", preamble=""),
    )
    pair = (tiny["model"], tiny["tokenizer"])
    specs = [BenchmarkSpec("tiny_math"), "tiny_if"]
    first = evaluate_model(pair, specs, cfg)
    again = evaluate_model(pair, ["tiny_if"], cfg)  # (tiny_if: no math-verify workers to start)
    other = evaluate_model(pair, ["tiny_if"], dataclasses.replace(cfg, seed=1))
    bench = first.benchmarks["tiny_math"]
    assert bench.primary == "reward" and bench.num_prompts == 3 and bench.samples == 2
    records = bench.records
    assert [r["sample"] for r in records] == [0, 1, 0, 1, 0, 1]
    assert [r["id"] for r in records[::2]] == [r["id"] for r in records[1::2]]
    rows = [[r["scores"]["correct"] for r in records[i : i + 2]] for i in (0, 2, 4)]
    assert bench.metrics["avg@2"] == avg_at_k(rows)
    counts = [(2, int(sum(row))) for row in rows]
    assert bench.metrics["pass@1"] == mean_pass_at_k(counts, 1)
    assert bench.metrics["pass@2"] == mean_pass_at_k(counts, 2)
    assert set(first.headline()) == {"tiny_math", "tiny_if"}

    def texts(result: EvalResult) -> list[str]:
        return [r["completion"] for r in result.benchmarks["tiny_if"].records]

    assert texts(first) == texts(again)  # the same seed gives the same completions
    assert texts(first) != texts(other)
    # a completion depends on (seed, prompt id, sample) only, not on the other prompts evaluated
    fewer = evaluate_model(pair, ["tiny_if"], dataclasses.replace(cfg, limit=2))
    assert texts(fewer) == texts(first)[:4]


def test_eval_of_a_run_directory_uses_its_config(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    tiny["model"].save_pretrained(run / "model")
    tiny["tokenizer"].save_pretrained(run / "model")
    template = {"name": "custom", "text": "Q: {prompt}\nA:"}
    config = {
        "data": {"template": template, "max_prompt_tokens": 200},
        "rollout": {"sampling": {"max_new_tokens": 8, "stop": ["</response>"]}},
        "rewards": {"reward_model": {"path": str(tiny["rm"]), "device": "cpu"}},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", str(run), "--bench", "tiny_chat", "--limit", "2", "--no-progress"]) == 0
    capsys.readouterr()
    data = json.loads((run / "eval_results.json").read_text())
    assert data["config"]["template"]["text"] == template["text"]
    assert data["config"]["max_new_tokens"] == 8
    bench = data["benchmarks"]["tiny_chat"]
    assert all(r["completion_tokens"] <= 8 for r in bench["records"])
    rewards = [r["scores"]["reward"] for r in bench["records"]]
    assert bench["metrics"]["reward"] == pytest.approx(mean(rewards))
    for r in bench["records"]:  # the training reward: 0 without a response, else the RM score
        expected = 0.0 if r["response"] is None else r["scores"]["rm_score"]
        assert r["scores"]["reward"] == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--bench", "gsm9k=x.json"],
            "unknown benchmark 'gsm9k'; valid names: aime24, aime25, alpacaeval",
        ),
        (["--bench", "tiny_chat"], "pass --reward-model DIR"),
        (["--bench", "ifeval=/nonexistent/ifeval.json"], "does not exist"),
    ],
)
def test_command_errors_are_one_line(tiny, argv, message, capsys):
    assert main(["eval", str(tiny["policy"]), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_missing_model_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--bench", "tiny_math"]) == 2
    assert "model directory" in capsys.readouterr().err


def test_a_saved_tiny_model_loads_with_its_own_tokenizer(tiny):
    # AutoTokenizer would load the tiny Qwen2's tokenizer as Qwen2Tokenizer, which drops spaces
    model, tokenizer = load_model(tiny["policy"], EvalConfig(device="cpu"))
    text = "User: <query>What is 2 - 0?</query>\nAssistant: <think>x</think> <response>ok"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == tiny["tokenizer"](text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text and tokenizer.padding_side == "left"
    assert not model.training


def test_tiny_domains_match_the_trainers_held_out_evaluation(tiny):
    """Oracle: the trainer's own held-out evaluation (same prompts, backend and reward router)."""
    from mgs.data.pipeline import DataConfig, load_eval_prompts
    from mgs.data.sources import SourceConfig
    from mgs.data.templates import SHORT_ZERO_THINK_PREAMBLE, TemplateConfig
    from mgs.eval.heldout import evaluate_heldout
    from mgs.rewards import MathRewardConfig, RewardsConfig
    from mgs.rewards.router import RewardRouter
    from mgs.rl.hf_generate import HFGenerateBackend
    from mgs.rl.rollout import SamplingConfig

    model, tokenizer = tiny["model"], tiny["tokenizer"]
    extraction = ExtractionConfig(on_missing_response="after_think")  # untrained: score the text
    data = DataConfig(
        sources=[
            SourceConfig(domain="tiny_math", synthetic="tiny_math"),
            SourceConfig(domain="tiny_if", synthetic="tiny_if"),
        ],
        template=TemplateConfig(name="zero_think", preamble=SHORT_ZERO_THINK_PREAMBLE),
        max_prompt_tokens=None,
    )
    examples = [ex for pool in load_eval_prompts(data, tokenizer, 24).values() for ex in pool]
    rewards = RewardsConfig(
        routes={"tiny_math": "math", "tiny_if": "ifeval"},
        extraction=extraction,
        math=MathRewardConfig(num_workers=1),
    )
    backend = HFGenerateBackend(model, tokenizer, max_prompt_tokens=4096, micro_batch_size=32)
    sampling = SamplingConfig(max_new_tokens=24, stop=["</response>"])
    with RewardRouter(rewards) as router:
        trainer_view = evaluate_heldout(
            backend, router, examples, sampling, samples=1, temperature=0.0, seed=0
        )
    cfg = EvalConfig(
        template=TemplateConfig(name="zero_think", preamble=SHORT_ZERO_THINK_PREAMBLE),
        extraction=extraction,
        max_new_tokens=24,
        limit=24,
        math=MathRewardConfig(num_workers=1),
        progress=False,
    )
    ours = evaluate_model((model, tokenizer), ["tiny_math", "tiny_if"], cfg)
    for name, bench in ours.benchmarks.items():
        assert bench.metrics["reward"] == pytest.approx(trainer_view[name]["reward"])
        assert bench.metrics["completion_tokens"] == pytest.approx(trainer_view[name]["length"])
        assert bench.num_prompts == trainer_view[name]["n"] == 24
    # not all zeros: an untrained model's symbol soup has no words, so it follows "fewer than 5
    # words" (the whole completion is scored with after_think)
    assert ours.benchmarks["tiny_if"].metrics["reward"] > 0
