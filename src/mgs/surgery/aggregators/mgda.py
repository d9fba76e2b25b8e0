"""MGDA: the minimum-norm point of the convex hull of the domain gradients, per group."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mgs.dataclass_config import option
from mgs.surgery.aggregators.registry import (
    Aggregator,
    check_param,
    finish,
    masked_gram,
    mean_weights,
    register_aggregator,
    reweighted,
)

_SYNC_EVERY = 10  # iterations between checks that every group has converged (one host sync)


@register_aggregator("mgda")
@dataclass
class MGDA(Aggregator):
    """MGDA (Désidéri 2012) with the Frank-Wolfe solver of Sener & Koltun 2018, Algorithm 2, as
    torchjd 0.18's ``MGDAWeighting``: start from the mean weights, move towards the domain whose
    gradient has the smallest inner product with the current combination, by the exact line
    search step; stop when the step is below ``epsilon`` or after ``max_iters``. Vectorised over
    groups: a group that has stopped keeps its weights while the others continue.

    ``fired[m, k]``: domain k's weight differs from the equal weight (the mean's).
    """

    epsilon: float = option(1e-3, help="Stop when the Frank-Wolfe step is below this.")
    max_iters: int = option(100, help="Maximum Frank-Wolfe iterations.")

    def __post_init__(self) -> None:
        check_param(self.epsilon > 0, f"epsilon must be > 0, got {self.epsilon}")
        check_param(self.max_iters > 0, f"max_iters must be > 0, got {self.max_iters}")

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        gram = masked_gram(gram, active)
        m, k, _ = gram.shape
        alpha = mean_weights(gram, active).expand(m, k).clone()  # [M, K]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        done = torch.zeros(m, dtype=torch.bool, device=gram.device)
        for it in range(self.max_iters):
            g_alpha = torch.einsum("mij,mj->mi", gram, alpha)  # [M, K]
            t = torch.where(active[None, :], g_alpha, torch.inf).argmin(-1)  # [M]
            e_t = eye[t]  # [M, K]
            col_t = torch.gather(gram, 2, t[:, None, None].expand(m, k, 1))[..., 0]  # G[:, t]
            a = (alpha * col_t).sum(-1)  # alpha^T G e_t
            b = (alpha * g_alpha).sum(-1)  # alpha^T G alpha
            c = torch.gather(col_t, 1, t[:, None])[:, 0]  # G[t, t]
            denom = b + c - 2 * a
            inner = (b - a) / torch.where(denom > 0, denom, 1.0)
            gamma = torch.where(c <= a, 1.0, torch.where(b <= a, 0.0, inner))  # [M]
            step = (1 - gamma)[:, None] * alpha + gamma[:, None] * e_t
            alpha = torch.where(done[:, None], alpha, step)
            done = done | (gamma < self.epsilon)
            if (it + 1) % _SYNC_EVERY == 0 and bool(done.all()):
                break
        return finish(alpha, reweighted(alpha, active), gram, active)
