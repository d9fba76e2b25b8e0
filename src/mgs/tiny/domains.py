"""The built-in demo's domains: generated prompts a 3-layer character-level model can learn on a CPU.

Three domains that pull a policy in different directions, as real math and chat do, registered as
generators (:mod:`mgs.data.generators`: ``synthetic: tiny_math`` etc. in a source):

- ``tiny_math``: ``What is 3 + 4?`` (or ``Compute 3 + 4.``, ``Find 3 + 4.``); single-digit sums
  and differences (never negative), answer in ``\\boxed{}``; reference ``answer`` (math-verify on
  the last ``\\boxed{}``);
- ``tiny_if``: ``Write about cats. Use the word blue.``; one or two real IFEval instructions
  (``keywords:existence``, ``startend:end_checker``, ``length_constraints:number_words``,
  ``startend:quotation``) with IFEval's kwargs, so IFEval's own checkers score them. The
  ``change_case:*`` instructions are left out on purpose: their checkers call ``langdetect``,
  which does not recognise one short sentence as English, so a correct answer would score 0;
- ``tiny_chat``: ``Do you like cats?``; open requests scored by a reward model (reference: none).
  :func:`preference_pairs` gives ``(prompt, chosen, rejected)`` triples for the tiny reward model:
  chosen is a short polite on-topic answer, rejected an off-topic, rude, empty, repetitive or
  refusing one.

A held-out prompt is a new combination of parts the training prompts teach (a sum asked in another
wording, a topic with another instruction or request): every task's ``group`` is the sum or the
topic (see the split rule in :mod:`mgs.data.generators`). Unseen digit pairs would not do: a small
model memorises the addition table it is shown and cannot infer the missing entries in minutes.
Each task carries its warm-start demonstration (``<think>...</think> <response>...</response>``)
and a careless one with the flaw its reward catches. Prompts and completions are tens of
characters: the tiny tokenizer spends one token per character (the tags and ``\\boxed{`` are
single tokens).
"""

from __future__ import annotations

import random
import re
from typing import Any

from mgs.data.generators import GeneratedTask, generate, register_generator

TOPICS = (
    "cats",
    "dogs",
    "birds",
    "apples",
    "music",
    "trains",
    "the sea",
    "books",
    "bread",
    "stars",
    "snow",
    "tea",
)
KEYWORDS = ("blue", "happy", "small", "green", "quiet", "warm")
END_PHRASES = ("Bye!", "Thanks!", "The end.")


# ----------------------------------------------------------------------------- math


# The operands end every wording at the same place: a tiny model finds them by relative position.
_MATH_WORDINGS = ("What is {p}?", "Compute {p}.", "Find {p}.")


@register_generator("tiny_math")
def _math_space() -> list[GeneratedTask]:
    out = []
    for a in range(10):
        for b in range(10):
            for op, value in (("+", a + b), ("-", a - b)):
                if value < 0:
                    continue
                problem = f"{a} {op} {b}"
                out.extend(
                    GeneratedTask(
                        wording.format(p=problem),
                        {"answer": str(value)},
                        f"{problem} = {value}",
                        f"\\boxed{{{value}}}",
                        group=problem,
                        careless=f"The answer is {value}.",  # right, but not boxed: scores 0
                    )
                    for wording in _MATH_WORDINGS
                )
    return out


# ----------------------------------------------------------------------------- instruction following

# kind -> list of (text shown to the model, instruction id, kwargs, thought)
_Instruction = tuple[str, str, dict[str, Any], str]


def _instructions() -> dict[str, list[_Instruction]]:
    return {
        "keyword": [
            (f"Use the word {w}.", "keywords:existence", {"keywords": [w]}, f"say {w}")
            for w in KEYWORDS
        ],
        "end": [
            (f'End with "{p}"', "startend:end_checker", {"end_phrase": p}, f"end {p}")
            for p in END_PHRASES
        ],
        "length": [
            (
                "Use fewer than 5 words.",
                "length_constraints:number_words",
                {"num_words": 5, "relation": "less than"},
                "short",
            ),
            (
                "Use at least 8 words.",
                "length_constraints:number_words",
                {"num_words": 8, "relation": "at least"},
                "long",
            ),
        ],
        "quote": [("Wrap it in double quotes.", "startend:quotation", {}, "quote")],
    }


def _if_response(topic: str, chosen: list[_Instruction]) -> str:
    """A response following every instruction in ``chosen``."""
    text = f"I like {topic}."
    for _, iid, kwargs, _ in chosen:
        if iid == "keywords:existence":
            text += f" It is {kwargs['keywords'][0]}."
        elif iid == "length_constraints:number_words" and kwargs["relation"] == "at least":
            text += " I think about it every day."
    for _, iid, kwargs, _ in chosen:
        if iid == "startend:end_checker":
            text += f" {kwargs['end_phrase']}"
    if any(iid == "startend:quotation" for _, iid, _, _ in chosen):
        text = f'"{text}"'
    return text


