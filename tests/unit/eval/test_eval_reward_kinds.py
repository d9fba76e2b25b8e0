"""Benchmarks scored by a registered reward (IFBench, MMLU-Redux, PopQA, ZebraLogic): per-sample
scores and hand-worked aggregates; the math suite on a tiny in-process model."""

from __future__ import annotations

import json

import pytest

from mgs.data.example import Example
from mgs.errors import ConfigError
from mgs.eval.benchmarks import BENCHMARKS, BenchmarkSpec
from mgs.eval.config import EvalConfig
from mgs.eval.scoring import Sample, Scorers, aggregate, score_samples

SOLUTION = {"header": ["House", "Name"], "rows": [["1", "Eric"], ["2", "Arnold"]]}


def scored(kind: str, rows: list[tuple[Example, str | None]], greedy=True, pass_k=None):
    samples = [Sample(ex, response or "", response) for ex, response in rows]
    scores = score_samples(BENCHMARKS[kind], samples, Scorers(EvalConfig(progress=False)))
    records = [
        {"id": s.example.uid, "response": s.response, "finish_reason": "stop",
         "completion_tokens": 3, "scores": sc}
        for s, sc in zip(samples, scores)
    ]  # fmt: skip
    return scores, aggregate(BENCHMARKS[kind], records, greedy=greedy, pass_k=pass_k)


def mc(uid: str, answer: int) -> Example:
    return Example(uid, "mmlu_redux", ({"role": "user", "content": "Q"},),
                   {"choices": ["a", "b", "c", "d"], "answer": answer})  # fmt: skip


def test_mmlu_redux_accuracy_greedy_and_sampled():
    rows = [(mc("m/0", 0), "answer: A"), (mc("m/1", 1), "answer: C"), (mc("m/2", 2), None)]
    scores, metrics = scored("mmlu_redux", rows)
    assert [s["correct"] for s in scores] == [1.0, 0.0, 0.0]
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics[
        "missing_response_rate"
    ] == pytest.approx(1 / 3)
    # two samples per prompt: prompt 0 right once, prompt 1 right twice
    rows = [(mc("m/0", 0), "A"), (mc("m/0", 0), "B"), (mc("m/1", 1), "B"), (mc("m/1", 1), "(B)")]
    _, metrics = scored("mmlu_redux", rows, greedy=False)
    assert metrics["avg@2"] == pytest.approx(0.75) and metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["pass@2"] == pytest.approx(1.0) and metrics["reward"] == pytest.approx(0.75)


def test_ifbench_instruction_metrics():
    def ex(uid, ids):
        return Example(uid, "ifbench", ({"role": "user", "content": "p"},),
                       {"instruction_id_list": ids, "kwargs": [{}] * len(ids)})  # fmt: skip

    rows = [
        (ex("i/0", ["format:no_whitespace", "punctuation:no_comma"]), "no-space"),  # 2 of 2
        (ex("i/1", ["format:no_whitespace", "punctuation:no_comma"]), "a, b"),  # 0 of 2
        (ex("i/2", ["format:no_whitespace"]), "Sure:\nok"),  # strict no, loose yes
    ]
    scores, metrics = scored("ifbench", rows)
    assert [s["strict"] for s in scores] == [[True, True], [False, False], [False]]
    assert metrics["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert metrics["inst_level_strict_acc"] == pytest.approx(2 / 5)
    assert metrics["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert metrics["inst_level_loose_acc"] == pytest.approx(3 / 5)


def test_zebralogic_puzzle_and_cell_accuracy_and_popqa():
    def ex(uid):
        return Example(
            uid,
            "zebralogic",
            ({"role": "user", "content": "p"},),
            {"solution": json.dumps(SOLUTION)},
        )

    def answer(a, b):
        return json.dumps({"solution": {"House 1": {"Name": a}, "House 2": {"Name": b}}})

    rows = [
        (ex("z/0"), answer("Eric", "Arnold")),
        (ex("z/1"), answer("Eric", "Eric")),
        (ex("z/2"), "no idea"),
    ]
    _, metrics = scored("zebralogic", rows)
    assert metrics["puzzle_acc"] == pytest.approx(1 / 3)
    assert metrics["cell_acc"] == pytest.approx(3 / 6)  # 2 + 1 + 0 of 2 cells each
    assert metrics["no_answer_rate"] == pytest.approx(1 / 3)
    pop = Example(
        "p/0", "popqa", ({"role": "user", "content": "q"},), {"possible_answers": '["Paris"]'}
    )
    _, metrics = scored("popqa", [(pop, "It is paris."), (pop, "Lyon")])
    assert metrics["accuracy"] == pytest.approx(0.5)


def test_hub_defaults_and_spec_sources():
    assert BenchmarkSpec.parse("aime24").source == "HuggingFaceH4/aime_2024"
    assert BenchmarkSpec.parse("aime24").from_hub
    spec = BenchmarkSpec.parse("mmlu:mmlu_redux=edinburgh-dawg/mmlu-redux-2.0/anatomy")
    assert spec.from_hub and spec.name == "mmlu"
    assert not BenchmarkSpec.parse("gsm8k=data/gsm8k.jsonl").from_hub  # a file name, not an id


def test_math_suite_on_a_tiny_model(tmp_path, hub_offline, tokenizer, tiny_policy):
    from mgs.eval.suites import run_suite, suite_table
    from mgs.rewards.config import MathRewardConfig

    # the hub is offline: the five sets without a local file are skipped
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    rows = [{"id": i, "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(2)]
    (data / "aime24.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gsm = [{"question": "2 + 2?", "answer": "so\n#### 4"}]
    (data / "gsm8k" / "test.jsonl").write_text(json.dumps(gsm[0]) + "\n")
    model = tiny_policy(
        hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32
    )
    cfg = EvalConfig(samples=3, temperature=1.0, top_p=0.95, max_new_tokens=4, progress=False,
                     math=MathRewardConfig(num_workers=1))  # fmt: skip
    result, skipped = run_suite((model, tokenizer), "math", cfg, str(data))
    assert list(result.benchmarks) == ["aime24", "gsm8k"]
    assert result.benchmarks["aime24"].samples == 3  # avg@k set: --samples replaces k = 32
    assert (
        result.benchmarks["gsm8k"].samples == 1 and result.benchmarks["aime24"].primary == "avg@3"
    )
    assert [k for k, _ in skipped] == [
        "aime25",
        "amc23",
        "math500",
        "minerva_math",
        "olympiadbench",
    ]
    table = suite_table("math", result, skipped)
    assert "| aime24 | 2 | 3 | avg@3 |" in table and "**average**" in table
    assert "- skipped aime25: could not load Hugging Face dataset 'math-ai/aime25'" in table
    with pytest.raises(ConfigError, match="not both"):
        from mgs.eval.suites import check_suite_args

        check_suite_args("math", ["aime24"])
