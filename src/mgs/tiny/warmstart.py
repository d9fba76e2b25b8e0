"""Warm-start artefacts of the built-in demo, cached by their config.

- the supervised warm-start of the policy on the generated domains' demonstrations
  (``warmstart.sft``; :func:`mgs.train.sft.supervised_finetune` does the training);
- the tiny chat reward model (``rewards.reward_model.path: builtin:tiny``), trained with a
  Bradley-Terry loss on the tiny chat domain's preference pairs.

Each lives in ``<cache_dir>/<kind>-<hash of everything it depends on>``, written to a temporary
name and renamed when complete, so a second run skips the work and an interrupted one never
leaves a half-written artefact behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mgs.data.pipeline import load_demonstrations
from mgs.dataclass_config import to_dict
from mgs.tiny.domains import preference_pairs
from mgs.train.sft import supervised_finetune

if TYPE_CHECKING:
    from mgs.train.config import TrainConfig

# Bump when the built-in generators or the SFT recipe change, to invalidate old caches.
WARMSTART_VERSION = 1


def _generator_code() -> str:
    """Hash of the generators' code (the split rule and the tiny domains): editing it invalidates
    every cache."""
    import inspect

    from mgs.data import generators
    from mgs.tiny import domains

    code = inspect.getsource(generators) + inspect.getsource(domains)
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def cache_key(kind: str, payload: dict[str, Any]) -> str:
    blob = json.dumps(
        {"v": WARMSTART_VERSION, "generators": _generator_code(), **payload},
        sort_keys=True,
        default=str,
    )
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    if final.is_dir():
        return final
    tmp = final.with_name(f".{final.name}.tmp-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            # Another run built the same artefact meanwhile: theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def builtin_demonstrations(cfg: TrainConfig, tokenizer) -> list[tuple[str, str]]:
    """``(rendered prompt, completion)`` demonstrations of every built-in (synthetic) source."""
    sft = cfg.warmstart.sft
    per_domain = load_demonstrations(cfg.data, tokenizer, sft.demonstrations, sft.careless_fraction)
    return [(d.prompt, d.completion) for demos in per_domain.values() for d in demos]


def warm_start_policy(
    cfg: TrainConfig,
    policy: nn.Module,
    tokenizer,
    device: torch.device,
    echo: Callable[[str], None],
) -> Path | None:
    """Load the cached SFT weights into ``policy``, or train and cache them. None if disabled."""
    from safetensors.torch import load_model, save_model

    sft = cfg.warmstart.sft
    if sft.steps <= 0:
        return None
    pairs = builtin_demonstrations(cfg, tokenizer)
    if not pairs:
        echo("warm-start: no built-in domain provides demonstrations; skipping SFT")
        return None
    key = cache_key(
        "sft",
        {
            "model": _sft_model_keys(cfg),
            "sft": to_dict(sft),
            "template": to_dict(cfg.data.template),
            "sources": [to_dict(s) for s in cfg.data.sources if s.synthetic],
            "seed": cfg.seed,
        },
    )
    final = Path(cfg.warmstart.cache_dir) / key
    weights = final / "model.safetensors"
    if weights.is_file():
        load_model(policy, str(weights), device=str(device))
        echo(f"warm-start: loaded cached SFT policy from {final}")
        return final

    def build(tmp: Path) -> None:
        from tqdm.auto import tqdm

        # Under FSDP2 rank 0's full policy waits in host memory to be sharded; SFT trains it on
        # the device, as without FSDP2 (a no-op otherwise).
        policy.to(device)
        bar = tqdm(
            total=sft.steps,
            desc="SFT warm-start",
            disable=not cfg.logging.progress,
            dynamic_ncols=True,
        )

        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        losses = supervised_finetune(
            policy,
            tokenizer,
            pairs,
            steps=sft.steps,
            batch_size=sft.batch_size,
            lr=sft.lr,
            seed=cfg.seed,
            device=device,
            on_step=on_step,
        )
        bar.close()
        save_model(policy, str(tmp / "model.safetensors"))
        (tmp / "sft_summary.json").write_text(
            json.dumps(
                {
                    "demonstrations": len(pairs),
                    "first_loss": losses[0],
                    "final_loss": sum(losses[-20:]) / len(losses[-20:]),
                },
                indent=2,
            ),
            encoding="utf-8",
        )

    _atomic_dir(final, build)
    echo(f"warm-start: SFT on {len(pairs)} demonstrations, cached in {final}")
    return final


def tiny_reward_model(cfg: TrainConfig, echo: Callable[[str], None]) -> Path:
    """The cached tiny chat reward model directory (trained on first use)."""
    from mgs.tiny.reward_model import SUMMARY_FILE, TinyRMConfig, train_tiny_reward_model

    n_pairs = cfg.warmstart.reward_model_pairs
    rm_cfg = TinyRMConfig()
    key = cache_key("tiny-rm", {"pairs": n_pairs, "rm": to_dict(rm_cfg)})
    final = Path(cfg.warmstart.cache_dir) / key
    if (final / "config.json").is_file():
        echo(f"reward model: loaded cached tiny chat reward model from {final}")
        return final
    pairs = preference_pairs(n_pairs, seed=4242)
    _atomic_dir(final, lambda tmp: train_tiny_reward_model(pairs, tmp, rm_cfg))
    accuracy = json.loads((final / SUMMARY_FILE).read_text())["held_out_accuracy"]
    echo(
        f"reward model: trained the tiny chat reward model on {n_pairs} pairs "
        f"(held-out pair accuracy {accuracy:.3f}), cached in {final}"
    )
    return final


def _sft_model_keys(cfg: Any) -> dict[str, Any]:
    """The model keys the SFT warm start depends on. Not ``lora`` and ``mixed_precision``: SFT
    trains the full base model in float32 before either applies (the cached weights are the same
    bytes), so turning LoRA or bf16 on reuses the cache instead of re-running minutes of SFT."""
    model = to_dict(cfg.model)
    for key in ("lora", "mixed_precision"):
        model.pop(key, None)
    return model
