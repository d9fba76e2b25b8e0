"""Prompt templates: chat messages -> the text the policy continues.

- ``zero_think`` (the paper's setting, for base models): an instruction to think inside
  ``<think> </think>`` and answer inside ``<response> </response>``, then the conversation as
  ``User: ...`` lines, ending with ``Assistant:``. The wording follows DeepSeek-R1-Zero's template
  with RLMT's ``<response>`` tag; set ``template.text`` to use your own.
- ``chat_template``: the tokenizer's own chat template (instruct models), with an optional system
  prompt.
- ``plain``: the user's text unchanged (single-turn prompts only).
- ``custom``: ``template.text`` with ``{prompt}`` (the last user message) and ``{conversation}``
  (the ``User: ...`` transcript) replaced; other braces, such as ``\\boxed{}``, stay as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mgs.data.example import Example, Message
from mgs.dataclass_config import option
from mgs.errors import ConfigError, DataError, unknown_name

ZERO_THINK_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant "
    "answers it. The Assistant first thinks about the reasoning process in the mind and then "
    "provides the User with the response. The reasoning process and the response are enclosed "
    "within <think> </think> and <response> </response> tags, respectively, i.e., "
    "<think> reasoning process here </think> <response> response here </response>."
)
PLACEHOLDERS = ("{prompt}", "{conversation}")


@dataclass
class TemplateConfig:
    """How a prompt's chat messages become the policy's input text."""

    name: str = option(
        "zero_think", help="zero_think (base models), chat_template (instruct), plain, or custom."
    )
    text: str | None = option(
        None, help="custom only: the prompt text with {prompt} and/or {conversation} in it."
    )
    system_prompt: str | None = option(
        None, help="chat_template only: a system message put before the conversation."
    )

    def __post_init__(self) -> None:
        if self.name not in TEMPLATES:
            raise unknown_name("prompt template", self.name, list(TEMPLATES))
        if self.name == "custom":
            if not self.text or not any(p in self.text for p in PLACEHOLDERS):
                raise ConfigError(
                    "template.text must contain {prompt} or {conversation}; write e.g. "
                    "text: 'Question: {prompt}\\nAnswer:'"
                )
        elif self.text is not None:
            raise ConfigError(
                f"template.text is only read by the custom template; set template.name: custom "
                f"(it is {self.name!r}) or remove text"
            )
        if self.system_prompt is not None and self.name != "chat_template":
            raise ConfigError(
                "template.system_prompt is only read by template.name: chat_template; "
                "put the instruction in template.text with name: custom instead"
            )


def transcript(messages: Sequence[Message]) -> str:
    """``User: ...`` / ``Assistant: ...`` / ``System: ...`` lines, one per message."""
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _zero_think(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any) -> str:
    return f"{ZERO_THINK_PREAMBLE}\n{transcript(messages)}\nAssistant:"


def _plain(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any) -> str:
    if len(messages) != 1:
        raise DataError(
            f"template plain renders single-turn prompts, but one has {len(messages)} messages; "
            "use template.name: zero_think or chat_template for conversations"
        )
    return messages[0]["content"]


def _custom(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any) -> str:
    assert cfg.text is not None  # checked in TemplateConfig
    text = cfg.text.replace("{conversation}", transcript(messages))
    return text.replace("{prompt}", messages[-1]["content"])


def _chat_template(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "template chat_template needs a tokenizer with a chat template, and this one has "
            "none; use template.name: zero_think (base models) or a custom text"
        )
    conversation = list(messages)
    if cfg.system_prompt is not None:
        conversation = [{"role": "system", "content": cfg.system_prompt}, *conversation]
    try:
        return tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:  # jinja errors: e.g. a template that rejects system messages
        raise DataError(f"the tokenizer's chat template failed on a prompt: {exc}") from None


TEMPLATES: dict[str, Callable[[Sequence[Message], TemplateConfig, Any], str]] = {
    "zero_think": _zero_think,
    "chat_template": _chat_template,
    "plain": _plain,
    "custom": _custom,
}


def render_prompt(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any = None) -> str:
    """The policy's input text for one conversation."""
    return TEMPLATES[cfg.name](messages, cfg, tokenizer)


def render_examples(
    examples: list[Example], cfg: TemplateConfig, tokenizer: Any, max_tokens: int | None
) -> tuple[list[Example], list[Example]]:
    """Fill in every example's prompt; return ``(kept, too_long)``.

    ``too_long`` holds the prompts longer than ``max_tokens`` tokens of ``tokenizer`` (never
    silently lost: the caller reports them). ``max_tokens=None`` keeps everything.
    """
    rendered = [ex.with_prompt(render_prompt(ex.messages, cfg, tokenizer)) for ex in examples]
    if max_tokens is None:
        return rendered, []
    lengths = [
        len(ids)
        for ids in tokenizer([ex.prompt for ex in rendered], add_special_tokens=False)["input_ids"]
    ]
    kept = [ex for ex, n in zip(rendered, lengths) if n <= max_tokens]
    too_long = [ex for ex, n in zip(rendered, lengths) if n > max_tokens]
    return kept, too_long