def _if_careless(topic: str, chosen: list[_Instruction]) -> str:
    """A response that forgets the first instruction (and follows the others)."""
    first, rest = chosen[0], chosen[1:]
    text = _if_response(topic, rest)
    if first[1] == "length_constraints:number_words" and first[2]["relation"] == "less than":
        body = text[1:-1] if text.startswith('"') else text  # too long now: 5 words or more
        body = body.replace(f"I like {topic}.", f"I like {topic}. I think about it every day.", 1)
        text = f'"{body}"' if text.startswith('"') else body
    return text


def _follows(response: str, chosen: list[_Instruction]) -> bool:
    """Our own check of the few instructions used here (IFEval's checkers are the test oracle)."""
    words = len(re.findall(r"\w+", response))
    for _, iid, kwargs, _ in chosen:
        if iid == "length_constraints:number_words":
            ok = (
                words < kwargs["num_words"]
                if kwargs["relation"] == "less than"
                else words >= kwargs["num_words"]
            )
            if not ok:
                return False
    return True


@register_generator("tiny_if")
def _if_space() -> list[GeneratedTask]:
    kinds = _instructions()
    names = list(kinds)
    combos: list[list[_Instruction]] = [[ins] for k in names for ins in kinds[k]]
    for i, first in enumerate(names):
        for second in names[i + 1 :]:  # two instructions of different kinds
            combos += [[x, y] for x in kinds[first] for y in kinds[second]]
    out = []
    for topic in TOPICS:
        for chosen in combos:
            response = _if_response(topic, chosen)
            if not _follows(response, chosen):  # e.g. "fewer than 5 words" + a keyword sentence
                continue
            out.append(
                GeneratedTask(
                    f"Write about {topic}. " + " ".join(c[0] for c in chosen),
                    {
                        "instruction_id_list": [c[1] for c in chosen],
                        "kwargs": [dict(c[2]) for c in chosen],
                    },
                    ", ".join(c[3] for c in chosen),
                    response,
                    {"topic": topic},
                    group=topic,
                    careless=_if_careless(topic, chosen),
                )
            )
    return out


# ----------------------------------------------------------------------------- chat

_CHAT_REQUESTS = (
    "Tell me about {t}.",
    "Do you like {t}?",
    "Say something nice about {t}.",
    "What do you think of {t}?",
    "Why do people like {t}?",
    "Talk to me about {t}.",
)
_CHOSEN = (
    "I love {t}. Thanks for asking!",
    "Many people enjoy {t}. I do too!",
    "Good question! I like {t} a lot.",
)
_RUDE = ("That is a dumb question.", "Go away.", "Stop asking me things.")


@register_generator("tiny_chat")
def _chat_space() -> list[GeneratedTask]:
    out = []
    for r, request in enumerate(_CHAT_REQUESTS):
        for t, topic in enumerate(TOPICS):
            chosen = _CHOSEN[(r + t) % len(_CHOSEN)].format(t=topic)
            out.append(
                GeneratedTask(
                    request.format(t=topic),
                    {},
                    f"be kind about {topic}",
                    chosen,
                    {"topic": topic},
                    group=topic,
                    careless="I do not know.",  # a refusal: the reward model scores it low
                )
            )
    return out


def _rejected(task: GeneratedTask, rng: random.Random) -> str:
    """One failure an untrained policy shows: off topic, rude, empty, repetitive or a refusal."""
    topic = task.metadata["topic"]
    kind = rng.randrange(5)
    if kind == 0:
        other = rng.choice([t for t in TOPICS if t != topic])
        return rng.choice(_CHOSEN).format(t=other)
    if kind == 1:
        return rng.choice(_RUDE)
    if kind == 2:
        return ""
    if kind == 3:
        return " ".join([topic] * 4)
    return "I do not know."


def preference_pairs(
    size: int | None, seed: int, split: str = "train"
) -> list[tuple[str, str, str]]:
    """``(prompt, chosen, rejected)`` for the tiny chat domain: a Bradley-Terry reward model's data.

    The responses are response parts only (no thought), as the reward model scores them. Chosen
    is the demonstration's answer: polite and on the prompt's topic; rejected is one of the
    failures an untrained policy shows: another topic, a rude line, an empty answer, the topic
    repeated, or a refusal.
    """
    rng = random.Random(seed)
    return [
        (t.question, t.response, _rejected(t, rng))
        for t in generate("tiny_chat", size, seed, split)
    ]
