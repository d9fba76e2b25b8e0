"""The GRPO training loop, top to bottom (DESIGN.md section 4):

mixture -> prompts -> rollouts -> rewards by domain -> group advantages -> domain-grouped
micro-batches -> per-domain backward into the surgeon -> surgery + clipping -> optimizer step ->
metrics. :func:`run_training` wraps it with the warm-start, the held-out evaluation before and after
RL, and the run directory.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mgs.data.pipeline import build_mixture
from mgs.dataclass_config import to_dict
from mgs.rewards.router import RewardRouter
from mgs.rl import HFGenerateBackend, group_advantages
from mgs.surgery import GradientSurgeon
from mgs.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from mgs.train.config import TrainConfig
from mgs.train.metrics import MetricsWriter
from mgs.train.modeling import frozen_copy, load_policy, resolve_device
from mgs.train.schedule import build_optimizer
from mgs.train.update import PolicyUpdater

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class StepOutput:
    metrics: dict[str, float]
    domain_rewards: dict[str, float]


class GRPOTrainer:
    """Holds the policy and everything around it; :meth:`step` runs one RL step."""

    def __init__(
        self, cfg: TrainConfig, *, policy=None, tokenizer=None, router: RewardRouter | None = None
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.model.device)
        if policy is None:
            policy, tokenizer = load_policy(cfg.model, self.device)
        self.policy, self.tokenizer = policy, tokenizer
        self.mixture, self.data_report = build_mixture(cfg.data, tokenizer)
        self.domains = list(self.mixture.domains)
        self.router = router or RewardRouter(cfg.rewards, self.domains)
        sampling = cfg.rollout.sampling
        self.backend = HFGenerateBackend(
            policy,
            tokenizer,
            max_prompt_tokens=cfg.data.max_prompt_tokens or policy.config.max_position_embeddings,
            micro_batch_size=cfg.rollout.micro_batch_size,
        )
        reference = frozen_copy(policy) if cfg.grpo.loss.kl_coef > 0 else None
        surgeon = None
        if cfg.strategy.needs_surgeon:
            aggregator, granularity = cfg.strategy.resolved()
            dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[
                cfg.strategy.buffer_dtype
            ]
            surgeon = GradientSurgeon(
                policy,
                self.domains,
                aggregator=aggregator,
                granularity=granularity,
                seed=cfg.strategy.seed + cfg.seed,
                buffer_dtype=dtype,
            )
        self.surgeon = surgeon
        self.optimizer, self.scheduler = build_optimizer(policy, cfg.optim, cfg.steps)
        self.updater = PolicyUpdater(
            policy,
            self.optimizer,
            self.scheduler,
            cfg.grpo,
            domains=self.domains,
            surgeon=surgeon,
            reference=reference,
            temperature=sampling.temperature,
            pad_token_id=self.backend.pad_id,
            grad_clip=cfg.optim.grad_clip,
            device=self.device,
            seed=cfg.seed,
        )

    def step(self, step: int) -> StepOutput:
        cfg = self.cfg
        sampling = cfg.rollout.sampling
        seconds: dict[str, float] = {}
        start = tick = time.perf_counter()
        batch = self.mixture.batch(step)
        examples = batch.examples
        rollouts = self.backend.generate(
            [ex.prompt for ex in examples],
            sampling,
            seed=sampling.step_seed(step + cfg.seed * 100_003),
        )
        seconds["generation"] = time.perf_counter() - tick
        tick = time.perf_counter()
        owners = [examples[c.prompt_index] for c in rollouts.completions]
        domains = [ex.domain for ex in owners]
        rewarded = self.router(
            domains,
            [ex.question for ex in owners],
            rollouts.texts,
            [dict(ex.reference) for ex in owners],
        )
        seconds["rewards"] = time.perf_counter() - tick
        rewards = torch.tensor(rewarded.rewards, dtype=torch.float32)  # [B * n]
        advantages, adv_stats = group_advantages(
            rewards, sampling.n, eps=cfg.grpo.advantage_eps, scale=cfg.grpo.advantage_scale
        )
        update = self.updater.update(rollouts, domains, advantages, step)
        seconds.update(update.seconds)
        self.backend.sync_weights(self.policy)
        seconds["step"] = time.perf_counter() - start

        metrics: dict[str, float] = {
            "phase": float(batch.phase),
            "lr": self.scheduler.get_last_lr()[0],
        }
        domain_rewards: dict[str, float] = {}
        for domain in self.domains:
            idx = [i for i, d in enumerate(domains) if d == domain]
            if not idx:
                continue
            lengths = [len(rollouts.completions[i].completion_ids) for i in idx]
            domain_rewards[domain] = float(rewards[idx].mean())
            metrics[f"reward/{domain}/mean"] = domain_rewards[domain]
            metrics[f"response_length/{domain}/mean"] = sum(lengths) / len(lengths)
            metrics[f"truncated/{domain}/frac"] = sum(
                rollouts.completions[i].finish_reason == "length" for i in idx
            ) / len(idx)
        metrics["reward/mean"] = float(rewards.mean())
        for key, value in rewarded.stats.items():
            if not key.endswith("/mean"):
                metrics[key] = value
        metrics.update({f"advantage/{k}": float(v) for k, v in adv_stats.items()})
        metrics.update({f"loss/{k}": v for k, v in update.stats.items()})
        metrics["skipped_updates"] = float(update.skipped)
        if update.surgery is not None:
            metrics.update(update.surgery.summary())
        metrics.update({f"time/{k}": v for k, v in seconds.items()})
        self.last_surgery = update.surgery
        return StepOutput(metrics, domain_rewards)

    def state_dict(self, next_step: int) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs (see :mod:`mgs.train.checkpoint`)."""
        self.mixture.next_step = next_step  # batches are a pure function of the step
        return {
            "next_step": next_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "surgeon_step": self.surgeon.step if self.surgeon is not None else None,
            "mixture": self.mixture.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], model_dir: Path) -> int:
        """Restore weights from ``model_dir`` and the rest from ``state``; returns the next step."""
        loaded = type(self.policy).from_pretrained(
            model_dir, dtype=next(self.policy.parameters()).dtype
        )
        self.policy.load_state_dict(loaded.state_dict())
        del loaded
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.surgeon is not None and state["surgeon_step"] is not None:
            self.surgeon.step = state["surgeon_step"]
        self.mixture.load_state_dict(state["mixture"])  # checks the data did not change
        next_step = int(state["next_step"])
        set_rng_state(state["rng"])
        self.backend.sync_weights(self.policy)
        return next_step

    def save_checkpoint(self, run_dir: Path, next_step: int) -> Path:
        def save_model(path: Path) -> None:
            self.policy.save_pretrained(path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)

        return save_checkpoint(
            run_dir,
            next_step,
            self.state_dict(next_step),
            save_model,
            self.cfg.logging.keep_checkpoints,
        )

    def close(self) -> None:
        self.router.close()
        self.backend.close()


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{stamp}-{cfg.strategy.name}"


