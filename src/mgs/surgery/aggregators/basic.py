"""The plain combinations: ``sum`` (ordinary mixed training) and ``mean``."""

from __future__ import annotations

import torch

from mgs.surgery.aggregators.registry import mean_weights, no_fire, register_aggregator


@register_aggregator("sum")
def sum_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """Plain sum of the domain gradients: exactly the ordinary "mixed" gradient."""
    coef = active.to(gram.dtype).expand(gram.shape[0], -1).clone()  # [M, K]
    return coef, no_fire(gram)


@register_aggregator("mean")
def mean_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """Average of the active domains' gradients."""
    return mean_weights(gram, active).expand(gram.shape[0], -1).clone(), no_fire(gram)
