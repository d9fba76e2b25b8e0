"""IFEval reward: lm-eval's reference checkers on real IFEval rows, strict and loose, offline punkt."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from mgs.errors import DataError, UnknownNameError
from mgs.rewards import IFEvalRewardConfig, get_reward
from mgs.rewards.ifeval import IFEvalReward, ifeval_check, instruction_ids


@pytest.fixture(scope="module")
def rows():
    data = json.loads(shared_file("ifeval.json").read_text(encoding="utf-8"))
    return {r["key"]: r for r in data}


def check(row, response, loose=False):
    return ifeval_check(
        response, row["instruction_id_list"], row["kwargs"], loose=loose, prompt=row["prompt"]
    )


def test_every_instruction_id_in_ifeval_has_a_checker(rows):
    used = {i for r in rows.values() for i in r["instruction_id_list"]}
    assert len(used) == 25
    assert used <= set(instruction_ids())


def test_row_1000_no_commas_highlights_and_300_words(rows):
    row = rows[1000]  # no_comma, >= 3 highlighted sections, >= 300 words
    words = " ".join(["Raymond ruled Tripoli"] * 100)  # 300 words, no comma
    good = f"*Early life* {words} *Regency* more *Legacy* end"
    assert check(row, good) == [True, True, True]
    assert check(row, good.replace("more", "more, and")) == [False, True, True]
    assert check(row, "*a* *b* short") == [True, False, False]


def test_loose_strips_a_chatty_first_line_and_markdown_stars(rows):
    lower = rows[1019]  # english_lowercase
    response = "Sure! Here it is:\nall of this text is lowercase."
    assert check(lower, response) == [False]
    assert check(lower, response, loose=True) == [True]
    end = rows[1128]  # end_checker "Is there anything else I can help with?"
    starred = "Here is my answer.\n**Is there anything else I can help with?**"
    assert check(end, starred) == [False]
    assert check(end, starred, loose=True) == [True]
    assert check(end, "Here is my answer.\nIs there anything else I can help with?") == [True]


def test_sentence_count_uses_punkt_abbreviations(rows):
    row = rows[1268]  # fewer than 6 sentences
    # A naive splitter on ". " sees 9 pieces; Punkt knows Mr., Dr., p.m. and U.S. are abbreviations.
    text = (
        "Mr. Smith met Dr. Jones at 3 p.m. in the U.S. capital. They talked. "
        "It rained. We left. The end."
    )
    assert check(row, text) == [True]
    assert check(row, "One. Two. Three. Four. Five. Six.") == [False]


def test_capital_word_frequency_and_title_and_postscript(rows):
    assert check(rows[1592], "THIS is VERY IMPORTANT news") == [True]  # >= 3 capital words
    assert check(rows[1592], "THIS is very important news") == [False]
    assert check(rows[1322], "<<A Poem>>\nroses are red") == [True]
    assert check(rows[1322], "A Poem\nroses are red") == [False]
    assert check(rows[1246], "Body.\n\nP.P.S. one more thing") == [True]
    assert check(rows[1246], "Body without it.") == [False]


def test_language_detection_is_deterministic(rows):
    row = rows[1108]  # respond in Kannada
    english = "This answer is written in plain English, which is not the language asked for."
    assert {tuple(check(row, english)) for _ in range(5)} == {(False,)}
    assert check(row, "ನಮಸ್ಕಾರ, ಇದು ಕನ್ನಡದಲ್ಲಿ ಬರೆದ ಉತ್ತರವಾಗಿದೆ.") == [True]


def test_forbidden_words_and_empty_response(rows):
    row = rows[1580]  # forbidden: can, ride
    assert check(row, "I walk to work.") == [True]
    assert check(row, "I ride to work.") == [False]
    assert check(row, "   ") == [False]  # an empty response follows nothing


def test_none_kwargs_are_dropped():
    ids = ["detectable_format:number_highlighted_sections"]
    spec = [{"num_highlights": 2, "relation": None, "num_words": None}]
    assert ifeval_check("*a* and *b*", ids, spec, loose=False) == [True]


def test_bad_rows_are_clear_errors():
    with pytest.raises(DataError, match="2 instruction ids but 1 kwargs"):
        ifeval_check("x", ["punctuation:no_comma", "punctuation:no_comma"], [{}], loose=False)
    with pytest.raises(UnknownNameError, match="punctuation:no_comma"):
        ifeval_check("x", ["punctuation:no_commas"], [{}], loose=False)


def test_reward_fraction_and_all_modes(rows):
    row = rows[1000]
    response = "*a* *b* *c* short, with a comma"  # highlights only: 1 of 3
    cols = {"instruction_id_list": [row["instruction_id_list"]], "kwargs": [row["kwargs"]]}
    fraction = get_reward("ifeval")
    assert fraction([row["prompt"]], [response], **cols) == pytest.approx([1 / 3])
    strict_all = IFEvalReward(IFEvalRewardConfig(mode="all"))
    assert strict_all([row["prompt"]], [response], **cols) == [0.0]
    # an example without instructions is not applicable
    assert fraction([""], ["x"], instruction_id_list=[[]], kwargs=[[]]) == [None]


def test_loose_reward_is_an_upper_bound_of_strict_on_real_text(rows):
    outputs = json.loads(shared_file("alpacaeval2_gpt4_baseline.json").read_text(encoding="utf-8"))
    keys = sorted(rows)[:120]
    strict = IFEvalReward(IFEvalRewardConfig(variant="strict"))
    loose = IFEvalReward(IFEvalRewardConfig(variant="loose"))
    prompts = [rows[k]["prompt"] for k in keys]
    responses = [o["output"] for o in outputs[: len(keys)]]
    cols = {
        "instruction_id_list": [rows[k]["instruction_id_list"] for k in keys],
        "kwargs": [rows[k]["kwargs"] for k in keys],
    }
    s, lo = strict(prompts, responses, **cols), loose(prompts, responses, **cols)
    assert all(b >= a for a, b in zip(s, lo))
    assert 0 < sum(s) < len(s)  # real unrelated text follows some instructions, not all
