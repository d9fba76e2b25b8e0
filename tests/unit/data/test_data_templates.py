"""Templates: hand-written expected texts, the tokenizer's own chat template as oracle, and the
length limit (filter or truncate, never from the left)."""

from __future__ import annotations

import pytest

from mgs.data.example import Example
from mgs.data.templates import (
    SHORT_ZERO_THINK_PREAMBLE,
    ZERO_THINK_PREAMBLE,
    TemplateConfig,
    render_examples,
    render_prompt,
)
from mgs.errors import ConfigError, DataError, UnknownNameError
from mgs.tiny.model import build_tiny_tokenizer

ONE_TURN = ({"role": "user", "content": "What is 2+2?"},)
MULTI_TURN = (
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name a colour."},
)


def test_zero_think_text():
    assert render_prompt(ONE_TURN, TemplateConfig()) == (
        f"{ZERO_THINK_PREAMBLE}\nUser: <query>What is 2+2?</query>\nAssistant:"
    )
    assert render_prompt(MULTI_TURN, TemplateConfig()) == (
        f"{ZERO_THINK_PREAMBLE}\nUser: <query>Hi</query>\nAssistant: Hello!\n"
        "User: <query>Name a colour.</query>\nAssistant:"
    )
    for preamble in (ZERO_THINK_PREAMBLE, SHORT_ZERO_THINK_PREAMBLE):
        assert "<think> </think>" in preamble and "<response> </response>" in preamble
    assert len(ZERO_THINK_PREAMBLE) > 300 and len(SHORT_ZERO_THINK_PREAMBLE) < 70


def test_zero_think_preamble_can_be_short_or_absent(tokenizer):
    short = render_prompt(ONE_TURN, TemplateConfig(preamble=SHORT_ZERO_THINK_PREAMBLE))
    assert short == (
        "Think in <think> </think>, answer in <response> </response>.\n"
        "User: <query>What is 2+2?</query>\nAssistant:"
    )
    # 105 characters, 60 tiny-tokenizer tokens: each of the 6 tags (51 characters) is one token.
    assert len(short) == 105
    assert len(tokenizer(short, add_special_tokens=False)["input_ids"]) == 60
    bare = render_prompt(ONE_TURN, TemplateConfig(preamble=""))
    assert bare == "User: <query>What is 2+2?</query>\nAssistant:"


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
        (
            {"name": "plain", "preamble": "Think."},
            ConfigError,
            "preamble is only read by template.name: zero_think",
        ),
    ],
)
def test_bad_template_configs(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        TemplateConfig(**kwargs)


def _ex(uid: str, question: str, suffix: str = "") -> Example:
    return Example(uid, "math", ({"role": "user", "content": question + suffix},), suffix=suffix)


def test_filter_drops_exactly_the_prompts_over_the_limit(tokenizer):
    # Character-level tokenizer: "Q: " + text is 3 + len(text) tokens.
    cfg = TemplateConfig(name="custom", text="Q: {prompt}")
    examples = [_ex(f"s/{i}", "x" * n) for i, n in enumerate([1, 7, 8, 20])]
    out = render_examples(examples, cfg, tokenizer, max_tokens=10)
    assert [ex.uid for ex in out.kept] == ["s/0", "s/1"]  # 4 and 10 tokens
    assert [ex.uid for ex in out.dropped] == ["s/2", "s/3"]  # 11 and 23 tokens
    assert out.truncated == []
    assert out.kept[1].prompt == "Q: xxxxxxx"
    everything = render_examples(examples, cfg, None, max_tokens=None)
    assert len(everything.kept) == 4 and everything.dropped == []


def test_truncate_cuts_the_end_of_the_question_and_keeps_template_and_suffix(tokenizer):
    # "User: " 6 + <query> 1 + </query> 1 + "\n" 1 + "Assistant:" 10 = 19 tokens of template,
    # " Box it." 8 tokens of suffix, "abcdefghij" 10 tokens of question: 37 in all.
    cfg = TemplateConfig(preamble="")
    examples = [_ex("s/0", "abcdefghij", " Box it."), _ex("s/1", "hi", " Box it.")]
    out = render_examples(examples, cfg, tokenizer, max_tokens=30, overlong="truncate")
    assert [ex.uid for ex in out.truncated] == ["s/0"] and out.dropped == []
    cut = out.truncated[0]
    assert cut.prompt == "User: <query>abc Box it.</query>\nAssistant:"  # 19 + 3 + 8 = 30
    assert cut.question == "abc Box it."  # the reward model sees what the policy saw
    assert [ex.uid for ex in out.kept] == ["s/0", "s/1"]
    assert out.kept[1].prompt == "User: <query>hi Box it.</query>\nAssistant:"  # 29: kept whole
    # 28 tokens leave one token of question; 27 leave none, so the prompt is dropped instead.
    assert render_examples(examples[:1], cfg, tokenizer, 28, "truncate").kept[0].question == (
        "a Box it."
    )
    at_27 = render_examples(examples[:1], cfg, tokenizer, 27, "truncate")
    assert at_27.kept == [] and [ex.uid for ex in at_27.dropped] == ["s/0"]


def test_truncate_never_loses_the_preamble_or_the_system_prompt(tokenizer):
    long_question = "word " * 200
    full = render_examples(
        [_ex("s/0", long_question)], TemplateConfig(), tokenizer, 400, "truncate"
    )
    (cut,) = full.truncated
    assert cut.prompt.startswith(ZERO_THINK_PREAMBLE + "\nUser: <query>word word")
    assert cut.prompt.endswith("</query>\nAssistant:")
    assert len(tokenizer(cut.prompt, add_special_tokens=False)["input_ids"]) == 400
    chat = TemplateConfig(name="chat_template", system_prompt="Be brief.")
    (cut,) = render_examples([_ex("s/0", long_question)], chat, tokenizer, 100, "truncate").kept
    assert cut.prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nword")
    assert cut.prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


class WordTokenizer:
    """A slow tokenizer (no character offsets): one token per space-separated word."""

    is_fast = False

    def __call__(self, texts, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": texts.split(" ")}
        return {"input_ids": [t.split(" ") for t in texts]}

    def decode(self, ids):
        return " ".join(ids)


def test_truncate_with_a_tokenizer_without_offsets():
    cfg = TemplateConfig(name="custom", text="Q: {prompt}")
    out = render_examples(
        [_ex("s/0", "one two three four five")], cfg, WordTokenizer(), 4, "truncate"
    )
    assert out.kept[0].prompt == "Q: one two three"


def test_unknown_overlong_policy_lists_the_valid_ones(tokenizer):
    with pytest.raises(UnknownNameError, match="valid names: filter, truncate"):
        render_examples([_ex("s/0", "x")], TemplateConfig(), tokenizer, 10, "cut_left")


def test_tags_count_as_single_tokens_in_the_limit(tokenizer):
    cfg = TemplateConfig(name="custom", text="{prompt}")
    example = Example("s/0", "math", ({"role": "user", "content": "<think>\\boxed{1}"},))
    out = render_examples([example], cfg, tokenizer, max_tokens=4)  # <think>, \boxed{, 1, }
    assert len(out.kept) == 1
    assert len(render_examples([example], cfg, tokenizer, max_tokens=3).dropped) == 1
