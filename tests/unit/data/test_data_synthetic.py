"""Tiny domains: deterministic, correct references (math-verify and the real IFEval file as oracles)."""

from __future__ import annotations

import json
import re

import pytest
from math_verify import parse, verify

from conftest import shared_file
from mgs.data.synthetic import SYNTHETIC_DOMAINS, TOPICS, generate, preference_pairs
from mgs.errors import UnknownNameError


@pytest.mark.parametrize("name", sorted(SYNTHETIC_DOMAINS))
def test_generators_are_deterministic_and_seeded(name):
    assert generate(name, 50, 0) == generate(name, 50, 0)
    assert generate(name, 50, 0) != generate(name, 50, 1)
    assert len(generate(name, 7, 0)) == 7


def test_unknown_generator_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: tiny_chat, tiny_if, tiny_math"):
        generate("tiny_code", 1, 0)


def test_tiny_math_answers_are_right():
    pattern = re.compile(r"What is (\d+) ([+*-]) (\d+)\?")
    for question, reference in generate("tiny_math", 300, 0):
        a, op, b = pattern.fullmatch(question).groups()
        value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert value >= 0
        assert reference == {"answer": str(value)}
        # The reward's own verifier accepts the right boxed answer and rejects a wrong one.
        assert verify(parse(f"${reference['answer']}$"), parse(f"\\boxed{{{value}}}"))
        assert not verify(parse(f"${reference['answer']}$"), parse(f"\\boxed{{{value + 1}}}"))


def test_tiny_if_uses_real_ifeval_ids_and_kwargs():
    real = json.loads(shared_file("ifeval.json").read_text())
    real_kwargs = {}
    for row in real:
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"]):
            real_kwargs.setdefault(iid, set()).add(tuple(sorted(kw)))
    seen = set()
    for question, reference in generate("tiny_if", 400, 0):
        ids, kwargs = reference["instruction_id_list"], reference["kwargs"]
        assert len(ids) == len(kwargs) in (1, 2)
        assert len({i.split(":")[0] for i in ids}) == len(ids)  # never two of one kind
        for iid, kw in zip(ids, kwargs):
            assert tuple(sorted(kw)) in real_kwargs[iid]  # same kwargs names as IFEval uses
            seen.add(iid)
        assert question.startswith("Write one sentence about ")
    assert len(seen) == 6


def test_tiny_if_instruction_texts_match_their_kwargs():
    for question, reference in generate("tiny_if", 200, 3):
        for iid, kw in zip(reference["instruction_id_list"], reference["kwargs"]):
            if iid == "keywords:existence":
                assert f"Include the word {kw['keywords'][0]}." in question
            if iid == "keywords:forbidden_words":
                assert f"Do not use the word {kw['forbidden_words'][0]}." in question
            if iid == "startend:end_checker":
                assert f'"{kw["end_phrase"]}"' in question


def test_preference_pairs_prefer_the_on_topic_answer():
    pairs = preference_pairs(200, 0)
    assert pairs == preference_pairs(200, 0)
    questions = [q for q, _ in generate("tiny_chat", 200, 0)]
    assert [p[0] for p in pairs] == questions
    for question, chosen, rejected in pairs:
        topic = next(t for t in TOPICS if t in question)
        assert topic in chosen
        assert chosen != rejected
