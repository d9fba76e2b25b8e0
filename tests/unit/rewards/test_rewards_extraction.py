"""Response extraction: the last complete response block, the missing-tag switch, chat template."""

from __future__ import annotations

import pytest

from mgs.errors import ConfigError
from mgs.rewards.extraction import ExtractionConfig, Parsed, split_completion

ZERO = ExtractionConfig()
AFTER = ExtractionConfig(on_missing_response="after_think")


def test_thought_and_response_are_split():
    text = "<think>7*6 is 42</think>\n<response> The answer is 42. </response>"
    assert split_completion(text, ZERO) == Parsed("7*6 is 42", "The answer is 42.", False)


def test_last_complete_block_wins_and_trailing_text_is_ignored():
    text = "<response>first</response> <response>second</response> junk 99 <response>unclosed"
    parsed = split_completion(text, ZERO)
    assert parsed.response == "second"
    assert parsed.missing_tag is False


def test_opening_tag_between_blocks_takes_the_nearest_one():
    # The last </response> pairs with the last <response> before it.
    assert split_completion("<response>a <response>b</response>", ZERO).response == "b"


@pytest.mark.parametrize(
    "text",
    ["<think>only a thought</think> 42", "no tags at all 42", "<response>never closed 42"],
)
def test_missing_response_scores_zero_by_default(text):
    parsed = split_completion(text, ZERO)
    assert parsed.response is None
    assert parsed.missing_tag is True


def test_after_think_falls_back_to_text_after_the_thought():
    parsed = split_completion("<think>secret 7</think> the answer is 42", AFTER)
    assert parsed == Parsed("secret 7", "the answer is 42", True)


def test_after_think_drops_a_dangling_response_opener_and_never_returns_the_thought():
    parsed = split_completion("<think>7</think><response>42", AFTER)
    assert parsed.response == "42"
    assert "7" not in parsed.response


def test_after_think_without_any_tag_uses_the_whole_text():
    assert split_completion("  just 42 ", AFTER).response == "just 42"


def test_chat_template_uses_the_whole_completion():
    cfg = ExtractionConfig(template="chat")
    text = "<think>x</think> hello"
    assert split_completion(text, cfg) == Parsed(None, text, False)


def test_custom_tags():
    cfg = ExtractionConfig(response_open="<answer>", response_close="</answer>")
    assert split_completion("<answer>7</answer>", cfg).response == "7"


def test_empty_or_identical_tags_are_config_errors():
    with pytest.raises(ConfigError, match="response_open is empty"):
        ExtractionConfig(response_open="")
    with pytest.raises(ConfigError, match="distinct tags"):
        ExtractionConfig(response_open="|", response_close="|")
