"""Templates: hand-written expected texts, the tokenizer's own chat template as oracle, length filter."""

from __future__ import annotations

import pytest

from mgs.data.example import Example
from mgs.data.templates import (
    ZERO_THINK_PREAMBLE,
    TemplateConfig,
    render_examples,
    render_prompt,
)
from mgs.errors import ConfigError, DataError, UnknownNameError
from mgs.models.tiny import build_tiny_tokenizer

ONE_TURN = ({"role": "user", "content": "What is 2+2?"},)
MULTI_TURN = (
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name a colour."},
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_zero_think_text():
    assert render_prompt(ONE_TURN, TemplateConfig()) == (
        f"{ZERO_THINK_PREAMBLE}\nUser: What is 2+2?\nAssistant:"
    )
    assert render_prompt(MULTI_TURN, TemplateConfig()) == (
        f"{ZERO_THINK_PREAMBLE}\nUser: Hi\nAssistant: Hello!\nUser: Name a colour.\nAssistant:"
    )
    assert (
        "<think> </think>" in ZERO_THINK_PREAMBLE
        and "<response> </response>" in ZERO_THINK_PREAMBLE
    )


def test_plain_is_the_user_text_and_refuses_conversations():
    assert render_prompt(ONE_TURN, TemplateConfig(name="plain")) == "What is 2+2?"
    with pytest.raises(DataError, match="single-turn prompts, but one has 3 messages"):
        render_prompt(MULTI_TURN, TemplateConfig(name="plain"))


def test_custom_replaces_only_its_placeholders():
    cfg = TemplateConfig(name="custom", text="Q: {prompt} -> \\boxed{}\n{conversation}")
    assert render_prompt(MULTI_TURN, cfg) == (
        "Q: Name a colour. -> \\boxed{}\nUser: Hi\nAssistant: Hello!\nUser: Name a colour."
    )


def test_chat_template_matches_the_tokenizer_and_adds_the_system_prompt(tokenizer):
    expected = tokenizer.apply_chat_template(
        list(MULTI_TURN), tokenize=False, add_generation_prompt=True
    )
    assert render_prompt(MULTI_TURN, TemplateConfig(name="chat_template"), tokenizer) == expected
    with_system = render_prompt(
        ONE_TURN, TemplateConfig(name="chat_template", system_prompt="Think first."), tokenizer
    )
    assert with_system == (
        "<|im_start|>system\nThink first.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_needs_a_tokenizer_with_one(tokenizer):
    with pytest.raises(DataError, match="needs a tokenizer with a chat template"):
        render_prompt(ONE_TURN, TemplateConfig(name="chat_template"), None)
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{{ raise_exception('no system role') if messages[0]['role'] == 'system' }}x"
    )
    with pytest.raises(DataError, match="chat template failed on a prompt: no system role"):
        render_prompt(ONE_TURN, TemplateConfig(name="chat_template", system_prompt="s"), tokenizer)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        (
            {"name": "llama"},
            UnknownNameError,
            "valid names: chat_template, custom, plain, zero_think",
        ),
        ({"name": "custom"}, ConfigError, "must contain {prompt} or {conversation}"),
        ({"name": "custom", "text": "no slot"}, ConfigError, "must contain"),
        ({"text": "Q: {prompt}"}, ConfigError, "only read by the custom template"),
        ({"system_prompt": "x"}, ConfigError, "only read by template.name: chat_template"),
    ],
)
def test_bad_template_configs(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        TemplateConfig(**kwargs)


def test_render_examples_drops_exactly_the_prompts_over_the_limit(tokenizer):
    # Character-level tokenizer: "Q: " + text is 3 + len(text) tokens.
    cfg = TemplateConfig(name="custom", text="Q: {prompt}")
    examples = [
        Example(f"s/{i}", "chat", ({"role": "user", "content": "x" * n},))
        for i, n in enumerate([1, 7, 8, 20])
    ]
    kept, too_long = render_examples(examples, cfg, tokenizer, max_tokens=10)
    assert [ex.uid for ex in kept] == ["s/0", "s/1"]  # 4 and 10 tokens
    assert [ex.uid for ex in too_long] == ["s/2", "s/3"]  # 11 and 23 tokens
    assert kept[1].prompt == "Q: xxxxxxx"
    everything, none = render_examples(examples, cfg, None, max_tokens=None)
    assert len(everything) == 4 and none == []


def test_tags_count_as_single_tokens_in_the_limit(tokenizer):
    cfg = TemplateConfig(name="custom", text="{prompt}")
    example = Example("s/0", "math", ({"role": "user", "content": "<think>\\boxed{1}"},))
    kept, _ = render_examples([example], cfg, tokenizer, max_tokens=4)  # <think>, \boxed{, 1, }
    assert len(kept) == 1
    _, too_long = render_examples([example], cfg, tokenizer, max_tokens=3)
    assert len(too_long) == 1
