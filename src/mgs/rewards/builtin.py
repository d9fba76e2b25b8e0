"""Reward models that a run builds for itself: ``rewards.reward_model.path: builtin:NAME``.

A provider ``(train_config, echo) -> Path`` returns the Hugging Face directory of a reward model
it trained (and cached); the run then scores with it like with any other reward model directory.
The built-in demo registers ``builtin:tiny``, the tiny chat reward model (:mod:`mgs.tiny`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mgs.errors import unknown_name

PREFIX = "builtin:"
Provider = Callable[[Any, Callable[[str], None]], Path]
_REGISTRY: dict[str, Provider] = {}
_BUILTINS_LOADED = False


def register_builtin_reward_model(name: str, provider: Provider) -> None:
    """Make ``rewards.reward_model.path: builtin:name`` resolve through ``provider``."""
    _REGISTRY[name] = provider


def is_builtin(path: str | None) -> bool:
    """Whether a reward-model path names a built-in provider rather than a directory."""
    return bool(path) and str(path).startswith(PREFIX)


def builtin_provider(path: str) -> Provider:
    """The provider of ``builtin:NAME``; an unknown name lists the valid ones."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import mgs.tiny  # noqa: F401  (registers builtin:tiny)
    name = str(path)[len(PREFIX) :]
    if name not in _REGISTRY:
        raise unknown_name(
            "built-in reward model", path, [f"{PREFIX}{n}" for n in sorted(_REGISTRY)]
        )
    return _REGISTRY[name]
