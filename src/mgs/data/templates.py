"""Prompt templates: chat messages -> the text the policy continues.

- ``zero_think`` (the paper's setting, for base models): a preamble telling the assistant to think
  inside ``<think> </think>`` and answer inside ``<response> </response>``, then the conversation
  with each user turn as ``User: <query>...</query>``, ending with the generation prompt
  ``Assistant:``. The preamble follows DeepSeek-R1-Zero's wording with RLMT's ``<response>`` tag
  (~370 characters); ``template.preamble`` replaces it, e.g. with :data:`SHORT_ZERO_THINK_PREAMBLE`
  for a character-level model, where every character is a token.
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

ZERO_THINK_PREAMBLE = (  # the paper's
    "A conversation between User and Assistant. The User asks a question, and the Assistant "
    "answers it. The Assistant first thinks about the reasoning process in the mind and then "
    "provides the User with the response. The reasoning process and the response are enclosed "
    "within <think> </think> and <response> </response> tags, respectively, i.e., "
    "<think> reasoning process here </think> <response> response here </response>."
)
SHORT_ZERO_THINK_PREAMBLE = "Think in <think> </think>, answer in <response> </response>."
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
    preamble: str | None = option(
        None,
        help="zero_think only: the instruction line before the conversation; null: the paper's "
        "(~370 characters); '' none. The tiny default uses a one-line version.",
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
        if self.preamble is not None and self.name != "zero_think":
            raise ConfigError(
                f"template.preamble is only read by template.name: zero_think (it is "
                f"{self.name!r}); remove preamble or set name: zero_think"
            )


def transcript(messages: Sequence[Message]) -> str:
    """``User: ...`` / ``Assistant: ...`` / ``System: ...`` lines, one per message."""
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _zero_think(messages: Sequence[Message], cfg: TemplateConfig, tokenizer: Any) -> str:
    lines = [
        f"User: <query>{m['content']}</query>"
        if m["role"] == "user"
        else f"{m['role'].capitalize()}: {m['content']}"
        for m in messages
    ]
    preamble = ZERO_THINK_PREAMBLE if cfg.preamble is None else cfg.preamble
    head = [preamble] if preamble else []
    return "\n".join([*head, *lines, "Assistant:"])


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


@dataclass
class Rendered:
    """Examples with their prompts rendered, split by what the length limit did to them."""

    kept: list[Example]  # within the limit (including the truncated ones)
    truncated: list[Example]  # kept, with the end of the last user message cut
    dropped: list[Example]  # over the limit and filtered out (or too long even when truncated)


def render_examples(
    examples: list[Example],
    cfg: TemplateConfig,
    tokenizer: Any,
    max_tokens: int | None,
    overlong: str = "filter",
) -> Rendered:
    """Fill in every example's prompt and apply the length limit.

    A prompt longer than ``max_tokens`` tokens of ``tokenizer`` is dropped (``overlong="filter"``)
    or (``"truncate"``) re-rendered with the *end* of its last user message cut, keeping the
    source's suffix (e.g. "put your final answer within \\boxed{}"): the template's instructions
    and generation prompt always survive, as a cut from the left would not. A prompt whose
    template and suffix alone exceed the limit is dropped. ``max_tokens=None`` keeps everything.
    """
    if overlong not in ("filter", "truncate"):
        raise unknown_name("overlong-prompt policy", overlong, ["filter", "truncate"])
    rendered = [ex.with_prompt(render_prompt(ex.messages, cfg, tokenizer)) for ex in examples]
    if max_tokens is None:
        return Rendered(rendered, [], [])
    lengths = _count(tokenizer, [ex.prompt for ex in rendered])
    out = Rendered([], [], [])
    for ex, n in zip(rendered, lengths):
        if n <= max_tokens:
            out.kept.append(ex)
            continue
        cut = _truncate(ex, cfg, tokenizer, max_tokens) if overlong == "truncate" else None
        if cut is None:
            out.dropped.append(ex)
        else:
            out.kept.append(cut)
            out.truncated.append(cut)
    return out


def _count(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _truncate(ex: Example, cfg: TemplateConfig, tokenizer: Any, max_tokens: int) -> Example | None:
    """``ex`` with the end of its question (before the suffix) cut to fit, or None if impossible."""
    question = ex.question
    suffix = ex.suffix if ex.suffix and question.endswith(ex.suffix) else ""
    body = question[: len(question) - len(suffix)]
    keep, prefix = _prefixes(tokenizer, body)
    while keep > 0:
        short = ex.with_question(prefix(keep) + suffix)
        prompt = render_prompt(short.messages, cfg, tokenizer)
        n = _count(tokenizer, [prompt])[0]
        if n <= max_tokens:
            return short.with_prompt(prompt)
        keep -= max(1, n - max_tokens)
    return None


def _prefixes(tokenizer: Any, text: str) -> tuple[int, Callable[[int], str]]:
    """``text``'s token count and ``prefix(k)``, the text of its first ``k`` tokens.

    Fast tokenizers give character offsets, so a prefix is an exact slice of ``text``; other
    tokenizers decode the first ``k`` ids.
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ends = [end for _, end in enc["offset_mapping"]]
        return len(ends), lambda k: text[: ends[k - 1]] if k > 0 else ""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(ids), lambda k: tokenizer.decode(ids[:k])
