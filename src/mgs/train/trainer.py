"""One GRPO step, top to bottom:

mixture batch -> this rank's share -> rollouts -> rewards by domain -> group advantages ->
domain-grouped micro-batches -> per-domain backward into the gradient combiner -> surgery +
clipping -> optimizer step -> metrics.

:class:`GRPOTrainer` holds the parts :func:`mgs.train.builder.build_trainer` assembles and runs
:meth:`~GRPOTrainer.step`; checkpoints live in :mod:`mgs.train.checkpoint`, the phases of a whole
run (warm start, held-out evaluation, the loop) in :mod:`mgs.train.run`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mgs.data.mixture import DomainMixture
from mgs.data.pipeline import DataReport
from mgs.rewards.router import RewardRouter
from mgs.rl import RolloutBackend, group_advantages
from mgs.rl.advantages import scale_by_domain
from mgs.strategy.combiner import GradientCombiner, SurgeonCombiner
from mgs.surgery import GradientSurgeon, SurgeryStats
from mgs.train.config import TrainConfig
from mgs.train.distributed import DistContext, all_reduce
from mgs.train.step_metrics import step_metrics
from mgs.train.update import PolicyUpdater


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class StepOutput:
    """What one step did: its metrics (reduced over ranks), the mean reward per domain (for the
    progress bar) and the surgery statistics of its last update (None without a surgeon)."""

    metrics: dict[str, float]
    domain_rewards: dict[str, float]
    surgery: SurgeryStats | None


@dataclass
class GRPOTrainer:
    """The policy and everything around it; :meth:`step` runs one RL step."""

    cfg: TrainConfig
    ctx: DistContext
    policy: nn.Module  # this rank's policy (FSDP2: its shards)
    tokenizer: Any
    mixture: DomainMixture
    data_report: DataReport
    router: RewardRouter
    backend: RolloutBackend
    combiner: GradientCombiner
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    updater: PolicyUpdater

    @property
    def domains(self) -> list[str]:
        return list(self.mixture.domains)

    @property
    def surgeon(self) -> GradientSurgeon | None:
        """The surgeon when the strategy keeps per-domain gradients, else None."""
        return self.combiner.surgeon if isinstance(self.combiner, SurgeonCombiner) else None

    def step(self, step: int) -> StepOutput:
        cfg, sampling = self.cfg, self.cfg.rollout.sampling
        seconds: dict[str, float] = {}
        start = tick = time.perf_counter()
        batch = self.mixture.batch(step)
        share = batch.deal(self.domains, self.ctx.rank, self.ctx.world_size)
        rollouts = self.backend.generate(
            [ex.prompt for ex in share.examples],
            sampling,
            seed=sampling.step_seed(step + cfg.seed * 100_003),
            keys=share.keys,
        )
        seconds["generation"] = time.perf_counter() - tick
        tick = time.perf_counter()
        owners = [share.examples[c.prompt_index] for c in rollouts.completions]
        valid = [share.valid[c.prompt_index] for c in rollouts.completions]
        domains = [ex.domain for ex in owners]
        scored = [i for i, ok in enumerate(valid) if ok]
        rewarded = self.router(
            [domains[i] for i in scored],
            [owners[i].question for i in scored],
            [rollouts.completions[i].text for i in scored],
            [dict(owners[i].reference) for i in scored],
        )
        seconds["rewards"] = time.perf_counter() - tick
        rewards = torch.zeros(len(owners), dtype=torch.float32)  # [B * n]; padding rows: 0
        rewards[scored] = torch.tensor(rewarded.rewards, dtype=torch.float32)
        advantages, adv_stats = self.advantages(rewards, domains, valid)
        update = self.updater.update(rollouts, domains, advantages, step, valid=valid)
        seconds.update(update.seconds)
        self.backend.sync_weights(self.policy)
        seconds["step"] = time.perf_counter() - start
        metrics, domain_rewards = step_metrics(
            domains=self.domains,
            phase=batch.phase,
            lr=self.scheduler.get_last_lr()[0],
            rollouts=rollouts,
            sample_domains=domains,
            valid=valid,
            rewards=rewards,
            reward_stats=rewarded.stats,
            advantage_stats=adv_stats,
            update=update,
            seconds=seconds,
            world_size=self.ctx.world_size,
        )
        return StepOutput(metrics, domain_rewards, update.surgery)

    def advantages(
        self, rewards: torch.Tensor, domains: list[str], valid: list[bool]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Group advantages of ``rewards [B * n]`` (zero on padding rows); with
        ``strategy.advantage_norm: domain``, centred per prompt and scaled per domain."""
        cfg = self.cfg
        per_domain = cfg.strategy.advantage_norm == "domain"
        advantages, stats = group_advantages(
            rewards,
            cfg.rollout.sampling.n,
            eps=cfg.grpo.advantage_eps,
            scale="none" if per_domain else cfg.grpo.advantage_scale,
        )
        mask = torch.tensor(valid)
        if per_domain:
            advantages, scales = scale_by_domain(
                advantages,
                domains,
                self.domains,
                mask,
                eps=cfg.grpo.advantage_eps,
                reduce=all_reduce,
            )
            stats.update(scales)
        return advantages * mask.to(advantages.dtype), stats

    def close(self) -> None:
        self.router.close()
        self.backend.close()
