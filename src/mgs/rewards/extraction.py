"""Split a generated completion into its thought and its response.

Rewards must see the response only: a number in the prompt or a keyword in the thought must never
earn reward. The zero-think template asks the model for ``<think> ... </think> <response> ...
</response>``; a model with its own chat template (``template: chat``) answers directly, so the
whole completion is the response.

Written by hand (a few string searches) because the rules are ours: the *last* complete response
block wins (a model that restarts its answer is judged on the final one), text after
``</response>`` is ignored, and a missing tag follows ``on_missing_response``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgs.dataclass_config import option
from mgs.errors import ConfigError


@dataclass
class ExtractionConfig:
    """Where the response part of a completion is."""

    template: Literal["zero_think", "chat"] = option(
        "zero_think",
        help="zero_think: the response is inside the response tags; chat: a model with its own "
        "chat template, the whole completion is the response.",
    )
    think_open: str = option("<think>", help="Tag that opens the thought.")
    think_close: str = option("</think>", help="Tag that closes the thought.")
    response_open: str = option("<response>", help="Tag that opens the response.")
    response_close: str = option("</response>", help="Tag that closes the response.")
    on_missing_response: Literal["zero", "after_think"] = option(
        "zero",
        help="No complete response block: 'zero' scores the sample 0 without calling the reward; "
        "'after_think' uses the text after the last think-close tag (or the whole completion "
        "when there is no thought either).",
    )

    def __post_init__(self) -> None:
        for name in ("think_open", "think_close", "response_open", "response_close"):
            if not getattr(self, name):
                raise ConfigError(
                    f"rewards.extraction.{name} is empty; write the tag text, e.g. "
                    f"{getattr(ExtractionConfig, name, '<response>')!r}"
                )
        if self.response_open == self.response_close or self.think_open == self.think_close:
            raise ConfigError(
                "rewards.extraction: an opening tag equals its closing tag; use distinct tags "
                "such as <response> and </response>"
            )


@dataclass(frozen=True)
class Parsed:
    """A completion split into parts. ``response`` is None when no response could be found."""

    thought: str | None
    response: str | None
    missing_tag: bool  # the response block (or, for after_think, every tag) was absent


def split_completion(text: str, cfg: ExtractionConfig) -> Parsed:
    """Thought and response of one completion, following ``cfg`` (see :class:`ExtractionConfig`).

    >>> split_completion("<think>2+2</think> <response>4</response>", ExtractionConfig())
    Parsed(thought='2+2', response='4', missing_tag=False)
    """
    if cfg.template == "chat":
        return Parsed(thought=None, response=text, missing_tag=False)
    thought = _last_block(text, cfg.think_open, cfg.think_close)
    response = _last_block(text, cfg.response_open, cfg.response_close)
    if response is not None:
        return Parsed(thought=thought, response=response.strip(), missing_tag=False)
    if cfg.on_missing_response == "zero":
        return Parsed(thought=thought, response=None, missing_tag=True)
    # after_think: what follows the last </think>, minus a dangling <response> opener.
    cut = text.rfind(cfg.think_close)
    rest = text[cut + len(cfg.think_close) :] if cut >= 0 else text
    opener = rest.find(cfg.response_open)
    if opener >= 0:
        rest = rest[opener + len(cfg.response_open) :]
    return Parsed(thought=thought, response=rest.strip(), missing_tag=True)


def _last_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """Content of the last ``open ... close`` block, or None when there is no complete block.

    The last closing tag is found first, then the last opening tag before it: so
    ``<r>a</r> <r>b</r> junk`` gives ``b`` and a stray opener after the block is ignored.
    """
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return text[start + len(open_tag) : end]
