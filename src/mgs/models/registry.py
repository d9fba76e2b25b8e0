"""Models built in-process by name (``model.name: tiny``) instead of loaded from a directory.

A *builtin model* is a pair of functions: ``tokenizer(model_cfg)`` and
``policy(model_cfg, tokenizer)``. The built-in demo registers ``tiny`` (:mod:`mgs.tiny`); any other
``model.name`` is a Hugging Face directory or hub name (:mod:`mgs.train.modeling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BuiltinModel:
    """How to build one in-process model (both functions import their libraries lazily)."""

    tokenizer: Callable[[Any], Any]  # (ModelConfig) -> a left-padded tokenizer with a pad token
    policy: Callable[[Any, Any], Any]  # (ModelConfig, tokenizer) -> a causal LM (seeded init)


_REGISTRY: dict[str, BuiltinModel] = {}
_BUILTINS_LOADED = False


def register_model(name: str, model: BuiltinModel) -> None:
    """Make ``model.name: name`` build ``model`` in-process."""
    _REGISTRY[name] = model


def builtin_model(name: str) -> BuiltinModel | None:
    """The in-process model called ``name``; None when ``name`` is a directory or hub name."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import mgs.tiny  # noqa: F401  (registers the built-in demo's model)
    return _REGISTRY.get(name)


def is_builtin_model(name: str) -> bool:
    return builtin_model(name) is not None
