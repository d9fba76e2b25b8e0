"""DataConfig -> mixture: YAML round trips on the real files, the length limit (filter or truncate)
and its report, and the built-in domains' demonstrations and held-out prompts."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from conftest import shared_file
from mgs.data.pipeline import (
    DataConfig,
    build_mixture,
    load_demonstrations,
    load_domains,
    load_eval_prompts,
)
from mgs.data.sources import SourceConfig, check_sources
from mgs.data.templates import SHORT_ZERO_THINK_PREAMBLE, ZERO_THINK_PREAMBLE, TemplateConfig
from mgs.dataclass_config import from_dict
from mgs.errors import ConfigError, DataError


def tiny_data(**changes) -> DataConfig:
    """The three generated tiny domains, with the short zero-think preamble."""
    sources = [
        SourceConfig(domain="math", synthetic="tiny_math"),
        SourceConfig(domain="if", synthetic="tiny_if"),
        SourceConfig(domain="chat", synthetic="tiny_chat"),
    ]
    template = TemplateConfig(name="zero_think", preamble=SHORT_ZERO_THINK_PREAMBLE)
    return DataConfig(**{"sources": sources, "template": template, **changes})


def test_library_defaults_are_neutral():
    cfg = DataConfig()
    assert cfg.sources == [] and cfg.template == TemplateConfig()  # the paper's zero-think
    with pytest.raises(ConfigError, match=r"data\.sources is empty"):
        check_sources(cfg.sources)


def test_the_tiny_math_if_and_chat_demo(tokenizer):
    mix, report = build_mixture(tiny_data(), tokenizer)
    assert list(mix.domains) == ["math", "if", "chat"]
    assert mix.phases[0].counts == {"math": 22, "if": 21, "chat": 21}  # 64 in equal shares
    assert report.dropped == 0
    assert report.lines() == [
        "tiny_math -> math: 372 prompts",
        "tiny_if -> if: 497 prompts",
        "tiny_chat -> chat: 57 prompts",
    ]
    first = mix.batch(0).examples[0]
    assert first.prompt == (
        f"{SHORT_ZERO_THINK_PREAMBLE}\nUser: <query>{first.question}</query>\nAssistant:"
    )


def test_yaml_config_builds_a_sequential_real_data_mixture(tokenizer):
    math = shared_file("math500.json")
    chat = shared_file("wildchat-if_val.parquet")
    text = f"""
sources:
  - {{domain: math, path: {math}, preset: math}}
  - {{domain: chat, path: {chat}, preset: wildchat}}
mixture:
  batch_size: 8
  phases:
    - {{domain: math, steps: 2}}
    - {{domain: chat, epochs: 1}}
    - {{proportions: {{math: 3, chat: 1}}}}
