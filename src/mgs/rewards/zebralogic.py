"""ZebraLogic grid puzzles (Lin et al. 2025): the response's grid vs the solution, cell by cell.

Rows (``WildEval/ZebraLogic``, ``grid_mode``): ``id, size, puzzle, solution`` with
``solution = {"header": ["House", "Name", ...], "rows": [["1", "Eric", ...], ...]}``, possibly
stored as a JSON string. Responses use ZeroEval's JSON format::

    {"reasoning": "...", "solution": {"House 1": {"Name": "Eric", ...}, "House 2": {...}}}

Scoring follows ZeroEval's: the *last complete* top-level ``{...}`` of the response is parsed as
JSON (newlines removed first); each (house, attribute) cell of the solution is correct when the
response's value, lower-cased and stripped, equals the solution's (a list value counts by its
first element); a puzzle is solved when every cell is. The reward is 1.0 for a solved puzzle, else
0.0; ``mgs eval`` also reports cell accuracy (correct cells over all cells, pooled).
"""

from __future__ import annotations

import json
from typing import Any

from mgs.errors import DataError
from mgs.rewards.registry import DetailedReward


def solution_table(solution: Any) -> dict[str, dict[str, str]]:
    """``{"House 1": {"Name": "eric", ...}, ...}`` from a row's ``solution`` (dict or JSON)."""
    if isinstance(solution, str):
        try:
            solution = json.loads(solution)
        except json.JSONDecodeError:
            raise DataError("a ZebraLogic solution string is not JSON") from None
    if not isinstance(solution, dict) or "header" not in solution or "rows" not in solution:
        raise DataError("a ZebraLogic solution needs 'header' and 'rows' (grid_mode layout)")
    header, rows = list(solution["header"]), list(solution["rows"])
    if not header or header[0] != "House" or any(len(r) != len(header) for r in rows):
        raise DataError(
            "a ZebraLogic solution's header starts with 'House' and every row has one value "
            "per header column"
        )
    return {
        f"House {i + 1}": {header[j]: str(row[j]).strip().lower() for j in range(1, len(header))}
        for i, row in enumerate(rows)
    }


def last_json_object(text: str) -> Any:
    """The last complete top-level ``{...}`` of ``text``, parsed (newlines removed), or None.

    Braces are counted without regard to strings, as ZeroEval does, so a ``{`` inside the
    reasoning text can hide the object (the same responses fail in both)."""
    depth, start, last = 0, -1, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                last = text[start : i + 1]
    if last is None:
        return None
    try:
        return json.loads(last.replace("\n", ""))
    except json.JSONDecodeError:
        return None


def grade_grid(response: str, solution: Any) -> dict[str, Any]:
    """``{"parsed", "cells_correct", "cells_total", "solved"}`` of one response."""
    table = solution_table(solution)
    total = sum(len(attrs) for attrs in table.values())
    parsed = last_json_object(response)
    grid = parsed.get("solution") if isinstance(parsed, dict) else None
    correct = 0
    if isinstance(grid, dict):
        for house, attrs in table.items():
            given = grid.get(house)
            if not isinstance(given, dict):
                continue
            for attr, truth in attrs.items():
                correct += _cell(given.get(attr)) == truth
    return {
        "parsed": isinstance(grid, dict),
        "cells_correct": correct,
        "cells_total": total,
        "solved": 1.0 if correct == total else 0.0,
    }


def _cell(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    return str(value).strip().lower() or None


class ZebraLogicReward(DetailedReward):
    """``reward(prompts, completions, solution=[...])``: 1.0 for a fully solved puzzle, else 0.0."""

    def details(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[dict[str, Any]]:
        """Per sample: ``reward`` = ``correct`` = solved (1/0), ``cells_correct``,
        ``cells_total``, ``parsed`` (a solution object was found)."""
        solutions = columns.get("solution")
        if solutions is None:
            raise DataError(
                "the zebralogic reward needs a 'solution' column (ZebraLogic's name); got "
                f"columns: {', '.join(sorted(columns)) or 'none'}"
            )
        out = []
        for response, solution in zip(completions, solutions):
            grade = grade_grid(response, solution)
            out.append({"reward": grade["solved"], "correct": grade["solved"], **grade})
        return out
