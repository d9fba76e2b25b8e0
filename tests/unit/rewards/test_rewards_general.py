"""Multiple-choice, PopQA and ZebraLogic rewards on hand-made responses."""

from __future__ import annotations

import json

import pytest

from mgs.errors import DataError
from mgs.rewards import get_reward
from mgs.rewards.multiple_choice import chosen_letter, gold_letter, render_choices
from mgs.rewards.popqa import aliases, matched_alias
from mgs.rewards.zebralogic import grade_grid, last_json_object

OPTIONS = ["red", "green", "blue", "black"]


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("Reasoning... so the answer is (C).", "C"),
        ("The answer is b", "B"),
        ("Answer: **D**", "D"),
        ("I first thought A, but the answer is C. Final.", "C"),  # the last 'answer is' wins
        ("so \\boxed{B}", "B"),
        ("\\boxed{\\text{(D)}}", "D"),
        ("(C) because it is blue", "C"),
        ("C", "C"),
        ("C.", "C"),
        ("**A**", "A"),
        ("A cat is not an option", None),  # a sentence starting with 'A' chooses nothing
        ("The answer is E", None),  # no option E among four
        ("\\boxed{Blue}", None),  # a word in the box, not a letter
        ("I do not know.", None),
    ],
)
def test_chosen_letter(response, letter):
    assert chosen_letter(response, 4) == letter


def test_multiple_choice_reward_and_gold_forms():
    assert gold_letter(2, 4) == gold_letter("2", 4) == gold_letter("c", 4) == "C"
    with pytest.raises(DataError, match="outside"):
        gold_letter(4, 4)
    reward = get_reward("multiple_choice")
    rows = reward.details(
        ["q"] * 3, ["answer: C", "answer: A", "hmm"], choices=[OPTIONS] * 3, answer=[2, 2, 0]
    )
    assert [r["correct"] for r in rows] == [1.0, 0.0, 0.0]
    assert [r["choice"] for r in rows] == ["C", "A", None]
    assert render_choices("Which?", OPTIONS).splitlines()[2:6] == [
        "A. red", "B. green", "C. blue", "D. black",
    ]  # fmt: skip


def test_popqa_matches_any_alias_case_insensitively():
    golds = json.dumps(["Mexico City", "CDMX"])  # the hub copy stores a JSON string
    assert aliases(golds) == ["Mexico City", "CDMX"]
    assert matched_alias("It is mexico  city, of course.", aliases(golds)) == "Mexico City"
    assert matched_alias("The capital is Guadalajara.", aliases(golds)) is None
    reward = get_reward("popqa")
    assert reward(["q", "q"], ["cdmx!", "Mexico"], possible_answers=[golds, ["Mexico City"]]) == [
        1.0,
        0.0,
    ]
    with pytest.raises(DataError, match="at least one answer"):
        aliases("[]")


SOLUTION = {
    "header": ["House", "Name", "Drink"],
    "rows": [["1", "Eric", "tea"], ["2", "Peter", "milk"]],
}


def grid(h1: dict, h2: dict) -> str:
    return json.dumps({"reasoning": "because {x}", "solution": {"House 1": h1, "House 2": h2}})


def test_zebra_grid_cells_and_solved():
    right = grid({"Name": "eric ", "Drink": "Tea"}, {"Name": "Peter", "Drink": ["milk"]})
    assert grade_grid(f"Thinking {{draft}} ...\n{right}", SOLUTION) == {
        "parsed": True, "cells_correct": 4, "cells_total": 4, "solved": 1.0,
    }  # fmt: skip
    half = grid({"Name": "Peter", "Drink": "tea"}, {"Name": "Eric", "Drink": "milk"})
    assert grade_grid(half, json.dumps(SOLUTION))["cells_correct"] == 2  # solution as a string
    assert grade_grid("no json here", SOLUTION)["parsed"] is False
    assert last_json_object('a {"x": {"y": 1}} b {"z": 2}') == {"z": 2}
    assert last_json_object("{not json}") is None
    reward = get_reward("zebralogic")
    assert reward(["p", "p"], [right, half], solution=[SOLUTION, SOLUTION]) == [1.0, 0.0]
