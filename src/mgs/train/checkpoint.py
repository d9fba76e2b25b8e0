"""Checkpoints: everything needed to continue a run exactly where it stopped.

``<run_dir>/checkpoints/step_XXXXXX/`` holds the policy as a Hugging Face directory (safetensors)
and ``trainer_state.pt``: optimizer and scheduler state, the surgeon's step (PCGrad's random orders
depend on it), the mixture state, and the torch / numpy / python RNG states of every rank. A
checkpoint is written under a temporary name and renamed when complete, so a run killed mid-write
never leaves a checkpoint that :func:`latest_checkpoint` would pick up; the last ``keep_last`` are
kept. Everything else the trainer draws (rollout seeds, mini-batch orders) is derived from the step
number, so a resumed run logs the same metrics, step for step, as an uninterrupted one.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgs.errors import ConfigError

_STEP_DIR = re.compile(r"^step_(\d{6,})$")
STATE_FILE = "trainer_state.pt"


def checkpoint_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first (temporary / partial ones are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, step: int, state: dict[str, Any], save_model, keep_last: int
) -> Path:
    """Write checkpoint ``step`` (the number of completed steps) atomically; prune old ones.

    ``save_model(dir)`` writes the policy (and tokenizer) into ``dir``.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}-{time.time_ns()}"
    tmp.mkdir()
    try:
        save_model(tmp / "model")
        torch.save(state, tmp / STATE_FILE)
        if final.exists():  # a re-run of the same step after a resume: replace it
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step_*"):  # leftovers of a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    if not file.is_file():
        raise ConfigError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    # mmap: every rank reads this file (the full optimizer state, 2x the fp32 weights); mapped,
    # the ranks of a node share one page-cache copy instead of each holding its own, and under
    # FSDP2 each keeps only its shard once the optimizer has loaded it.
    return torch.load(file, map_location="cpu", weights_only=False, mmap=True)
