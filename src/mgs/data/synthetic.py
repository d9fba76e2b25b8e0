"""Built-in tiny domains: generated prompts a 4-layer character-level model can learn on a CPU.

Each generator maps ``(size, seed)`` to ``size`` pairs ``(question, reference)``, deterministically,
with references in the same convention as the real data (see :mod:`mgs.data.example`), so the real
rewards score them unchanged:

- ``tiny_math``: small-number arithmetic; reference ``answer`` (math-verify on the last ``\\boxed{}``);
- ``tiny_if``: one-sentence writing tasks with real IFEval instruction ids and kwargs;
- ``tiny_chat``: short open requests on a topic; scored by a reward model, reference ``topic`` for
  inspection only. :func:`preference_pairs` gives (prompt, chosen, rejected) triples to train the
  tiny reward model on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from mgs.errors import unknown_name

Generated = list[tuple[str, dict[str, Any]]]

TOPICS = ("cats", "dogs", "rain", "apples", "music", "trains", "the sea", "books", "bread", "stars")
KEYWORDS = ("blue", "happy", "small", "green", "quiet", "warm")
END_PHRASES = ("That is all.", "Thank you.", "The end.")


def tiny_math(size: int, seed: int) -> Generated:
    """``What is 12 + 7?`` -> answer ``19``: sums, differences (never negative) and small products."""
    rng = random.Random(seed)
    out: Generated = []
    for _ in range(size):
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 9), rng.randint(2, 9)
            value = a * b
        else:
            a, b = rng.randint(0, 49), rng.randint(0, 49)
            if op == "-" and a < b:
                a, b = b, a
            value = a + b if op == "+" else a - b
        out.append((f"What is {a} {op} {b}?", {"answer": str(value)}))
    return out


def _if_instruction(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """One IFEval instruction: (text shown to the model, instruction id, its kwargs)."""
    kind = rng.randrange(6)
    if kind == 0:
        return "Answer in capital letters only.", "change_case:english_capital", {}
    if kind == 1:
        return "Answer in lowercase letters only.", "change_case:english_lowercase", {}
    if kind == 2:
        return "Do not use any commas.", "punctuation:no_comma", {}
    if kind == 3:
        word = rng.choice(KEYWORDS)
        return f"Include the word {word}.", "keywords:existence", {"keywords": [word]}
    if kind == 4:
        word = rng.choice(KEYWORDS)
        return (
            f"Do not use the word {word}.",
            "keywords:forbidden_words",
            {"forbidden_words": [word]},
        )
    phrase = rng.choice(END_PHRASES)
    return (
        f'End your answer with the phrase "{phrase}".',
        "startend:end_checker",
        {"end_phrase": phrase},
    )


def tiny_if(size: int, seed: int) -> Generated:
    """``Write one sentence about rain. Do not use any commas.`` with the IFEval spec to check it.

    A third of the prompts carry a second instruction; two instructions of the same kind (e.g.
    capitals *and* lowercase, which contradict) are never combined.
    """
    rng = random.Random(seed)
    out: Generated = []
    for _ in range(size):
        topic = rng.choice(TOPICS)
        chosen = [_if_instruction(rng)]
        if rng.random() < 1 / 3:
            extra = _if_instruction(rng)
            if extra[1].split(":")[0] != chosen[0][1].split(":")[0]:
                chosen.append(extra)
        text = " ".join(c[0] for c in chosen)
        reference = {
            "instruction_id_list": [c[1] for c in chosen],
            "kwargs": [c[2] for c in chosen],
        }
        out.append((f"Write one sentence about {topic}. {text}", reference))
    return out


_CHAT_REQUESTS = (
    "Tell me something nice about {t}.",
    "Why do people like {t}?",
    "Say one friendly sentence about {t}.",
)


def tiny_chat(size: int, seed: int) -> Generated:
    """``Why do people like trains?``: open requests; a reward model judges the response."""
    rng = random.Random(seed)
    out: Generated = []
    for _ in range(size):
        topic = rng.choice(TOPICS)
        out.append((rng.choice(_CHAT_REQUESTS).format(t=topic), {"topic": topic}))
    return out


def preference_pairs(size: int, seed: int) -> list[tuple[str, str, str]]:
    """``(prompt, chosen, rejected)`` for the tiny chat domain: a Bradley-Terry reward model's data.

    Chosen: a complete, friendly sentence on the prompt's topic. Rejected: one of the failures an
    untrained policy shows: a refusal, an off-topic sentence, a repetition, or a dismissal.
    """
    rng = random.Random(seed)
    out = []
    for question, reference in tiny_chat(size, seed):
        topic = reference["topic"]
        other = rng.choice([t for t in TOPICS if t != topic])
        chosen = rng.choice(
            (
                f"I like {topic} a lot, and thinking about {topic} makes my day bright.",
                f"There is so much to love about {topic}, and I am glad you asked.",
                f"Many people enjoy {topic} for the calm and the joy of it.",
            )
        )
        rejected = rng.choice(
            (
                "I do not know.",
                f"I like {other} a lot, and thinking about {other} makes my day bright.",
                f"{topic} {topic} {topic} {topic}",
                "That is a boring question.",
            )
        )
        out.append((question, chosen, rejected))
    return out


SYNTHETIC_DOMAINS: dict[str, Callable[[int, int], Generated]] = {
    "tiny_math": tiny_math,
    "tiny_if": tiny_if,
    "tiny_chat": tiny_chat,
}


def generate(name: str, size: int, seed: int) -> Generated:
    """Run the built-in generator ``name``; an unknown name lists the valid ones."""
    if name not in SYNTHETIC_DOMAINS:
        raise unknown_name("synthetic domain", name, list(SYNTHETIC_DOMAINS))
    return SYNTHETIC_DOMAINS[name](size, seed)
