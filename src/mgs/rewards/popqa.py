"""PopQA (Mallen et al. 2023): is one of the accepted answers (aliases) in the response?

Rows (``akariasai/PopQA``): ``question`` and ``possible_answers``, the gold answer's aliases as a
list or as the JSON string the hub copy stores (``'["Mexico City", "CDMX"]'``). PopQA's own
evaluation counts a response correct when any alias occurs in it as a substring; we do the same,
case-insensitively (the original also tries the alias lower-cased and capitalised, which a
case-insensitive test covers), after collapsing runs of whitespace.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mgs.errors import DataError
from mgs.rewards.registry import DetailedReward

_SPACE = re.compile(r"\s+")


def aliases(value: Any) -> list[str]:
    """``possible_answers`` as a list of non-empty strings (a list, or a JSON list in a string)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [value]  # one plain answer
    if not isinstance(value, (list, tuple)):
        raise DataError(f"possible_answers must be a list of strings, got {value!r}")
    out = [str(v) for v in value if str(v).strip()]
    if not out:
        raise DataError("possible_answers is empty: a PopQA row needs at least one answer")
    return out


def matched_alias(response: str, answers: list[str]) -> str | None:
    """The first alias found in ``response`` (case-insensitive substring), or None."""
    text = _SPACE.sub(" ", response).lower()
    for answer in answers:
        if _SPACE.sub(" ", answer).strip().lower() in text:
            return answer
    return None


class PopQAReward(DetailedReward):
    """``reward(prompts, completions, possible_answers=[...])``: 1.0 when an alias of the gold
    answer appears in the response, else 0.0."""

    def details(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[dict[str, Any]]:
        """Per sample: ``reward`` = ``correct`` (1/0) and ``matched`` (the alias found, or None)."""
        golds = columns.get("possible_answers")
        if golds is None:
            raise DataError(
                "the popqa reward needs a 'possible_answers' column (PopQA's name); got columns: "
                f"{', '.join(sorted(columns)) or 'none'}"
            )
        out = []
        for response, gold in zip(completions, golds):
            hit = matched_alias(response, aliases(gold))
            correct = 0.0 if hit is None else 1.0
            out.append({"reward": correct, "correct": correct, "matched": hit})
        return out
