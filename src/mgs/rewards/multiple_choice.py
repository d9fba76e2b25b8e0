"""Multiple-choice accuracy (MMLU-Redux): the letter the response chose vs the gold answer.

Rows look like MMLU's: ``question``, ``choices`` (the options, in order) and ``answer`` (the
index of the right option, or its letter). The prompt lists the options as ``A. ...``, ``B. ...``
(:func:`render_choices`, used by the ``mmlu_redux`` source preset) and asks for the letter.

Which letter a free-form response chose (:func:`chosen_letter`), first rule that matches:

1. the last ``\\boxed{X}`` (the paper's math convention carried over);
2. the last "answer is X" / "answer: X" / "Answer - (X)" (case-insensitive, with optional
   parentheses, bold or a trailing period);
3. a response that *is* a letter: ``C``, ``(C)``, ``C.``, ``C) option text``, ``**C**`` (but
   not a sentence that starts with "A").

A letter outside the question's options counts as no choice. Hand-written rather than a library:
evaluation harnesses each carry their own regexes (lm-eval's are per task and need its task
config); these three rules are the common core, and each has a test.
"""

from __future__ import annotations

import re
import string
from typing import Any

from mgs.errors import DataError
from mgs.rewards.boxed import last_boxed
from mgs.rewards.registry import DetailedReward

LETTERS = string.ascii_uppercase
_ANSWER_IS = re.compile(
    r"answer\s*(?:is|:|-)?\s*(?:option\s*)?[*_]*\(?([A-Z])\)?[*_]*(?=[\s.,;:!)]|$)",
    re.IGNORECASE,
)
# A response that is a letter: "(C) ...", "C) ...", "C. ...", "C: ...", "**C**", "C" (not "A cat").
_BARE = re.compile(r"^[\s*_]*(?:\(([A-Z])\)|([A-Z])(?:[.:)]|[*_]+|\s*$))")


def render_choices(question: str, choices: list[str]) -> str:
    """The prompt of a multiple-choice row: the question, then one ``X. option`` line each."""
    if not 2 <= len(choices) <= len(LETTERS):
        raise DataError(f"a multiple-choice row needs 2 to 26 choices, got {len(choices)}")
    lines = [f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices)]
    return (
        f"{question.strip()}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter of the correct "
        "option."
    )


def gold_letter(answer: Any, n_choices: int) -> str:
    """The gold answer as a letter: an index (int or digit string) or a letter."""
    if isinstance(answer, bool):
        raise DataError(f"multiple-choice answer {answer!r} is neither an index nor a letter")
    if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()):
        index = int(answer)
        if not 0 <= index < n_choices:
            raise DataError(f"answer index {index} is outside the {n_choices} choices")
        return LETTERS[index]
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        return answer.strip().upper()
    raise DataError(f"multiple-choice answer {answer!r} is neither an index nor a letter")


def chosen_letter(response: str, n_choices: int) -> str | None:
    """The option letter a response chose (rules in the module doc), or None."""
    valid = LETTERS[:n_choices]
    boxed = last_boxed(response)
    if boxed is not None:
        inner = re.sub(r"\\text\{([^}]*)\}", r"\1", boxed).strip().strip("()").strip()
        letter = inner[:1].upper()
        return letter if len(inner) >= 1 and letter in valid and _alone(inner) else None
    matches = [m.group(1).upper() for m in _ANSWER_IS.finditer(response)]
    matches = [m for m in matches if m in valid]
    if matches:
        return matches[-1]
    bare = _BARE.match(response)
    if bare:
        letter = (bare.group(1) or bare.group(2)).upper()
        return letter if letter in valid else None
    return None


def _alone(inner: str) -> bool:
    """``C``, ``C.`` or ``C) text`` inside a box: a letter, not a word starting with one."""
    return len(inner) == 1 or not inner[1].isalpha()


class MultipleChoiceReward(DetailedReward):
    """``reward(prompts, completions, choices=[...], answer=[...])``: 1.0 when the response chose
    the gold option, else 0.0 (no recognisable choice counts as wrong)."""

    def details(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[dict[str, Any]]:
        """Per sample: ``reward`` = ``correct`` (1/0), ``choice`` (a letter or None), ``gold``."""
        choices, answers = columns.get("choices"), columns.get("answer")
        if choices is None or answers is None:
            raise DataError(
                "the multiple_choice reward needs 'choices' and 'answer' columns (MMLU's names); "
                f"got columns: {', '.join(sorted(columns)) or 'none'}"
            )
        out = []
        for response, options, answer in zip(completions, choices, answers):
            n = len(options)
            gold = gold_letter(answer, n)
            choice = chosen_letter(response, n)
            correct = 1.0 if choice == gold else 0.0
            out.append({"reward": correct, "correct": correct, "choice": choice, "gold": gold})
        return out
