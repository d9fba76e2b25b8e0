"""Source presets on small files in each benchmark's exact column layout (hub copies and the
Qwen2.5-Math / simpleRL-reason JSON Lines), and the error of an unreachable hub id."""

from __future__ import annotations

import json

import pytest

from mgs.data.readers import read_hf
from mgs.data.sources import SourceConfig, load_source
from mgs.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def load(path, preset):
    return load_source(SourceConfig(domain="d", path=path, preset=preset))


@pytest.mark.parametrize(
    ("preset", "row", "question", "answer"),
    [
        # HuggingFaceH4/aime_2024: id, problem, solution, answer, url, year
        (
            "competition_math",
            {
                "id": 60,
                "problem": "Find x.",
                "solution": "...",
                "answer": "204",
                "url": "u",
                "year": "2024",
            },
            "Find x.",
            "204",
        ),
        # math-ai/amc23 (and Qwen2.5-Math amc23/test.jsonl): question, answer as a float
        (
            "competition_math",
            {"id": 0, "question": "How many?", "answer": 27.0, "url": "u"},
            "How many?",
            "27",
        ),
        # Qwen2.5-Math minerva_math/test.jsonl: problem, solution (answer in its last box), idx
        (
            "minerva_math",
            {
                "problem": "Compute v.",
                "solution": "v = 3, so \\boxed{3 \\text{ m/s}}",
                "type": "p",
                "idx": 4,
            },
            "Compute v.",
            "3 \\text{ m/s}",
        ),
        # a hub copy of Minerva Math: question, answer
        ("minerva_math", {"question": "Compute v.", "answer": "7"}, "Compute v.", "7"),
        # Hothan/OlympiadBench OE_TO_maths_en_COMP: id, question, final_answer (a list)
        (
            "olympiadbench",
            {
                "id": 1606,
                "question": "Find n.",
                "final_answer": ["$\\frac{1}{2}$"],
                "context": None,
                "unit": None,
            },
            "Find n.",
            "\\frac{1}{2}",
        ),
        # openai/gsm8k main: question, answer ending '#### N'
        (
            "gsm8k",
            {"question": "Tom has 3 apples...", "answer": "3 + 4 = 7\n#### 1,007"},
            "Tom has 3 apples...",
            "1007",
        ),
    ],
)
def test_math_suite_layouts(tmp_path, preset, row, question, answer):
    (ex,) = load(write_jsonl(tmp_path / "f.jsonl", [row]), preset)
    assert ex.question.startswith(question) and "\\boxed{}" in ex.question
    assert ex.reference == {"answer": answer}


def test_ids_come_from_the_id_column_or_the_row_number(tmp_path):
    path = write_jsonl(
        tmp_path / "aime.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}]
    )
    assert [e.uid for e in load(path, "competition_math")] == ["aime/0", "aime/1"]
    path = write_jsonl(tmp_path / "aime24.jsonl", [{"id": 60, "problem": "a", "answer": "1"}])
    assert [e.uid for e in load(path, "competition_math")] == ["aime24/60"]


def test_mmlu_redux_renders_options_and_keeps_ok_rows(tmp_path):
    # edinburgh-dawg/mmlu-redux-2.0 (one subject): question, choices, answer, error_type, ...
    rows = [
        {
            "question": "Which is blue?",
            "choices": ["sun", "sky", "grass", "snow"],
            "answer": 1,
            "error_type": "ok",
            "source": "s",
            "correct_answer": None,
            "potential_reason": "",
        },
        {
            "question": "Bad?",
            "choices": ["a", "b", "c", "d"],
            "answer": 0,
            "error_type": "wrong_groundtruth",
            "source": "s",
            "correct_answer": "B",
            "potential_reason": "x",
        },
    ]
    (ex,) = load(write_jsonl(tmp_path / "anatomy.jsonl", rows), "mmlu_redux")
    assert "Which is blue?" in ex.question and "\nB. sky\n" in ex.question
    assert ex.reference == {"choices": ["sun", "sky", "grass", "snow"], "answer": 1}


def test_popqa_and_zebralogic_layouts(tmp_path):
    # akariasai/PopQA: id, subj, prop, obj, ..., question, possible_answers (a JSON string)
    popqa = {
        "id": 4222362,
        "subj": "George Rankin",
        "prop": "occupation",
        "obj": "politician",
        "s_pop": 142,
        "o_pop": 25692,
        "question": "What is George Rankin's occupation?",
        "possible_answers": '["politician", "political leader"]',
    }
    (ex,) = load(write_jsonl(tmp_path / "popqa.jsonl", [popqa]), "popqa")
    assert (
        ex.uid == "popqa/4222362" and ex.reference["possible_answers"] == popqa["possible_answers"]
    )
    # WildEval/ZebraLogic grid_mode: id, size, puzzle, solution (a struct), created_at
    solution = {"header": ["House", "Name"], "rows": [["1", "Eric"], ["2", "Arnold"]]}
    zebra = {
        "id": "lgp-test-2x1-0",
        "size": "2*1",
        "puzzle": "There are 2 houses...",
        "solution": solution,
        "created_at": "2024",
    }
    (ex,) = load(write_jsonl(tmp_path / "zebra.jsonl", [zebra]), "zebralogic")
    assert ex.question.startswith("There are 2 houses...")
    assert (
        '"House 2": {' in ex.question
        and '"Name": "___"' in ex.question
        and "Arnold" not in ex.question
    )
    assert ex.reference == {"solution": solution}


def test_ifbench_rows_use_the_ifeval_layout(tmp_path):
    # allenai/IFBench_test: key, prompt, instruction_id_list, kwargs
    row = {
        "key": "1000:1:en",
        "prompt": "Write a poem.",
        "instruction_id_list": ["words:alphabet"],
        "kwargs": [{}],
    }
    (ex,) = load(write_jsonl(tmp_path / "ifbench.jsonl", [row]), "ifeval")
    assert ex.uid == "ifbench/1000:1:en" and ex.reference["instruction_id_list"] == [
        "words:alphabet"
    ]


def test_a_missing_answer_in_a_solution_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"problem": "x", "solution": "no box"}])
    with pytest.raises(DataError, match=r"row 0: .*no \\boxed"):
        load(path, "minerva_math")


def test_an_unreachable_hub_id_names_the_id_and_a_local_copy(hub_offline):
    with pytest.raises(DataError) as err:
        read_hf("HuggingFaceH4/aime_2024", split="train")
    message = str(err.value)
    assert "'HuggingFaceH4/aime_2024'" in message and "pass that file instead" in message
    assert ".to_json('HuggingFaceH4_aime_2024.jsonl')" in message
