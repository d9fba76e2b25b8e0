"""Generated domains: a registry of finite task spaces, split once into train and held-out tasks.

A *generator* is a function returning every distinct task of a domain (a
:class:`GeneratedTask`: the question, the reward's reference, and a demonstration). A source with
``synthetic: NAME`` reads one (:mod:`mgs.data.sources`); the built-in demo registers ``tiny_math``,
``tiny_if`` and ``tiny_chat`` (:mod:`mgs.tiny.domains`), and ``register_generator`` adds yours.

Every task space is split once and for all, independently of any run's seed, into ``train``
(80%) and ``eval`` (20%: the held-out prompts), so held-out prompts never appear in training
whatever seeds a run uses. Each task has a ``group`` (what held-out tasks share with training ones,
e.g. the sum asked, the topic): the split never holds out the last training task of a group, so a
held-out prompt is a new combination of parts the training prompts teach.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mgs.errors import ConfigError, unknown_name

SPLITS = ("train", "eval")
EVAL_FRACTION = 0.2
_SPLIT_SEED = 20240613  # fixed: the held-out set must not move with a run's seed


@dataclass(frozen=True)
class GeneratedTask:
    """One task of a generated domain, with its reward reference and its demonstration."""

    question: str  # the user's request
    reference: dict[str, Any]  # what the domain's reward needs (see mgs.data.example)
    thought: str  # the demonstration's reasoning (inside <think>)
    response: str  # the demonstration's answer (inside <response>)
    metadata: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # what held-out tasks share with training ones: a sum, a topic
    careless: str = ""  # a careless annotator's answer: one systematic flaw the reward catches

    @property
    def completion(self) -> str:
        """The warm-start target: ``<think>...</think> <response>...</response>``."""
        return f"<think>{self.thought}</think> <response>{self.response}</response>"

    @property
    def careless_completion(self) -> str:
        """The same thought with the careless answer (see :func:`demonstrations`)."""
        return f"<think>{self.thought}</think> <response>{self.careless}</response>"


TaskSpace = Callable[[], list[GeneratedTask]]
_REGISTRY: dict[str, TaskSpace] = {}
_BUILTINS_LOADED = False


def register_generator(name: str) -> Callable[[TaskSpace], TaskSpace]:
    """Decorator: make ``space() -> list[GeneratedTask]`` readable as ``synthetic: name``."""

    def wrap(space: TaskSpace) -> TaskSpace:
        _REGISTRY[name] = space
        split_tasks.cache_clear()
        return space

    return wrap


def _registry() -> dict[str, TaskSpace]:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import mgs.tiny  # noqa: F401  (registers the built-in demo's domains)
    return _REGISTRY


def generator_names() -> list[str]:
    """Every registered generator, the built-in demo's included."""
    return sorted(_registry())


def check_generator(name: str) -> None:
    """An unknown generator name raises the registry error listing the valid ones."""
    if name not in _registry():
        raise unknown_name("synthetic domain", name, generator_names())


@cache
def split_tasks(name: str, split: str) -> tuple[GeneratedTask, ...]:
    """Every distinct task of generator ``name`` in ``split`` (``train`` or ``eval``), fixed order."""
    check_generator(name)
    if split not in SPLITS:
        raise unknown_name("split of a synthetic domain", split, list(SPLITS))
    space = _registry()[name]()
    order = list(range(len(space)))
    random.Random(_SPLIT_SEED).shuffle(order)
    n_eval = max(1, math.ceil(EVAL_FRACTION * len(space)))
    left = Counter(t.group for t in space)  # training tasks each group still has
    held: set[int] = set()
    for i in order:  # hold out in a fixed random order, keeping every group in training
        if len(held) == n_eval:
            break
        if left[space[i].group] > 1:
            held.add(i)
            left[space[i].group] -= 1
    chosen = [i for i in range(len(space)) if (i in held) == (split == "eval")]
    return tuple(space[i] for i in chosen)


def generate(name: str, size: int | None, seed: int, split: str = "train") -> list[GeneratedTask]:
    """``size`` tasks of ``name``'s ``split``, deterministically from ``seed``.

    ``size=None`` gives every task of the split once, in a seeded order. A larger ``size`` cycles
    through the split in fresh seeded orders, so every task appears equally often (give or take
    one). An unknown name lists the valid ones.
    """
    tasks = split_tasks(name, split)
    if size is not None and size <= 0:
        raise ConfigError(f"a synthetic source's size must be positive or null, got {size}")
    want = len(tasks) if size is None else size
    rng = random.Random(seed)
    out: list[GeneratedTask] = []
    while len(out) < want:
        order = list(range(len(tasks)))
        rng.shuffle(order)
        out.extend(tasks[i] for i in order[: want - len(out)])
    return out


def careless_draws(count: int, fraction: float, seed: int) -> list[bool]:
    """Which of ``count`` demonstrations are careless: exactly ``round(fraction * count)``,
    at seeded positions."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the careless fraction must lie in [0, 1], got {fraction}")
    flags = [i < round(fraction * count) for i in range(count)]
    random.Random(seed * 7919 + 17).shuffle(flags)
    return flags


def demonstrations(
    name: str, size: int | None, seed: int, split: str = "train", careless: float = 0.0
) -> list[tuple[str, str]]:
    """``(question, completion)`` warm-start pairs of ``name``: the completion is
    ``<think>...</think> <response>...</response>``, with no leading space.

    ``careless``: the fraction of demonstrations written by a careless annotator, with one
    systematic flaw its domain's reward catches (for the tiny demo: math, the right answer not
    boxed; if, the first instruction forgotten; chat, "I do not know."). A warm start on such data
    makes the flaw at about that rate on every prompt, held-out ones included: what RL can fix, as
    it fixes format and instruction slips in real models.
    """
    tasks = generate(name, size, seed, split)
    flags = careless_draws(len(tasks), careless, seed)
    return [
        (t.question, t.careless_completion if flag else t.completion)
        for t, flag in zip(tasks, flags)
    ]
