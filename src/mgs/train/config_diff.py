"""How a run's saved ``config.yaml`` differs from a config: what `mgs compare` checks before it
reuses a run, and what a `mgs train --resume` with overrides records in the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgs.dataclass_config import from_dict, load_yaml, to_dict
from mgs.errors import ConfigError
from mgs.rewards.builtin import is_builtin
from mgs.train.config import TrainConfig


def config_differences(saved_file: Path, cfg: TrainConfig) -> list[str]:
    """``key: SAVED there, NOW now`` for every key whose value differs between the config saved
    in ``saved_file`` and ``cfg`` (empty when they match).

    The saved config is read through :func:`from_dict`, so keys added to TrainConfig since it was
    written take their defaults and do not count. A built-in reward model (``builtin:tiny``) is
    saved resolved to its cache directory, a function of the keys that are compared
    (``warmstart.*``), so that one difference does not count either."""
    try:
        saved = from_dict(TrainConfig, load_yaml(saved_file))
    except ConfigError as exc:
        return [f"its {saved_file.name} does not load as a run config: {exc}"]
    before, now = _flat(to_dict(saved)), _flat(to_dict(cfg))
    out = []
    for key in list(now) + [k for k in before if k not in now]:
        there, here = before.get(key, "(absent)"), now.get(key, "(absent)")
        if there == here or (key == _RM_PATH and is_builtin(here) and not is_builtin(there)):
            continue
        out.append(f"{key}: {there!r} there, {here!r} now")
    return out


_RM_PATH = "rewards.reward_model.path"


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": value}`` (lists stay values)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
