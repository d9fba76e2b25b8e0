"""Checks on the state dicts of stateful aggregators (tensors and plain values only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mgs.errors import ConfigError


def check_keys(state: Mapping[str, Any], allowed: tuple[str, ...], owner: str) -> None:
    """Refuse a state with entries this aggregator does not know (another method's state)."""
    unknown = set(state) - set(allowed)
    if unknown:
        raise ConfigError(
            f"{owner}'s state has unknown entries {sorted(unknown)} (expected {list(allowed)}): "
            "resume with the aggregator the run was started with"
        )


def tensor_entry(state: Mapping[str, Any], key: str, owner: str, ndim: int) -> torch.Tensor | None:
    """``state[key]`` as a (copied) tensor of ``ndim`` dimensions, or None when absent."""
    if key not in state:
        return None
    value = state[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        shape = f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""
        raise ConfigError(
            f"{owner}'s state {key!r} must be a {ndim}-d tensor, got {type(value).__name__}{shape}"
        )
    return value.clone()