template: {{name: custom, text: "Question: {{prompt}}"}}
max_prompt_tokens: null
"""
    cfg = from_dict(DataConfig, yaml.safe_load(text), "data")
    mix, report = build_mixture(cfg, tokenizer)
    assert {d: len(p) for d, p in mix.domains.items()} == {"math": 500, "chat": 250}
    assert [(ph.start, ph.stop) for ph in mix.phases] == [(0, 2), (2, 34), (34, None)]  # 250 / 8
    assert [ex.domain for ex in mix.batch(1).examples] == ["math"] * 8
    assert [ex.domain for ex in mix.batch(2).examples] == ["chat"] * 8
    assert [ex.domain for ex in mix.batch(34).examples] == ["math"] * 6 + ["chat"] * 2
    assert mix.batch(0).examples[0].prompt.startswith("Question: ")
    assert report.dropped == 0


def test_overlong_prompts_are_dropped_and_reported(tokenizer):
    path = shared_file("wildchat-if_val.parquet")
    cfg = DataConfig(
        sources=[SourceConfig(domain="chat", path=str(path), preset="wildchat")],
        template=TemplateConfig(name="plain"),
        max_prompt_tokens=896,
    )
    domains, report = load_domains(cfg, tokenizer)
    expected_long = sorted(u for u, n in _lengths(cfg, tokenizer).items() if n > 896)
    assert expected_long  # the real file has long prompts
    assert sorted(report.sources[0].too_long) == expected_long
    assert len(domains["chat"]) == 250 - len(expected_long) == report.sources[0].kept
    assert f"{len(expected_long)} of 250 dropped: longer than 896 tokens" in report.lines()[0]
    assert report.truncated == 0


def _lengths(cfg: DataConfig, tokenizer) -> dict[str, int]:
    """Oracle: every prompt's length, counted with the tokenizer directly, without a limit."""
    everything = load_domains(dataclasses.replace(cfg, max_prompt_tokens=None), None)[0]
    return {
        ex.uid: len(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
        for pool in everything.values()
        for ex in pool
    }


def test_overlong_prompts_can_be_truncated_instead_and_are_counted(tokenizer):
    path = shared_file("wildchat-if_val.parquet")
    cfg = DataConfig(
        sources=[SourceConfig(domain="chat", path=str(path), preset="wildchat")],
        template=TemplateConfig(name="zero_think"),
        max_prompt_tokens=896,
        overlong="truncate",
    )
    domains, report = load_domains(cfg, tokenizer)
    lengths = _lengths(cfg, tokenizer)
    expected_long = sorted(u for u, n in lengths.items() if n > 896)
    assert sorted(report.sources[0].truncated) == expected_long and report.dropped == 0
    assert len(domains["chat"]) == 250
    assert f"{len(expected_long)} of 250 truncated to 896 tokens" in report.lines()[0]
    full = {
        ex.uid: ex
        for ex in load_domains(dataclasses.replace(cfg, max_prompt_tokens=None), None)[0]["chat"]
    }
    for ex in domains["chat"]:
        n = len(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
        if ex.uid in expected_long:
            assert n == 896  # cut at a token boundary: one character per token here
            assert ex.prompt.startswith(ZERO_THINK_PREAMBLE + "\nUser: <query>")  # not cut left
            assert ex.prompt.endswith("</query>\nAssistant:")
            assert full[ex.uid].question.startswith(ex.question)  # the end was cut
            assert len(ex.question) < len(full[ex.uid].question)
        else:
            assert ex == full[ex.uid]


def test_a_domain_with_every_prompt_too_long_is_an_error(tokenizer):
    cfg = DataConfig(
        sources=[SourceConfig(domain="math", synthetic="tiny_math", size=4)], max_prompt_tokens=5
    )
    with pytest.raises(
        DataError,
        match=r"every prompt of domain 'math' is longer than data\.max_prompt_tokens=5.*truncate",
    ):
        load_domains(cfg, tokenizer)


def test_counting_tokens_needs_a_tokenizer():
    with pytest.raises(ConfigError, match="needs the policy's tokenizer"):
        load_domains(tiny_data(), None)
    with pytest.raises(ConfigError, match="max_prompt_tokens must be positive or null"):
        DataConfig(max_prompt_tokens=0)


def test_unknown_key_in_yaml_names_the_key_and_suggests():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data.mixture.batchsize'; did you mean 'batch_size'"
    ):
        from_dict(DataConfig, {"mixture": {"batchsize": 8}}, "data")
    with pytest.raises(ConfigError, match=r"data\.overlong must be one of 'filter', 'truncate'"):
        from_dict(DataConfig, {"overlong": "cut"}, "data")


def test_the_three_real_files_load_from_a_yaml_config_alone(tokenizer):
    text = f"""
sources:
  - {{domain: math, path: {shared_file("math500.json")}, preset: math}}
  - {{domain: ifeval, path: {shared_file("ifeval.json")}, preset: ifeval}}
  - {{domain: chat, path: {shared_file("wildchat-if_train.parquet")}, preset: wildchat}}
mixture:
  batch_size: 10
  proportions: {{math: 0.4, ifeval: 0.2, chat: 0.4}}
template: {{name: zero_think}}
max_prompt_tokens: null  # counting 10M characters one token each takes ~15 s; tested above
"""
    mix, report = build_mixture(from_dict(DataConfig, yaml.safe_load(text), "data"), None)
    assert [s.rows for s in report.sources] == [500, 541, 7544]
    assert mix.phases[0].counts == {"math": 4, "ifeval": 2, "chat": 4}
    batch = mix.batch(0)
    by_domain = batch.by_domain
    assert set(by_domain["math"][0].reference) == {"answer"}
    assert set(by_domain["ifeval"][0].reference) == {"instruction_id_list", "kwargs"}
    assert by_domain["chat"][0].reference == {}
    assert all(ex.prompt.startswith(ZERO_THINK_PREAMBLE) for ex in batch.examples)


def test_demonstrations_of_the_built_in_domains(tokenizer):
    cfg = tiny_data()
    demos = load_demonstrations(cfg, tokenizer)
    assert {d: len(v) for d, v in demos.items()} == {"math": 372, "if": 497, "chat": 57}
    train = {d: {ex.question for ex in pool} for d, pool in load_domains(cfg, tokenizer)[0].items()}
    for domain, pool in demos.items():
        assert {demo.example.question for demo in pool} == train[domain]
        for demo in pool:
            assert demo.prompt.endswith("Assistant:")
            assert demo.completion == " " + demo.example.metadata["completion"]
            assert demo.text == demo.prompt + demo.completion
    math = demos["math"][0]
    a, op, b = re.search(r"(\d) ([+-]) (\d)", math.example.question).groups()
    value = int(a) + int(b) if op == "+" else int(a) - int(b)
    assert (
        math.completion
        == f" <think>{a} {op} {b} = {value}</think> <response>\\boxed{{{value}}}</response>"
    )
    assert len(load_demonstrations(cfg, tokenizer, size=1000)["math"]) == 1000
    careless = load_demonstrations(cfg, tokenizer, careless=0.25)
    for domain, pool in careless.items():
        assert sum(d.careless for d in pool) == round(0.25 * len(pool))
        for demo, clean in zip(pool, demos[domain]):
            key = "careless_completion" if demo.careless else "completion"
            assert demo.example == clean.example
            assert demo.completion == " " + demo.example.metadata[key]
    assert careless == load_demonstrations(cfg, tokenizer, careless=0.25)  # seeded
    chat_template = dataclasses.replace(cfg, template=TemplateConfig(name="chat_template"))
    demo = load_demonstrations(chat_template, tokenizer)["chat"][0]
    assert demo.prompt.endswith("assistant\n") and demo.completion.startswith("<think>")


def test_held_out_prompts_are_disjoint_from_training_and_skip_file_sources(tokenizer):
    cfg = tiny_data(
        sources=[
            *tiny_data().sources,
            SourceConfig(domain="math", path=str(shared_file("math500.json")), preset="math"),
        ]
    )
    train, _ = load_domains(cfg, tokenizer)
    held = load_eval_prompts(cfg, tokenizer)
    assert {d: len(v) for d, v in held.items()} == {"math": 93, "if": 125, "chat": 15}
    for domain, pool in held.items():
        assert not {ex.question for ex in pool} & {ex.question for ex in train[domain]}
        assert all(ex.uid.startswith(f"tiny_{domain}-eval/") for ex in pool)
        assert all(ex.prompt.startswith(SHORT_ZERO_THINK_PREAMBLE) for ex in pool)
    assert [len(v) for v in load_eval_prompts(cfg, tokenizer, size=5).values()] == [5, 5, 5]
    files_only = DataConfig(sources=cfg.sources[3:])
    assert load_eval_prompts(files_only, tokenizer) == {}
    assert load_demonstrations(files_only, tokenizer) == {}
