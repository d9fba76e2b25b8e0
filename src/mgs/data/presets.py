"""Column presets: the layout of every known kind of data file, by name (``preset:`` of a source).

A :class:`Layout` says which column holds the prompt, which columns the reward needs (the
reference), which holds a unique row id, and what text is appended to the prompt. Columns may be
dotted paths into nested records and may list alternatives (``problem|question``: the first the
row has); ``convert`` / ``render`` / ``where`` name converters, prompt builders and row filters of
:mod:`mgs.data.transforms`. The table in docs/data.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOXED_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Layout:
    """Where a file keeps the prompt, the reference fields and the row id."""

    prompt_key: str = "prompt"
    reference: dict[str, str] = field(default_factory=dict)  # reference name -> column
    id_key: str | None = None  # None: the row number
    suffix: str = ""  # appended to the last user message
    about: str = ""
    convert: dict[str, str] = field(default_factory=dict)  # reference name -> CONVERTERS key
    render: str | None = None  # PROMPT_BUILDERS key: the prompt from the whole row
    where: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # keep rows: column in values


PRESETS: dict[str, Layout] = {
    "math": Layout(
        "problem",
        {"answer": "answer"},
        "unique_id",
        BOXED_INSTRUCTION,
        "MATH-style rows (math500.json): problem, answer, unique_id; asks for a \\boxed{} answer",
    ),
    "ifeval": Layout(
        "prompt",
        {"instruction_id_list": "instruction_id_list", "kwargs": "kwargs"},
        "key",
        "",
        "IFEval rows (ifeval.json): prompt, instruction_id_list, kwargs, key",
    ),
    "wildchat": Layout(
        "prompt",
        {},
        "extra_info.index",
        "",
        "verl chat parquet (wildchat-if_*.parquet): prompt messages, extra_info.index",
    ),
    "verl": Layout(
        "prompt",
        {"answer": "reward_model.ground_truth"},
        None,
        "",
        "verl RL parquet with a ground truth: prompt messages, reward_model.ground_truth",
    ),
    "alpacaeval": Layout(
        "instruction",
        {"baseline_output": "output"},
        None,
        "",
        "AlpacaEval rows: instruction, output (the baseline model's answer)",
    ),
    # The math suite: hub copies and the JSON Lines of Qwen2.5-Math's evaluation (which
    # simpleRL-reason uses) differ in column names, hence the alternatives.
    "competition_math": Layout(
        "problem|question",
        {"answer": "answer"},
        "id|idx|",
        BOXED_INSTRUCTION,
        "AIME / AMC rows: problem or question, answer (text, or a number such as 27.0), id",
        convert={"answer": "math_answer"},
    ),
    "minerva_math": Layout(
        "problem|question",
        {"answer": "answer|solution"},
        "idx|id|",
        BOXED_INSTRUCTION,
        "Minerva Math rows: problem or question, answer or a solution ending in \\boxed{}",
        convert={"answer": "math_answer"},
    ),
    "olympiadbench": Layout(
        "question|problem",
        {"answer": "final_answer|answer"},
        "id|idx|",
        BOXED_INSTRUCTION,
        "OlympiadBench rows: question, final_answer (a list like ['$3$']), id",
        convert={"answer": "math_answer"},
    ),
    "gsm8k": Layout(
        "question",
        {"answer": "answer"},
        None,
        BOXED_INSTRUCTION,
        "GSM8K rows: question, answer (a worked solution ending '#### 72')",
        convert={"answer": "gsm8k"},
    ),
    "mmlu_redux": Layout(
        "question",
        {"choices": "choices", "answer": "answer"},
        None,
        "",
        "MMLU-Redux rows: question, choices, answer (index), error_type (only 'ok' rows kept)",
        render="multiple_choice",
        where={"error_type": ("ok",)},
    ),
    "popqa": Layout(
        "question",
        {"possible_answers": "possible_answers"},
        "id",
        "",
        "PopQA rows: id, question, possible_answers (a list, or a JSON list in a string)",
    ),
    "zebralogic": Layout(
        "puzzle",
        {"solution": "solution"},
        "id",
        "",
        "ZebraLogic grid_mode rows: id, size, puzzle, solution {header, rows} (or its JSON)",
        render="zebra_grid",
    ),
    # Paper-recipe training sets on the Hugging Face hub (configs/*.yaml, docs/data.md).
    "simplerl_math": Layout(
        "question",
        {"answer": "gt_answer"},
        None,
        BOXED_INSTRUCTION,
        "SimpleRL-Zoo's MATH rows (hkust-nlp/SimpleRL-Zoo-Data, simplelr_qwen_level3to5/"
        "train.parquet): question (the raw problem; its prompt column is Qwen-templated), "
        "gt_answer; asks for a \\boxed{} answer",
    ),
}
