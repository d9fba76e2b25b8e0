"""Named row transforms that source presets use where a column is not usable as it is.

- :data:`CONVERTERS` turn a reference cell into what its reward reads: ``math_answer`` (a list's
  first element, ``27.0`` -> ``"27"``, surrounding ``$`` removed, the last ``\\boxed{}`` of a
  worked solution) and ``gsm8k`` (the number after ``####``, thousands separators removed).
- :data:`PROMPT_BUILDERS` write the user message of rows whose prompt is spread over columns:
  ``multiple_choice`` (question + lettered options) and ``zebra_grid`` (the puzzle + the JSON
  answer format of ZeroEval, with the grid's houses and attributes).

A preset names them (``Layout.convert``, ``Layout.render``); the functions are pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mgs.errors import DataError


def math_answer(value: Any, column: str) -> str:
    """A gold math answer as text, from the layouts the math suite's files use."""
    if isinstance(value, (list, tuple)):  # OlympiadBench: final_answer = ["$...$"]
        if not value:
            raise DataError(f"column {column!r} holds an empty answer list")
        value = value[0]
    if isinstance(value, float) and value.is_integer():  # AMC23 files store 27.0
        value = int(value)
    text = str(value).strip()
    if column == "solution":  # a worked solution (Minerva Math): its last box is the answer
        from mgs.rewards.boxed import last_boxed

        boxed = last_boxed(text)
        if boxed is None:
            raise DataError(f"column {column!r} has no \\boxed{{}} answer to read")
        text = boxed.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def gsm8k_answer(value: Any, column: str) -> str:
    """GSM8K's ``answer`` (a worked solution ending ``#### 72``) -> ``"72"``."""
    text = str(value)
    if "####" not in text:
        raise DataError(f"column {column!r} has no '#### <answer>' line (GSM8K layout)")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "math_answer": math_answer,
    "gsm8k": gsm8k_answer,
}


def multiple_choice_prompt(row: dict[str, Any]) -> str:
    """MMLU-style rows: ``question`` and ``choices`` -> the question with lettered options."""
    from mgs.rewards.multiple_choice import render_choices

    for key in ("question", "choices"):
        if key not in row:
            raise DataError(f"a multiple-choice row needs a {key!r} column; it has {list(row)}")
    return render_choices(str(row["question"]), list(row["choices"]))


def zebra_grid_prompt(row: dict[str, Any]) -> str:
    """ZebraLogic rows: the ``puzzle`` and the JSON answer format for its grid.

    The format lists the houses and attributes (the solution's header and row count, which the
    puzzle text also states), never a value."""
    from mgs.rewards.zebralogic import solution_table

    if "puzzle" not in row or "solution" not in row:
        raise DataError(f"a ZebraLogic row needs 'puzzle' and 'solution'; it has {list(row)}")
    table = solution_table(row["solution"])
    template = {
        "reasoning": "___",
        "solution": {house: dict.fromkeys(attrs, "___") for house, attrs in table.items()},
    }
    return (
        f"{str(row['puzzle']).strip()}\n\nSolve the puzzle. Give your reasoning and the solution "
        f"as JSON in this format, filling in every ___:\n\n{json.dumps(template, indent=4)}"
    )


PROMPT_BUILDERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "multiple_choice": multiple_choice_prompt,
    "zebra_grid": zebra_grid_prompt,
}
