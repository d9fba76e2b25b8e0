"""Aggregators: Gram matrices of per-domain gradients -> combination coefficients.

Every aggregator here is a function of the per-group Gram matrix only (DESIGN.md section 1): the
combined gradient of group ``m`` is ``G^m = sum_k coef[m, k] * g_k^m``. So an aggregator maps

    gram   [M, K, K]   Gram[m, a, b] = <g_a^m, g_b^m>   (float32/float64)
    active [K]         bool, domains that had a backward pass this step (and finite gradients)
    orders [M, K, K-1] long, for each group and domain the random order of the other domains
-> coef   [M, K]
   fired  [M, K]      bool, whether domain k's gradient was modified in group m (telemetry)

vectorised over all groups at once: no Python loop over groups, no ``.item()``, no host sync.
Add your own with ``@register_aggregator("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgs.errors import unknown_name

Aggregator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_REGISTRY: dict[str, Aggregator] = {}


def register_aggregator(name: str) -> Callable[[Aggregator], Aggregator]:
    """Decorator: make ``fn(gram, active, orders) -> (coef, fired)`` available by ``name``."""

    def wrap(fn: Aggregator) -> Aggregator:
        _REGISTRY[name] = fn
        return fn

    return wrap


def get_aggregator(name: str | Aggregator) -> Aggregator:
    """The aggregator called ``name`` (or ``name`` itself if it is already a callable)."""
    if callable(name):
        return name
    if name not in _REGISTRY:
        raise unknown_name("aggregator", name, list(_REGISTRY))
    return _REGISTRY[name]


def available_aggregators() -> list[str]:
    return sorted(_REGISTRY)


def _no_fire(gram: torch.Tensor) -> torch.Tensor:
    return torch.zeros(gram.shape[:2], dtype=torch.bool, device=gram.device)  # [M, K]


@register_aggregator("sum")
def sum_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """Plain sum of the domain gradients: exactly the ordinary "mixed" gradient."""
    coef = active.to(gram.dtype).expand(gram.shape[0], -1).clone()  # [M, K]
    return coef, _no_fire(gram)


@register_aggregator("mean")
def mean_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """Average of the active domains' gradients."""
    weights = active.to(gram.dtype) / active.sum().clamp(min=1)  # [K]
    return weights.expand(gram.shape[0], -1).clone(), _no_fire(gram)


@register_aggregator("pcgrad")
def pcgrad_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """PCGrad (Yu et al. 2020) inside every group: the sum of the projected domain gradients."""
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