def prepare_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8"
    )


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    (run_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def train_loop(
    trainer: GRPOTrainer,
    writer: MetricsWriter,
    *,
    progress: bool = True,
    start_step: int = 0,
    run_dir: Path | None = None,
) -> None:
    """Run RL steps ``start_step .. cfg.steps - 1`` with a progress bar of per-domain rewards,
    checkpointing every ``logging.checkpoint_every`` steps into ``run_dir``."""
    from tqdm.auto import tqdm

    cfg = trainer.cfg
    bar = tqdm(range(start_step, cfg.steps), desc="GRPO", disable=not progress, dynamic_ncols=True)
    for step in bar:
        out = trainer.step(step)
        writer.log(step, out.metrics)
        every = cfg.logging.surgery_stats_every
        if (
            every
            and trainer.last_surgery is not None
            and (step % every == 0 or step == cfg.steps - 1)
        ):
            writer.save_arrays(step, trainer.last_surgery.arrays())
        postfix = {d: f"{r:.2f}" for d, r in out.domain_rewards.items()}
        if "surgery/conflict_frac" in out.metrics:
            postfix["conflict"] = f"{out.metrics['surgery/conflict_frac']:.2f}"
        bar.set_postfix(postfix)
        every_ckpt = cfg.logging.checkpoint_every
        if (
            run_dir is not None
            and every_ckpt
            and (step + 1) % every_ckpt == 0
            and step + 1 < cfg.steps
        ):
            trainer.save_checkpoint(run_dir, step + 1)
