"""``mgs train --estimate-memory``: find the models' ``config.json`` and print the budget of
:mod:`mgs.train.memory` (docs/memory.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError
from mgs.train.memory import Architecture, MemoryBudget, estimate_memory

DEFAULT_GPU_GIB = 80.0  # --gpu-memory's default (None there: given or not is checked)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``mgs train``'s memory-estimate options."""
    memory = parser.add_argument_group("memory estimate (docs/memory.md)")
    memory.add_argument(
        "--estimate-memory",
        action="store_true",
        help="Print the per-GPU memory budget of the config, then exit (nothing is loaded).",
    )
    memory.add_argument(
        "--world-size",
        type=int,
        metavar="N",
        help="Ranks (GPUs) the run launches; default: $WORLD_SIZE or 1.",
    )
    memory.add_argument(
        "--gpu-memory",
        type=float,
        default=None,
        metavar="GIB",
        help=f"Memory of one GPU in GiB (default {DEFAULT_GPU_GIB:g}).",
    )
    memory.add_argument(
        "--model-config",
        metavar="PATH",
        help="The policy's config.json (or model folder), if model.name has none.",
    )
    memory.add_argument(
        "--reward-model-config",
        metavar="PATH",
        help="The reward model's config.json (or model folder).",
    )


ONLY_WITH_ESTIMATE = ("world_size", "gpu_memory", "model_config", "reward_model_config")


def check_options(args: argparse.Namespace) -> None:
    """The estimate's options without --estimate-memory: an error (they were ignored, and the
    run trained)."""
    if args.estimate_memory:
        return
    given = [f"--{k.replace('_', '-')}" for k in ONLY_WITH_ESTIMATE if getattr(args, k) is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} only go(es) with --estimate-memory (nothing else reads them); "
            "add --estimate-memory, or drop them"
        )


def run(cfg: Any, args: argparse.Namespace) -> int:
    """Print the budget of ``cfg`` (a resolved TrainConfig) for ``args``."""
    budget = budget_of(
        cfg,
        world_size=args.world_size,
        gpu_gib=DEFAULT_GPU_GIB if args.gpu_memory is None else args.gpu_memory,
        model_config=args.model_config,
        reward_model_config=args.reward_model_config,
        title=args.config or "",
    )
    print("\n".join(budget.lines()))
    return 0


def _cached_config(repo_id: str) -> Path | None:
    """``config.json`` of a hub model already in the local Hugging Face cache (no download)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found) if isinstance(found, str) else None


def find_config(name: str, explicit: str | None) -> Path | None:
    """The ``config.json`` of ``explicit`` (a file or a model folder) or else of ``name`` (a model
    folder, or a hub id found in the local cache); None when there is none."""
    for candidate in (explicit, name):
        if not candidate:
            continue
        path = Path(candidate)
        if path.is_file():
            return path
        if (path / "config.json").is_file():
            return path / "config.json"
        if candidate is explicit:
            raise ConfigError(f"{candidate!r} is neither a config.json nor a folder holding one")
    return _cached_config(name) if name and "/" in name else None


def read_architecture(path: Path) -> Architecture:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as a model's config.json: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a config.json (a JSON object)")
    return Architecture.from_config(config, str(path))


def budget_of(
    cfg: Any,
    *,
    world_size: int | None,
    gpu_gib: float,
    model_config: str | None,
    reward_model_config: str | None,
    title: str = "",
) -> MemoryBudget:
    """The budget of ``cfg`` with the architectures found as :func:`find_config` says."""
    from mgs.models.registry import is_builtin_model
    from mgs.rewards.builtin import is_builtin

    if is_builtin_model(cfg.model.name):
        raise ConfigError(
            "--estimate-memory is for Hugging Face policies (model.name: a directory or hub id); "
            f"the built-in {cfg.model.name} model needs a few MB"
        )
    path = find_config(cfg.model.name, model_config)
    if path is None:
        raise ConfigError(
            f"--estimate-memory needs the policy's config.json: {cfg.model.name!r} is no local "
            "model folder and is not in the Hugging Face cache; pass --model-config PATH (a "
            "config.json or a model folder, e.g. configs/architectures/qwen2.5-7b.json)"
        )
    policy = read_architecture(path)
    reward, note = None, ""
    rm_path = cfg.rewards.reward_model.path
    if "reward_model" in cfg.rewards.routes.values() and not is_builtin(rm_path):
        found = find_config(rm_path or "", reward_model_config)
        if found is not None:
            reward = read_architecture(found)
        else:
            reward = policy  # the stated assumption, see the note
            note = (
                f"reward model {rm_path!r}: no config.json found locally, assumed the policy's "
                "size; pass --reward-model-config PATH for its own"
            )
    world = world_size if world_size is not None else _env_world_size()
    budget = estimate_memory(
        cfg, policy, reward, world_size=world, gpu_gib=gpu_gib, title=title or str(path)
    )
    if note:
        budget.notes.append(note)
    return budget


def _env_world_size() -> int:
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={text!r} is not a whole number; pass --world-size N (the GPUs to launch)"
        ) from None
