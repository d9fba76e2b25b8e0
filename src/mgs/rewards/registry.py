"""Rewards by name: the built-ins (``math``, ``ifeval``, ``ifbench``, ``reward_model``,
``multiple_choice``, ``popqa``, ``zebralogic``) and users' own.

A reward is a callable ``(prompts, completions, **columns) -> list[float | None]`` (the TRL
convention): ``completions`` are the *response* parts, ``columns`` the dataset columns of those
samples (``answer`` for math, ``instruction_id_list`` / ``kwargs`` for IFEval), and ``None`` means
"not applicable" (the router then gives the sample its fallback and counts it).

A reward may also offer ``score(prompts, completions, **columns) -> Scores`` to report which
samples timed out; the router uses it when present. A benchmark's scorer offers
``details(prompts, completions, **columns) -> list[dict]``: per sample its ``reward`` and what
the benchmark's metrics need (``mgs.eval.scoring``). Rewards holding resources (worker processes,
a model) may offer ``close()``.

Built-ins are registered by import path, so looking one up (or validating a config) never imports
sympy, NLTK or torch.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mgs.errors import ConfigError, unknown_name


class Reward(Protocol):
    def __call__(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[float | None]: ...


class DetailedReward:
    """A reward that scores through ``details(prompts, completions, **columns) -> list[dict]``,
    one dict per sample with its ``reward`` (and whatever else ``mgs eval`` aggregates, e.g. a
    benchmark's cell accuracy): calling it returns those rewards. Subclasses write ``details``."""

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[float | None]:
        return [d["reward"] for d in self.details(prompts, completions, **columns)]

    def details(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[dict[str, Any]]:
        raise NotImplementedError


@dataclass(frozen=True)
class Scores:
    """What :meth:`score` returns: one value per sample and which of them hit a timeout."""

    values: list[float | None]
    timed_out: list[bool] = field(default_factory=list)


# name -> "module:attribute" of a factory (options) -> Reward; imported on first use.
_BUILTIN: dict[str, str] = {
    "math": "mgs.rewards.math_reward:MathReward",
    "ifeval": "mgs.rewards.ifeval:IFEvalReward",
    "ifbench": "mgs.rewards.ifbench:IFBenchReward",
    "reward_model": "mgs.rewards.reward_model:RewardModelReward",
    "multiple_choice": "mgs.rewards.multiple_choice:MultipleChoiceReward",
    "popqa": "mgs.rewards.popqa:PopQAReward",
    "zebralogic": "mgs.rewards.zebralogic:ZebraLogicReward",
}
_USER: dict[str, Callable[..., Any]] = {}


def reward_names() -> list[str]:
    """Every registered reward name, sorted."""
    return sorted({*_BUILTIN, *_USER})


def register_reward(name: str) -> Callable[[Any], Any]:
    """Decorator adding a reward under ``name``.

    Decorate a function ``(prompts, completions, **columns) -> list[float | None]`` (it is the
    reward; options given to :func:`get_reward` are bound as keyword arguments), or a class whose
    instances are rewards (options go to its constructor)::

        @register_reward("length")
        def length_reward(prompts, completions, **columns):
            return [min(len(c) / 100, 1.0) for c in completions]
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("register_reward needs a non-empty name, e.g. @register_reward('length')")
    if name in _BUILTIN:
        raise ConfigError(
            f"reward name {name!r} is a built-in; register yours under another name "
            f"(taken: {', '.join(reward_names())})"
        )

    def decorate(obj: Any) -> Any:
        if not callable(obj):
            raise ConfigError(f"@register_reward({name!r}) must decorate a function or a class")
        _USER[name] = obj
        return obj

    return decorate


def unregister_reward(name: str) -> None:
    """Remove a user reward (tests and notebooks re-registering a name)."""
    _USER.pop(name, None)


def get_reward(name: str, **options: Any) -> Reward:
    """Build the reward ``name`` with ``options``; an unknown name lists the known ones.

    Built-ins take their config section's fields as options, e.g.
    ``get_reward("math", timeout_s=2.0)`` or ``get_reward("ifeval", mode="all")``.
    """
    if name in _USER:
        obj = _USER[name]
        if inspect.isclass(obj):
            return _construct(name, obj, options)
        return functools.partial(obj, **options) if options else obj
    if name not in _BUILTIN:
        raise unknown_name("reward", name, reward_names())
    module_name, attr = _BUILTIN[name].split(":")
    return _construct(name, getattr(importlib.import_module(module_name), attr), options)


def _construct(name: str, factory: Any, options: dict[str, Any]) -> Any:
    config_cls = getattr(factory, "config_class", None)
    if config_cls is not None:  # built-ins: options are the fields of their config dataclass
        valid = [f.name for f in dataclasses.fields(config_cls)]
        bad = [k for k in options if k not in valid]
        if bad:
            raise ConfigError(
                f"reward {name!r} has no option {bad[0]!r}; valid options: {', '.join(valid)}"
            )
        return factory(config_cls(**options))
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"reward {name!r} does not accept options {options}: {exc}") from None
    return factory(**options)
