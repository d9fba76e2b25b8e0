"""The scalars one RL step logs, reduced over ranks (sums and counts; fractions averaged).

``reward/<domain>/mean``, ``response_length/<domain>/mean``, ``truncated/<domain>/frac`` and
``reward/mean`` over the real (non-padding) rollouts of every rank; the reward router's failure
fractions and the advantage statistics averaged over ranks; the loss terms (``loss/*``), the
surgery summary (``surgery/*``), ``phase``, ``lr``, ``skipped_updates`` and ``time/<phase>``.
"""

from __future__ import annotations

import torch

from mgs.rl import RolloutBatch
from mgs.train.distributed import all_reduce
from mgs.train.update import UpdateResult


def mean_over_ranks(values: dict[str, float], world_size: int) -> dict[str, float]:
    """Each value averaged over the ranks (one all-reduce)."""
    if world_size == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    all_reduce(stacked)
    return {k: float(v) / world_size for k, v in zip(keys, stacked)}


def _per_domain_table(
    domains: list[str],
    rollouts: RolloutBatch,
    sample_domains: list[str],
    valid: list[bool],
    rewards: torch.Tensor,
) -> torch.Tensor:
    """``[K, 4]`` float64: reward sum, length sum, truncated count, rollouts; summed over ranks."""
    table = torch.zeros(len(domains), 4, dtype=torch.float64)
    for i, completion in enumerate(rollouts.completions):
        if valid[i]:
            table[domains.index(sample_domains[i])] += torch.tensor(
                [
                    float(rewards[i]),
                    len(completion.completion_ids),
                    completion.finish_reason == "length",
                    1.0,
                ],
                dtype=torch.float64,
            )
    return all_reduce(table)


def step_metrics(
    *,
    domains: list[str],
    phase: int,
    lr: float,
    rollouts: RolloutBatch,
    sample_domains: list[str],
    valid: list[bool],
    rewards: torch.Tensor,  # [B * n]
    reward_stats: dict[str, float],
    advantage_stats: dict[str, float],
    update: UpdateResult,
    seconds: dict[str, float],
    world_size: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics, mean reward per domain)`` of one step, identical on every rank."""
    table = _per_domain_table(domains, rollouts, sample_domains, valid, rewards)
    metrics: dict[str, float] = {"phase": float(phase), "lr": lr}
    domain_rewards: dict[str, float] = {}
    for k, domain in enumerate(domains):
        total, length, truncated, count = table[k].tolist()
        if count == 0:
            continue
        domain_rewards[domain] = total / count
        metrics[f"reward/{domain}/mean"] = total / count
        metrics[f"response_length/{domain}/mean"] = length / count
        metrics[f"truncated/{domain}/frac"] = truncated / count
    count = float(table[:, 3].sum())
    metrics["reward/mean"] = float(table[:, 0].sum()) / max(count, 1.0)
    averaged = {k: v for k, v in reward_stats.items() if not k.endswith("/mean")}
    averaged.update({f"advantage/{k}": float(v) for k, v in advantage_stats.items()})
    metrics.update(mean_over_ranks(averaged, world_size))
    metrics.update({f"loss/{k}": v for k, v in update.stats.items()})
    metrics["skipped_updates"] = float(update.skipped)
    if update.surgery is not None:
        metrics.update(update.surgery.summary())
    metrics.update({f"time/{k}": v for k, v in seconds.items()})
    return metrics, domain_rewards
