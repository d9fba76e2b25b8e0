"""Group-normalised advantages (GRPO): each rollout is scored against the other rollouts of its prompt.

Layout: ``rewards`` is flat ``[B * G]`` and *group-contiguous* — prompt ``i``'s ``G`` rollouts are
rows ``i*G .. i*G+G-1`` (the order :class:`mgs.rl.rollout.RolloutBatch` produces). The advantage of a
rollout is one scalar for the whole sequence; :func:`mgs.rl.losses.policy_loss` broadcasts it over
the response tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mgs.errors import unknown_name

__all__ = ["ADVANTAGE_SCALES", "group_advantages", "scale_by_domain"]


def _scale_by_std(centred: torch.Tensor, grouped: torch.Tensor, eps: float) -> torch.Tensor:
    # Unbiased (Bessel-corrected, divide by G-1) standard deviation, as verl's GRPO estimator uses
    # torch.std; TRL uses the same. [B, G] / [B, 1]
    return centred / (grouped.std(dim=1, keepdim=True) + eps)


def _no_scale(centred: torch.Tensor, grouped: torch.Tensor, eps: float) -> torch.Tensor:
    # Dr. GRPO: r - mean, no division (removes the bias towards low-variance prompts).
    return centred


ADVANTAGE_SCALES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "std": _scale_by_std,
    "none": _no_scale,
}


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, eps: float = 1e-6, scale: str = "std"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Advantages ``(r - mean_group) / (std_group + eps)`` (``scale="std"``) or ``r - mean_group``
    (``scale="none"``, Dr. GRPO) for group-contiguous ``rewards [B * G]``.

    A group of one rollout has no baseline, so its advantage is 0 (it teaches nothing).
    Raises ``ValueError`` for a non-finite reward (naming its index, prompt and rollout), a shape
    that is not ``[B * G]``, or an unknown ``scale`` (:class:`mgs.errors.UnknownNameError`).

    Returns ``(advantages [B * G], stats)``; stats are detached 0-d tensors:
    ``reward_mean``, ``reward_std`` (over the whole batch), ``group_std_mean`` (mean within-group
    std), ``zero_std_frac`` (fraction of groups whose rollouts all got the same reward: their
    advantages are 0), ``advantage_abs_mean``.
    """
    if scale not in ADVANTAGE_SCALES:
        raise unknown_name("advantage scale", scale, list(ADVANTAGE_SCALES))
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    if rewards.ndim != 1 or rewards.numel() == 0 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be a non-empty 1-D tensor [B * G] with G={group_size} rollouts per "
            f"prompt, got shape {tuple(rewards.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    bad = ~torch.isfinite(rewards)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"reward at index {i} (prompt {i // group_size}, rollout {i % group_size}) is "
            f"{rewards[i].item()}; every reward must be a finite number"
        )

    grouped = rewards.detach().view(-1, group_size)  # [B, G]
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)  # [B]; exactly 0 iff all rewards equal
    if group_size == 1:
        adv = torch.zeros_like(grouped)  # [B, 1]: no baseline, no signal
        group_std = torch.zeros(grouped.shape[0], dtype=grouped.dtype, device=grouped.device)
    else:
        centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
        adv = ADVANTAGE_SCALES[scale](centred, grouped, eps)  # [B, G]
        # A group whose rollouts all got the same reward carries no signal: 0, even with eps=0.
        adv = torch.where(spread.unsqueeze(1) == 0, 0.0, adv)  # [B, G]
        group_std = grouped.std(dim=1)  # [B]
    adv = adv.reshape(-1)  # [B * G]
    stats = {
        "reward_mean": rewards.detach().mean(),
        "reward_std": rewards.detach().std() if rewards.numel() > 1 else rewards.new_zeros(()),
        "group_std_mean": group_std.mean(),
        "zero_std_frac": (spread == 0).float().mean(),
        "advantage_abs_mean": adv.abs().mean(),
    }
    return adv, stats


def scale_by_domain(
    centred: torch.Tensor,
    row_domains: Sequence[str],
    domains: Sequence[str],
    valid: torch.Tensor,
    *,
    eps: float = 1e-6,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-domain advantage normalisation: ``centred [B * G]`` (rewards minus their group's mean,
    i.e. ``group_advantages(..., scale="none")``) divided by its domain's root mean square over
    the domain's real rollouts of the batch, so every domain's advantages have unit scale whatever
    its reward's units (a reward model's scores next to 0 / 1 math).

    ``valid [B * G]`` bool: padding rows are left out of the statistics (and get 0);
    ``reduce``: sums a ``[K, 2]`` tensor over the ranks (identity in one process), so every rank
    divides by the same global scale. A domain whose rollouts all tie in their groups has scale 0
    and advantages 0. Returns ``(advantages [B * G], {"domain_scale/<domain>": rms})``.
    """
    index = torch.tensor([list(domains).index(d) for d in row_domains], dtype=torch.long)
    valid = valid.to(torch.bool).cpu()
    sums = torch.zeros(len(domains), 2, dtype=torch.float64)  # [K, (sum of squares, count)]
    sq = centred.detach().double().cpu() ** 2  # [B * G]
    sums[:, 0].index_add_(0, index[valid], sq[valid])
    sums[:, 1].index_add_(0, index[valid], torch.ones(int(valid.sum()), dtype=torch.float64))
    sums = reduce(sums)
    rms = (sums[:, 0] / sums[:, 1].clamp(min=1)).sqrt()  # [K]
    scale = rms[index].to(centred.dtype).to(centred.device)  # [B * G]
    adv = torch.where((scale > 0) & valid.to(centred.device), centred / (scale + eps), 0.0)
    return adv, {f"domain_scale/{d}": float(rms[k]) for k, d in enumerate(domains)}
