"""Checkpoints and saved policies: everything needed to continue a run exactly where it stopped.

``RUN/checkpoints/step_XXXXXX/`` (:class:`~mgs.run_dir.RunDir`) holds the policy as a Hugging Face
directory (safetensors) and ``trainer_state.pt``: optimizer and scheduler state, the gradient
combiner's state (the surgeon's step: PCGrad's random orders depend on it), the mixture's
fingerprint, and the torch / numpy / python RNG states of every rank. The state holds tensors and
plain Python values only, so it loads with ``torch.load(weights_only=True)``: resuming a run
directory from someone else cannot run code hidden in a pickle.

A checkpoint is written under a temporary name and renamed when complete, so a run killed
mid-write never leaves a checkpoint that a resume would pick up; the last ``keep_last`` are kept.
A checkpoint damaged later (a truncated copy) is named by :func:`load_state` /
:func:`mgs.train.resume.checkpoint_problem`, and a resume falls back to the previous one.

Everything else the trainer draws (rollout seeds, mini-batch orders) is derived from the step
number, so a resumed run logs the same metrics, step for step, as an uninterrupted one. Under FSDP2 the full state dicts are gathered from the shards (a collective:
every rank calls :func:`save_checkpoint` / :func:`save_policy`), and only rank 0 writes.

A LoRA policy's checkpoints hold its adapter only (peft's ``save_pretrained``: the base weights
never change, and a resumed run rebuilds them from ``model.name``), and the optimizer state of the
adapters; the final ``model/`` is the adapter, ``model_merged/`` (on request) the merged policy.
"""

from __future__ import annotations

import pickle
import random
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mgs.errors import ConfigError
from mgs.models.lora import (
    adapter_state,
    load_adapter_state,
    lora_of,
    merge_lora_state,
    peft_model_of,
    save_adapter,
)
from mgs.run_dir import RunDir
from mgs.train.distributed import barrier, gather_objects
from mgs.train.modeling import unsharded_class

if TYPE_CHECKING:
    from mgs.train.trainer import GRPOTrainer

# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- full state dicts


