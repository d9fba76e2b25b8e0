"""Prompt cells -> chat messages: accepted shapes and the errors for everything else."""

from __future__ import annotations

import pytest

from mgs.data.example import Example, to_messages
from mgs.errors import DataError


def test_string_becomes_one_user_message():
    assert to_messages("What is 2+2?", "row 0") == ({"role": "user", "content": "What is 2+2?"},)


def test_message_list_is_copied_and_extra_keys_dropped():
    value = [
        {"role": "system", "content": "Be brief.", "name": "x"},
        {"role": "user", "content": "Hi"},
    ]
    assert to_messages(value, "row 0") == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (None, "must be a string or a non-empty list"),
        ([], "must be a string or a non-empty list"),
        (42, "must be a string or a non-empty list"),
        ("   ", "the prompt is empty"),
        ([{"role": "user"}], "expected a mapping with 'role' and 'content'"),
        ([{"role": "bot", "content": "x"}], "role 'bot' is not one of system, user, assistant"),
        ([{"role": "user", "content": 3}], "content must be text"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "must end with a user message",
        ),
    ],
)
def test_bad_prompt_cells_name_the_row_and_the_problem(value, needle):
    with pytest.raises(DataError) as info:
        to_messages(value, "data.jsonl, row 7")
    assert "data.jsonl, row 7" in str(info.value)
    assert needle in str(info.value)


def test_question_is_the_last_user_message_and_with_prompt_copies():
    ex = Example(
        "s/0",
        "chat",
        (
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ),
    )
    assert ex.question == "c"
    rendered = ex.with_prompt("P")
    assert rendered.prompt == "P" and ex.prompt == "" and rendered.messages == ex.messages
