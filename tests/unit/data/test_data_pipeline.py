"""DataConfig -> mixture: YAML round trip, the length filter on real data, and its report."""

from __future__ import annotations

import pytest
import yaml

from conftest import shared_file
from mgs.data.pipeline import DataConfig, build_mixture, load_domains
from mgs.data.sources import SourceConfig
from mgs.data.templates import TemplateConfig
from mgs.dataclass_config import from_dict
from mgs.errors import ConfigError, DataError
from mgs.models.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_default_is_the_tiny_math_and_chat_demo(tokenizer):
    mix, report = build_mixture(DataConfig(), tokenizer)
    assert list(mix.domains) == ["math", "chat"]
    assert mix.phases[0].counts == {"math": 32, "chat": 32}
    assert report.dropped == 0
    assert report.lines() == ["tiny_math -> math: 512 prompts", "tiny_chat -> chat: 512 prompts"]
    assert mix.batch(0).examples[0].prompt.endswith("\nAssistant:")


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
    - {{proportions: {{math: 1}}, steps: 2}}
    - {{proportions: {{chat: 1}}}}
template: {{name: custom, text: "Question: {{prompt}}"}}
max_prompt_tokens: null
"""
    cfg = from_dict(DataConfig, yaml.safe_load(text), "data")
    mix, report = build_mixture(cfg, tokenizer)
    assert {d: len(p) for d, p in mix.domains.items()} == {"math": 500, "chat": 250}
    assert [ex.domain for ex in mix.batch(1).examples] == ["math"] * 8
    assert [ex.domain for ex in mix.batch(2).examples] == ["chat"] * 8
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
    # Oracle: count with the tokenizer directly (character-level: ~one token per character).
    everything = load_domains(
        DataConfig(sources=cfg.sources, template=cfg.template, max_prompt_tokens=None), None
    )[0]
    lengths = {
        ex.uid: len(tokenizer(ex.prompt, add_special_tokens=False)["input_ids"])
        for ex in everything["chat"]
    }
    expected_long = sorted(u for u, n in lengths.items() if n > 896)
    assert expected_long  # the real file has long prompts
    assert sorted(report.sources[0].too_long) == expected_long
    assert len(domains["chat"]) == 250 - len(expected_long) == report.sources[0].kept
    assert f"{len(expected_long)} of 250 dropped: longer than 896 tokens" in report.lines()[0]


def test_a_domain_with_every_prompt_too_long_is_an_error(tokenizer):
    cfg = DataConfig(
        sources=[SourceConfig(domain="math", synthetic="tiny_math", size=4)], max_prompt_tokens=5
    )
    with pytest.raises(
        DataError, match=r"every prompt of domain 'math' is longer than data\.max_prompt_tokens=5"
    ):
        load_domains(cfg, tokenizer)


def test_counting_tokens_needs_a_tokenizer():
    with pytest.raises(ConfigError, match="needs the policy's tokenizer"):
        load_domains(DataConfig(), None)
    with pytest.raises(ConfigError, match="max_prompt_tokens must be positive or null"):
        DataConfig(max_prompt_tokens=0)


def test_unknown_key_in_yaml_names_the_key_and_suggests():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data.mixture.batchsize'; did you mean 'batch_size'"
    ):
        from_dict(DataConfig, {"mixture": {"batchsize": 8}}, "data")
