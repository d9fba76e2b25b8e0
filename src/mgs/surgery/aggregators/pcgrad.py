"""PCGrad (Yu et al. 2020) per group, from the Gram matrices alone, and the random orders."""

from __future__ import annotations

import torch

from mgs.surgery.aggregators.registry import register_aggregator


@register_aggregator("pcgrad")
def pcgrad_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """PCGrad (Yu et al. 2020) inside every group: the sum of the projected domain gradients.

    ``fired[m, k]``: domain k's gradient was projected (it conflicted with another domain).
    """
    weights, fired = pcgrad_projections(gram, active, orders)
    return weights.sum(1), fired  # coef[m, k] = sum_i W[m, i, k]


def pcgrad_projections(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """PCGrad's projected gradients as combinations of the originals: ``W [M, K, K]``, ``fired [M, K]``.

    For each domain i, for j in its random order over the other domains: if ``<g_i', g_j> < 0``,
    ``g_i' -= <g_i', g_j> / |g_j|^2 g_j`` (test with the running ``g_i'``, project against the
    original ``g_j``); result ``sum_i g_i'``. Each ``g_i' = sum_k W[i, k] g_k``, so
    ``<g_i', g_j> = (W @ Gram)[i, j]`` and the whole procedure runs on ``[M, K, K]`` tensors.
    Inactive domains and domains with a zero gradient in a group are never projected against.
    """
    m, k, _ = gram.shape
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    act = active.to(gram.dtype)
    weights = eye.expand(m, k, k) * act[None, :, None]  # [M, K(i), K(coef over originals)]
    sq_norm = torch.diagonal(gram, dim1=1, dim2=2)  # [M, K]
    usable = (sq_norm > 0) & active[None, :]  # [M, K] may be projected against
    fired = torch.zeros(m, k, dtype=torch.bool, device=gram.device)
    for step in range(k - 1):  # K-1 tiny steps, each vectorised over all groups and domains
        j = orders[:, :, step]  # [M, K]
        gram_cols = torch.gather(
            gram, 2, j[:, None, :].expand(m, k, k)
        )  # [M, K(a), K(i)]: Gram[a, j_i]
        dot = (weights * gram_cols.transpose(1, 2)).sum(-1)  # [M, K]: <g_i', g_{j_i}>
        norm_j = torch.gather(sq_norm, 1, j)  # [M, K]
        can = torch.gather(usable, 1, j) & active[None, :]
        project = can & (dot < 0)
        scale = torch.where(project, dot / torch.where(project, norm_j, 1.0), 0.0)  # [M, K]
        weights = weights.scatter_add(2, j[:, :, None], -scale[:, :, None])
        fired |= project
    return weights, fired  # g_i' of group m = sum_k W[m, i, k] g_k


def random_orders(num_groups: int, num_domains: int, generator: torch.Generator) -> torch.Tensor:
    """For every group and domain, a random permutation of the *other* domains: ``[M, K, K-1]``."""
    keys = torch.rand(num_groups, num_domains, num_domains, generator=generator)
    keys.diagonal(dim1=1, dim2=2).fill_(2.0)  # self sorts last and is dropped
    return keys.argsort(dim=-1)[:, :, : num_domains - 1]
