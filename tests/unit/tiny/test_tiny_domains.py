"""Tiny domains: deterministic, short, held-out splits, and every demonstration scored right by the
real rewards (math-verify, IFEval's own checkers, the response extractor) as oracles."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from math_verify import parse, verify

from conftest import shared_file
from mgs.data.generators import EVAL_FRACTION, demonstrations, generate, split_tasks
from mgs.errors import ConfigError, UnknownNameError
from mgs.tiny.domains import TOPICS, preference_pairs
from mgs.tiny.model import build_tiny_tokenizer

NAMES = ["tiny_chat", "tiny_if", "tiny_math"]


def questions(name: str, split: str) -> set[str]:
    return {t.question for t in split_tasks(name, split)}


@pytest.mark.parametrize("name", NAMES)
def test_generators_are_deterministic_and_seeded(name):
    assert generate(name, 50, 0) == generate(name, 50, 0)
    assert generate(name, 50, 0) != generate(name, 50, 1)
    assert len(generate(name, 7, 0)) == 7
    whole = generate(name, None, 3)  # every train task once, in a seeded order
    assert sorted(t.question for t in whole) == sorted(questions(name, "train"))
    assert whole != generate(name, None, 4)


@pytest.mark.parametrize("name", NAMES)
def test_held_out_tasks_never_appear_in_training_whatever_the_seed(name):
    train, held = questions(name, "train"), questions(name, "eval")
    assert not train & held
    total = len(train) + len(held)
    assert len(held) == -(-total * EVAL_FRACTION // 1)  # ceil(20%)
    for seed in range(5):
        assert {t.question for t in generate(name, 300, seed)} <= train
        assert {t.question for t in generate(name, None, seed, "eval")} == held


@pytest.mark.parametrize("name", NAMES)
def test_held_out_prompts_are_new_combinations_of_what_training_teaches(name):
    train_groups = Counter(t.group for t in split_tasks(name, "train"))
    held_groups = Counter(t.group for t in split_tasks(name, "eval"))
    assert set(held_groups) <= set(train_groups)  # every held-out sum / topic is also trained
    assert len(held_groups) > len(train_groups) / 4  # and they are spread over many of them


@pytest.mark.parametrize("name", NAMES)
def test_a_larger_size_cycles_through_the_split_evenly(name):
    n = len(split_tasks(name, "train"))
    counts = Counter(t.question for t in generate(name, 2 * n + 5, 0))
    assert len(counts) == n and set(counts.values()) == {2, 3}


def test_unknown_generator_split_and_bad_size():
    with pytest.raises(UnknownNameError, match="valid names: tiny_chat, tiny_if, tiny_math"):
        generate("tiny_code", 1, 0)
    with pytest.raises(UnknownNameError, match="valid names: eval, train"):
        generate("tiny_math", 1, 0, "test")
    with pytest.raises(ConfigError, match="size must be positive or null"):
        generate("tiny_math", 0, 0)


@pytest.mark.parametrize("name", NAMES)
def test_prompts_and_demonstrations_are_short_and_in_the_zero_think_format(name):
    tokenizer = build_tiny_tokenizer()
    pattern = re.compile(r"<think>[^<>]+</think> <response>[^<>]*</response>")
    tasks = split_tasks(name, "train") + split_tasks(name, "eval")
    assert max(len(t.question) for t in tasks) <= 70  # characters = tiny-tokenizer tokens
    for task in tasks:
        assert pattern.fullmatch(task.completion), task.completion
        ids = tokenizer(task.completion, add_special_tokens=False)["input_ids"]
        assert len(ids) <= 80  # the 4 tags are one token each
        assert tokenizer.unk_token_id not in ids  # every character is in the tiny vocabulary
    pairs = demonstrations(name, 5, 0)
    assert pairs == [(t.question, t.completion) for t in generate(name, 5, 0)]


def test_demonstration_responses_are_what_the_reward_extractor_reads():
    from mgs.rewards.extraction import ExtractionConfig, split_completion

    for name in NAMES:
        for task in split_tasks(name, "train")[:40]:
            parsed = split_completion(task.completion, ExtractionConfig())
            assert (parsed.thought, parsed.response) == (task.thought, task.response)


def test_tiny_math_is_single_digit_and_math_verify_scores_the_demonstrations():
    # The operands sit at the same distance from the end in every wording: a tiny model finds
    # them by relative position.
    pattern = re.compile(r"(?:What is |Compute |Find )(\d) ([+-]) (\d)[?.]")
    tasks = split_tasks("tiny_math", "train") + split_tasks("tiny_math", "eval")
    # every a + b, and a - b with a >= b, for digits a, b; each in three wordings
    assert len(tasks) == (100 + 55) * 3
    for task in tasks:
        a, op, b = pattern.fullmatch(task.question).groups()
        assert task.group == f"{a} {op} {b}"
        value = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert value >= 0 and task.reference == {"answer": str(value)}
        assert task.response == f"\\boxed{{{value}}}"
        gold = parse(f"${task.reference['answer']}$")
        assert verify(gold, parse(task.response))
        assert not verify(gold, parse(f"\\boxed{{{value + 1}}}"))


def test_tiny_if_uses_real_ifeval_ids_and_kwargs():
    real = json.loads(shared_file("ifeval.json").read_text())
    real_kwargs: dict[str, set[tuple[str, ...]]] = {}
    for row in real:
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
            real_kwargs.setdefault(iid, set()).add(tuple(sorted(k for k, v in kw.items())))
    seen = Counter()
    for task in split_tasks("tiny_if", "train") + split_tasks("tiny_if", "eval"):
        ids, kwargs = task.reference["instruction_id_list"], task.reference["kwargs"]
        assert len(ids) == len(kwargs) in (1, 2)
        assert len(set(ids)) == len(ids)
        for iid, kw in zip(ids, kwargs):
            assert tuple(sorted(kw)) in real_kwargs[iid]  # the kwargs names IFEval uses
            seen[iid] += 1
        assert task.question.startswith(f"Write about {task.metadata['topic']}. ")
    assert set(seen) == {
        "keywords:existence",
        "startend:end_checker",
        "length_constraints:number_words",
        "startend:quotation",
    }


def test_ifeval_checkers_pass_every_demonstration_and_fail_a_chat_style_answer():
    ifeval = pytest.importorskip("mgs.rewards.ifeval")
    tasks = split_tasks("tiny_if", "train") + split_tasks("tiny_if", "eval")
    chat_style_ok = 0
    for task in tasks:
        ref = task.reference
        follows = ifeval.ifeval_check(
            task.response, ref["instruction_id_list"], ref["kwargs"], loose=False
        )
        assert all(follows), (task.question, task.response)
        chat = f"I love {task.metadata['topic']}. Thanks for asking!"  # a tiny_chat answer
        chat_style_ok += all(
            ifeval.ifeval_check(chat, ref["instruction_id_list"], ref["kwargs"], loose=False)
        )
    # The chat domain's answer style follows the instructions of almost no IF task: the two
    # domains pull the policy in different directions.
    assert chat_style_ok / len(tasks) < 0.01


def test_tiny_if_instruction_texts_match_their_kwargs():
    for task in split_tasks("tiny_if", "train"):
        for iid, kw in zip(task.reference["instruction_id_list"], task.reference["kwargs"]):
            text = {
                "keywords:existence": f"Use the word {kw.get('keywords', [''])[0]}.",
                "startend:end_checker": f'End with "{kw.get("end_phrase")}"',
                "startend:quotation": "Wrap it in double quotes.",
            }.get(iid)
            if iid == "length_constraints:number_words":
                text = {"less than": "fewer than", "at least": "at least"}[kw["relation"]]
                text = f"Use {text} {kw['num_words']} words."
            assert text in task.question


def test_preference_pairs_prefer_a_polite_on_topic_answer():
    pairs = preference_pairs(300, 0)
    assert pairs == preference_pairs(300, 0) and pairs != preference_pairs(300, 1)
    tasks = generate("tiny_chat", 300, 0)
    assert [(p, c) for p, c, _ in pairs] == [(t.question, t.response) for t in tasks]
    assert {p for p, _, _ in pairs} <= questions("tiny_chat", "train")  # never a held-out prompt
    kinds = Counter()
    for task, (prompt, chosen, rejected) in zip(tasks, pairs):
        topic = task.metadata["topic"]
        assert topic in prompt and topic in chosen and chosen.endswith(("!", "."))
        assert rejected != chosen
        if rejected == "":
            kinds["empty"] += 1
        elif rejected == " ".join([topic] * 4):
            kinds["repeated"] += 1
        elif rejected == "I do not know.":
            kinds["refusal"] += 1
        elif re.search(rf"\b{topic}\b", rejected):
            raise AssertionError(f"rejected answer on the prompt's topic: {rejected!r}")
        elif any(re.search(rf"\b{t}\b", rejected) for t in TOPICS):
            kinds["off topic"] += 1
        else:
            kinds["rude"] += 1
    assert set(kinds) == {"empty", "repeated", "refusal", "off topic", "rude"}
    assert min(kinds.values()) > 30  # roughly a fifth each


def test_eval_preference_pairs_come_from_held_out_prompts():
    held = preference_pairs(None, 0, "eval")
    assert {p for p, _, _ in held} == questions("tiny_chat", "eval")


def test_careless_answers_carry_exactly_the_flaw_their_reward_catches():
    ifeval = pytest.importorskip("mgs.rewards.ifeval")
    for task in split_tasks("tiny_math", "train") + split_tasks("tiny_math", "eval"):
        gold = parse(f"${task.reference['answer']}$")
        # The right number, but no box: the math reward reads only the last \boxed{}.
        assert task.careless == f"The answer is {task.reference['answer']}."
        assert "\\boxed" not in task.careless and verify(gold, parse(task.response))
    for task in split_tasks("tiny_if", "train") + split_tasks("tiny_if", "eval"):
        ids, kwargs = task.reference["instruction_id_list"], task.reference["kwargs"]
        follows = ifeval.ifeval_check(task.careless, ids, kwargs, loose=False)
        # IFEval's own checkers: the first instruction is broken, the others still followed.
        assert follows == [False] + [True] * (len(ids) - 1), (task.question, task.careless)
    for task in split_tasks("tiny_chat", "train"):
        assert task.careless == "I do not know."  # a refusal, a kind the reward model ranks low
    task = split_tasks("tiny_math", "train")[0]
    assert (
        task.careless_completion
        == f"<think>{task.thought}</think> <response>{task.careless}</response>"
    )


@pytest.mark.parametrize("name", NAMES)
def test_careless_demonstrations_come_at_the_asked_fraction(name):
    tasks = generate(name, 200, 3)
    clean = demonstrations(name, 200, 3)
    assert clean == [(t.question, t.completion) for t in tasks]
    mixed = demonstrations(name, 200, 3, careless=0.35)
    assert mixed == demonstrations(name, 200, 3, careless=0.35)  # seeded
    flags = [c == t.careless_completion for t, (_, c) in zip(tasks, mixed)]
    assert sum(flags) == 70  # exactly round(0.35 * 200)
    for t, (q, c), flag in zip(tasks, mixed, flags):
        assert q == t.question and c == (t.careless_completion if flag else t.completion)
    assert all(
        c == t.careless_completion
        for t, (_, c) in zip(tasks, demonstrations(name, 200, 3, careless=1.0))
    )
    with pytest.raises(ConfigError, match=r"careless fraction must lie in \[0, 1\]"):
        demonstrations(name, 10, 0, careless=1.5)
