"""Merge rules on one parameter tensor: task arithmetic and TIES-merging.

A *task vector* is ``tau_i = theta_i - theta_base`` (model i fine-tuned from the base).

- **Task arithmetic** (Ilharco et al. 2023): ``theta = theta_base + lam * sum_i w_i tau_i``.
- **TIES** (Yadav et al. 2023), per tensor: *trim* each ``tau_i`` to its ``density`` fraction of
  largest magnitudes (``k = int(density * numel)`` kept, the rest set to 0); *elect* the sign of
  every entry as the sign of the sum of the trimmed values (``>= 0`` counts as ``+``); *disjoint
  mean*: average, entry by entry, the trimmed values ``w_i tau_i`` whose sign agrees with the
  elected one (entries where no model agrees stay 0); ``theta = theta_base + lam * tau_m``.

Weights ``w_i`` scale the task vectors after trimming and sign election, and the disjoint mean
divides by the number of agreeing models, as in peft's ``merge_utils.ties`` (the tests compare
with it). Trimming is per tensor, as in peft and mergekit (the paper's code trims each flattened
task vector as a whole).
"""

from __future__ import annotations

from typing import Literal

import torch

Method = Literal["task_arithmetic", "ties"]


def task_arithmetic(
    base: torch.Tensor, tuned: list[torch.Tensor], weights: list[float], scale: float
) -> torch.Tensor:
    """``base + scale * sum_i weights[i] * (tuned[i] - base)``, in float32."""
    base32 = base.float()
    taus = torch.stack([t.float() - base32 for t in tuned])  # [N, *shape]
    w = torch.tensor(weights, dtype=torch.float32).view(-1, *[1] * base.dim())  # [N, 1, ...]
    return base32 + scale * (w * taus).sum(dim=0)


def trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """``tau`` with all but its ``int(density * numel)`` largest-magnitude entries set to 0."""
    k = int(density * tau.numel())
    flat = tau.reshape(-1)
    keep = torch.zeros_like(flat)
    if k > 0:
        keep[torch.topk(flat.abs(), k=k).indices] = 1.0
    return (flat * keep).reshape(tau.shape)


def ties(
    base: torch.Tensor,
    tuned: list[torch.Tensor],
    weights: list[float],
    scale: float,
    density: float,
) -> torch.Tensor:
    """TIES-merging of ``tuned`` onto ``base`` (see the module doc), in float32."""
    base32 = base.float()
    taus = torch.stack([trim(t.float() - base32, density) for t in tuned])  # [N, *shape]
    elected = torch.where(taus.sum(dim=0) >= 0, 1.0, -1.0)  # [*shape]
    agree = taus.sign() == elected  # [N, *shape]; trimmed (zero) entries never agree
    w = torch.tensor(weights, dtype=torch.float32).view(-1, *[1] * base.dim())  # [N, 1, ...]
    summed = (w * taus * agree).sum(dim=0)  # [*shape]
    count = agree.sum(dim=0).clamp(min=1)  # [*shape]
    return base32 + scale * summed / count


def merge_tensor(
    method: Method,
    base: torch.Tensor,
    tuned: list[torch.Tensor],
    weights: list[float],
    scale: float,
    density: float,
) -> torch.Tensor:
    """One merged tensor in ``base``'s dtype; integer / boolean tensors are the base's."""
    if not base.is_floating_point():
        return base.clone()
    if method == "task_arithmetic":
        merged = task_arithmetic(base, tuned, weights, scale)
    else:
        merged = ties(base, tuned, weights, scale, density)
    return merged.to(base.dtype)
