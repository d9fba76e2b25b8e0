"""Benchmark specs, the eval config, a run's defaults and the command line's flags: every user
mistake is a one-line error saying what to write."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from mgs.errors import ConfigError, DataError, UnknownNameError
from mgs.eval.benchmarks import BENCHMARKS, BenchmarkSpec, check_unique, load_benchmark
from mgs.eval.command import add_arguments, build_config, default_out
from mgs.eval.config import EvalConfig, config_from_run, default_config
from mgs.eval.runner import ModelLoadError, check_benchmarks, resolve_model_dir
from mgs.rewards import RewardModelConfig
from mgs.run_dir import RunDir
from mgs.tiny.model import build_tiny_tokenizer


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_spec_parsing():
    assert BenchmarkSpec.parse("math500=/d/m.json") == BenchmarkSpec("math500", "/d/m.json")
    assert BenchmarkSpec.parse("tiny_math") == BenchmarkSpec("tiny_math")
    spec = BenchmarkSpec.parse("aime24:math500=a=b.json")  # only the first = splits
    assert (spec.kind, spec.path, spec.name) == ("math500", "a=b.json", "aime24")


def test_unknown_benchmark_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as err:
        BenchmarkSpec.parse("gsm9k=x.json")
    assert "unknown benchmark 'gsm9k'" in str(err.value)
    for name in BENCHMARKS:
        assert name in str(err.value)


def test_spec_mistakes():
    with pytest.raises(ConfigError, match="--bench alpacaeval=PATH"):
        BenchmarkSpec.parse("alpacaeval")  # no default hub copy: a file is required
    assert BenchmarkSpec.parse("math500").source == "HuggingFaceH4/MATH-500"  # the hub default
    with pytest.raises(ConfigError, match="takes no file"):
        BenchmarkSpec.parse("tiny_math=x.json")
    with pytest.raises(ConfigError, match="empty path"):
        BenchmarkSpec.parse("ifeval=")
    with pytest.raises(ConfigError, match="label"):
        BenchmarkSpec.parse("a b:math500=x.json")
    with pytest.raises(ConfigError, match="both labelled 'math500'"):
        check_unique([BenchmarkSpec("math500", "a.json"), BenchmarkSpec("math500", "b.json")])
    check_unique([BenchmarkSpec("math500", "a.json"), BenchmarkSpec("math500", "b.json", "b")])
    with pytest.raises(ConfigError, match="no benchmark given"):
        check_unique([])


def test_missing_file_and_missing_judges_fail_before_any_model_is_loaded(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_benchmarks([BenchmarkSpec("ifeval", str(tmp_path / "nope.json"))], EvalConfig())
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"prompt": "hi"}\n')
    with pytest.raises(ConfigError, match="--reward-model DIR"):
        check_benchmarks([BenchmarkSpec("chat", str(chat))], EvalConfig())
    with pytest.raises(ConfigError, match="--reward-model DIR"):
        check_benchmarks([BenchmarkSpec("tiny_chat")], EvalConfig())
    with pytest.raises(ConfigError, match="--judge-url URL --judge-model NAME"):
        check_benchmarks([BenchmarkSpec("alpacaeval", str(chat))], EvalConfig())
    with_rm = EvalConfig(reward_model=RewardModelConfig(path="somewhere"))
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text('{"instruction": "hi", "output": "hello"}\n')
    check_benchmarks(
        [BenchmarkSpec("alpacaeval", str(alpaca)), BenchmarkSpec("tiny_chat")], with_rm
    )


def test_eval_config_validation():
    with pytest.raises(ConfigError, match=r"--temperature 0\.7"):
        EvalConfig(samples=4, temperature=0.0)
    with pytest.raises(ConfigError, match="--samples 8"):
        EvalConfig(samples=4, temperature=0.7, pass_k=[1, 8])
    assert EvalConfig(samples=4, temperature=0.7, pass_k=[1, 4]).greedy is False
    with pytest.raises(ConfigError):
        EvalConfig(limit=0)
    with pytest.raises(ConfigError, match="top_p"):
        EvalConfig(top_p=0.0)


def test_load_benchmark_limits_renders_and_reports_overlong_prompts(tmp_path):
    tokenizer = build_tiny_tokenizer()
    rows = [{"prompt": "short"}, {"prompt": "x" * 400}, {"prompt": "also short"}]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = BenchmarkSpec("chat", str(path))
    cfg = EvalConfig()
    loaded = load_benchmark(
        spec, cfg.template, tokenizer, limit=None, max_prompt_tokens=500, overlong="filter"
    )
    assert [ex.uid for ex in loaded.examples] == ["chat/0", "chat/2"]
    assert loaded.skipped == ["chat/1"]
    assert loaded.examples[0].prompt.endswith("User: <query>short</query>\nAssistant:")
    loaded = load_benchmark(
        spec, cfg.template, tokenizer, limit=1, max_prompt_tokens=None, overlong="filter"
    )
    assert len(loaded.examples) == 1 and loaded.skipped == []
    tiny = load_benchmark(
        BenchmarkSpec("tiny_if"),
        cfg.template,
        tokenizer,
        limit=5,
        max_prompt_tokens=None,
        overlong="filter",
    )
    assert len(tiny.examples) == 5 and tiny.examples[0].reference["instruction_id_list"]


def _run_dir(tmp_path, template: dict, rm_path: str = "builtin:tiny"):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    config = {
        "data": {"template": template, "max_prompt_tokens": 256},
        "rollout": {
            "decode": "auto",
            "sampling": {
                "n": 4,
                "temperature": 1.0,
                "max_new_tokens": 96,
                "top_k": 5,
                "stop": ["</response>"],
            },
        },
        "rewards": {
            "extraction": {"template": "zero_think", "on_missing_response": "after_think"},
            "ifeval": {"mode": "all", "variant": "loose"},
            "reward_model": {"path": rm_path, "device": "cpu", "max_length": 256},
        },
        "strategy": {"name": "mgs"},  # other sections are ignored
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run, config


def test_a_run_directory_lends_its_template_sampling_limits_and_rewards(tmp_path):
    custom = {"name": "custom", "text": "User: <query>{prompt}</query>\nAssistant:"}
    run, config = _run_dir(tmp_path, custom, rm_path="/models/rm")
    assert RunDir(run).is_trained() and not RunDir(run / "model").is_trained()
    cfg = default_config(run)
    assert cfg.template.name == "custom" and cfg.template.text == custom["text"]
    assert (cfg.max_new_tokens, cfg.max_prompt_tokens, cfg.stop) == (96, 256, ["</response>"])
    assert cfg.top_k == 5 and cfg.decode == "auto"  # the run's decode loop
    assert cfg.extraction.on_missing_response == "after_think"
    assert (cfg.ifeval.mode, cfg.ifeval.variant) == ("all", "loose")
    assert cfg.reward_model.path == "/models/rm" and cfg.reward_model.max_length == 256
    assert cfg.greedy and cfg.samples == 1  # decoding is not taken from the training rollouts
    assert default_config(tmp_path) == EvalConfig()  # not a run: the plain defaults
    config["rewards"]["reward_model"]["path"] = "builtin:tiny"
    assert config_from_run(config).reward_model.path is None  # never resolved: no model
    assert resolve_model_dir(run) == run / "model"
    checkpoint = run / "checkpoints" / "step_000002"  # a checkpoint: its model/ (was refused)
    (checkpoint / "model").mkdir(parents=True)
    (checkpoint / "model" / "config.json").write_text("{}")
    assert resolve_model_dir(checkpoint) == checkpoint / "model"
    assert default_config(checkpoint) == default_config(run)  # the run's template, stops...
    assert default_out(str(run)) == run / "eval_results.json"
    (run / "eval_results.json").write_text("{}")  # an earlier eval is never replaced
    assert default_out(str(run)) == run / "eval_results-2.json"


def test_flags_override_the_run_and_set_reaches_every_key(tmp_path):
    run, _ = _run_dir(tmp_path, {"name": "zero_think", "preamble": ""})
    args = parse(
        str(run),
        "--bench",
        "tiny_math",
        "--samples",
        "4",
        "--temperature",
        "0.7",
        "--reward-model",
        "/rm",
        "--set",
        "math.num_workers=3",
        "--limit",
        "5",
    )
    cfg = build_config(args)
    assert (cfg.samples, cfg.temperature, cfg.limit) == (4, 0.7, 5)
    assert cfg.decode == "auto"  # still the run's
    assert build_config(parse(str(run), "--decode", "fast")).decode == "fast"
    assert cfg.template.preamble == "" and cfg.max_new_tokens == 96  # still the run's
    assert cfg.reward_model.path == "/rm" and cfg.math.num_workers == 3
    chat = build_config(parse(str(run), "--template", "chat_template"))
    assert chat.template.name == "chat_template"
    assert chat.extraction.template == "chat" and chat.stop == []  # the model answers directly
    stops = build_config(parse(str(run), "--stop", "END", "--stop", "</answer>"))
    assert stops.stop == ["END", "</answer>"]
    assert build_config(parse(str(run), "--no-stop")).stop == []
    judge = build_config(
        parse(str(run), "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "j")
    )
    assert judge.judge is not None and judge.judge.model == "j"
    with pytest.raises(ConfigError, match="--judge-model NAME"):
        build_config(parse(str(run), "--judge-url", "http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match=r"unknown config key 'math\.workers'"):
        build_config(parse(str(run), "--set", "math.workers=3"))


def test_model_directory_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        resolve_model_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("steps: 1\n")
    with pytest.raises(ModelLoadError, match="no model/ folder"):
        resolve_model_dir(tmp_path)