def full_states(trainer: GRPOTrainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsharded (model, optimizer) state dicts; a collective under FSDP2 (rank 0 gets them).

    A LoRA policy's model state is its adapters' (the base is frozen)."""
    lora = peft_model_of(trainer.policy) is not None
    model = adapter_state(trainer.policy) if lora else full_model_state(trainer)
    return model, _optimizer_state(trainer)


def _gathered() -> Any:
    """FSDP2's options for a full, unsharded state dict, gathered to rank 0's CPU memory."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _optimizer_state(trainer: GRPOTrainer) -> dict[str, Any]:
    if trainer.ctx.strategy != "fsdp2":
        return trainer.optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(trainer.policy, trainer.optimizer, options=_gathered())


def full_model_state(trainer: GRPOTrainer) -> dict[str, Any]:
    """The policy's whole state dict, unsharded (a collective under FSDP2; rank 0 gets it)."""
    if trainer.ctx.strategy != "fsdp2":
        return trainer.policy.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(trainer.policy, options=_gathered())


def trainer_state(
    trainer: GRPOTrainer, next_step: int, optimizer_state: dict[str, Any]
) -> dict[str, Any]:
    """Everything but the weights that a resumed run needs. Every rank must call it (the RNG
    states of all ranks are gathered)."""
    return {
        "next_step": next_step,
        "world_size": trainer.ctx.world_size,
        "optimizer": optimizer_state,
        "scheduler": trainer.scheduler.state_dict(),
        "combiner": trainer.combiner.state_dict(),
        "mixture_fingerprint": trainer.mixture.fingerprint,
        "rng": gather_objects(rng_state()),  # one per rank
    }


def write_model(trainer: GRPOTrainer, path: Path, model_state: dict[str, Any]) -> None:
    """The policy (with ``model_state``'s weights) and its tokenizer as a Hugging Face directory;
    a LoRA policy's adapter (``model_state``: :func:`~mgs.models.lora.adapter_state`)."""
    if peft_model_of(trainer.policy) is not None:
        save_adapter(trainer.policy, path, model_state)
    else:
        trainer.policy.save_pretrained(path, state_dict=model_state, safe_serialization=True)
    trainer.tokenizer.save_pretrained(path)


def save_policy(trainer: GRPOTrainer, path: Path, merged: Path | None = None) -> None:
    """The policy as a Hugging Face directory (safetensors) on rank 0; every rank calls it.

    A LoRA policy: its adapter in ``path`` and, when ``merged`` is given, the merged policy (base
    weights + ``alpha / r * B @ A``) as a full Hugging Face directory there."""
    model_state, _ = full_states(trainer)
    if trainer.ctx.is_main:
        write_model(trainer, path, model_state)
    del model_state
    if merged is not None and peft_model_of(trainer.policy) is not None:
        state = full_model_state(trainer)
        if trainer.ctx.is_main:
            config = lora_of(trainer.policy)
            weights = merge_lora_state(state, config.lora_alpha / config.r)
            base = peft_model_of(trainer.policy).get_base_model()
            base.save_pretrained(merged, state_dict=weights, safe_serialization=True)
            trainer.tokenizer.save_pretrained(merged)
        del state
    barrier()


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(trainer: GRPOTrainer, run: RunDir, next_step: int) -> Path | None:
    """Write the checkpoint after ``next_step`` completed steps (rank 0 writes; every rank must
    call it). Returns its directory on rank 0, None on the others."""
    model_state, optimizer_state = full_states(trainer)
    state = trainer_state(trainer, next_step, optimizer_state)
    path = None
    if trainer.ctx.is_main:
        path = write_checkpoint(
            run,
            next_step,
            state,
            lambda d: write_model(trainer, d, model_state),
            trainer.cfg.logging.keep_checkpoints,
        )
    barrier()
    return path


def write_checkpoint(run: RunDir, step: int, state: dict[str, Any], save_model, keep_last: int):
    """Write checkpoint ``step`` atomically and prune old ones; ``save_model(dir)`` writes the
    policy (and tokenizer) into ``dir``."""
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    final = run.checkpoint(step)
    tmp = run.checkpoint_tmp(step, time.time_ns())
    tmp.mkdir()
    try:
        save_model(RunDir.checkpoint_model(tmp))
        torch.save(state, RunDir.checkpoint_state(tmp))
        if final.exists():  # a re-run of the same step after a resume: replace it
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in run.list_checkpoints()[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run.stale_checkpoint_tmps():  # leftovers of a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    return final


class CheckpointError(ConfigError):
    """A checkpoint's files cannot be used: missing, truncated, or not what ``mgs train`` wrote."""


class UnsafeCheckpointError(CheckpointError):
    """A trainer state holding Python objects other than tensors and plain values: loading it
    could run code, so it is refused (never skipped silently)."""


def load_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint directory (tensors and plain values only).

    Raises :class:`CheckpointError` naming the file when it is missing or damaged, and
    :class:`UnsafeCheckpointError` when it holds other objects (nothing in it is executed)."""
    file = RunDir.checkpoint_state(checkpoint)
    if not file.is_file():
        raise CheckpointError(f"{file} is missing (not a complete checkpoint)")
    with open(file, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save's zip format; anything else is refused
            raise CheckpointError(
                f"{file} is damaged: it is not a file torch.save wrote (no zip header)"
            )
    try:
        # mmap: every rank reads this file (the full optimizer state, 2x the fp32 weights);
        # mapped, the ranks of a node share one page-cache copy instead of each holding its own,
        # and under FSDP2 each keeps only its shard once the optimizer has loaded it.
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)|module (\S+) is blocked", str(exc))
        if unsafe is None:
            raise CheckpointError(f"{file} is damaged (its pickle cannot be read)") from None
        raise UnsafeCheckpointError(
            f"{file} holds a Python object ({unsafe.group(1) or unsafe.group(2)}) besides "
            "tensors and plain values, which loading could execute; mgs never writes one, so "
            "it was not written by this version of mgs train: refusing to load it. Resume "
            "only run directories you trust, from a checkpoint mgs wrote"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise CheckpointError(f"{file} is damaged ({reason}; truncated?)") from None


def restore(trainer: GRPOTrainer, checkpoint: Path) -> int:
    """Load a checkpoint's weights and state into ``trainer``; returns the next step to run."""
    state = load_state(checkpoint)
    if state.get("world_size", 1) != trainer.ctx.world_size:
        raise ConfigError(
            f"the checkpoint was written by {state.get('world_size', 1)} ranks and this run has "
            f"{trainer.ctx.world_size}; resume with the same number of ranks"
        )
    trainer.mixture.check_fingerprint(state.get("mixture_fingerprint"))
    _load_weights_and_optimizer(trainer, RunDir.checkpoint_model(checkpoint), state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.combiner.load_state_dict(state["combiner"])
    set_rng_state(state["rng"][trainer.ctx.rank])
    trainer.backend.sync_weights(trainer.policy)
    return int(state["next_step"])


def _load_weights_and_optimizer(
    trainer: GRPOTrainer, model_dir: Path, optimizer_state: dict[str, Any]
) -> None:
    lora = peft_model_of(trainer.policy) is not None  # the checkpoint holds the adapter only
    if trainer.ctx.strategy != "fsdp2":
        if lora:
            trainer.policy.load_state_dict(
                load_adapter_state(model_dir, trainer.policy), strict=False
            )
        else:
            trainer.policy.load_state_dict(_saved_weights(trainer.policy, model_dir))
        trainer.optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    # As at start-up: rank 0 reads the weights, every rank receives its shards (a LoRA
    # policy's adapters only: its base weights are the ones it was built with).
    full: dict[str, Any] = {}
    if trainer.ctx.is_main:
        full = (
            load_adapter_state(model_dir, trainer.policy)
            if lora
            else _saved_weights(trainer.policy, model_dir)
        )
    set_model_state_dict(
        trainer.policy,
        full,
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=not lora),
    )
    del full
    set_optimizer_state_dict(
        trainer.policy,
        trainer.optimizer,
        optimizer_state,
        options=StateDictOptions(full_state_dict=True),
    )


def _saved_weights(policy: torch.nn.Module, model_dir: Path) -> dict[str, torch.Tensor]:
    """The full state dict of a policy saved in ``model_dir`` (read into host memory)."""
    loaded = unsharded_class(policy).from_pretrained(
        model_dir, dtype=next(policy.parameters()).dtype
    )
    return loaded.state_dict()
