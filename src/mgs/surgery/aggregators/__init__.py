"""Aggregators: Gram matrices of per-domain gradients -> combination coefficients, per group.

The contract, the registry and the conventions are in :mod:`mgs.surgery.aggregators.registry`;
one module per method family:

- :mod:`~.basic`: ``sum``, ``mean``;
- :mod:`~.pcgrad`: ``pcgrad`` (and the random orders every order-dependent method uses);
- :mod:`~.gradvac`: ``gradvac`` (stateful: cosine targets per group);
- :mod:`~.dual_cone`: ``upgrad``, ``dualproj`` (exact batched QP, :mod:`~.qp`);
- :mod:`~.mgda`: ``mgda`` (Frank-Wolfe);
- :mod:`~.cagrad`: ``cagrad`` (exact batched solve of its dual);
- :mod:`~.weighting`: ``imtl_g``, ``aligned_mtl``, ``config`` (closed form);
- :mod:`~.nash_mtl`: ``nash_mtl`` (stateful: Newton, warm-started per group).

Add your own with ``@register_aggregator("name")`` on a function ``(gram, active, orders) ->
(coef, fired)`` or on an :class:`Aggregator` subclass (docs/aggregators.md).
"""

from mgs.surgery.aggregators.basic import mean_aggregator, sum_aggregator
from mgs.surgery.aggregators.cagrad import CAGrad
from mgs.surgery.aggregators.dual_cone import DualProj, UPGrad
from mgs.surgery.aggregators.gradvac import GradVac
from mgs.surgery.aggregators.mgda import MGDA
from mgs.surgery.aggregators.nash_mtl import NashMTL
from mgs.surgery.aggregators.pcgrad import pcgrad_aggregator, pcgrad_projections, random_orders
from mgs.surgery.aggregators.registry import (
    Aggregator,
    AggregatorFn,
    AggregatorLike,
    available_aggregators,
    get_aggregator,
    register_aggregator,
)
from mgs.surgery.aggregators.weighting import AlignedMTL, config_aggregator, imtl_g_aggregator

__all__ = [
    "MGDA",
    "Aggregator",
    "AggregatorFn",
    "AggregatorLike",
    "AlignedMTL",
    "CAGrad",
    "DualProj",
    "GradVac",
    "NashMTL",
    "UPGrad",
    "available_aggregators",
    "config_aggregator",
    "get_aggregator",
    "imtl_g_aggregator",
    "mean_aggregator",
    "pcgrad_aggregator",
    "pcgrad_projections",
    "random_orders",
    "register_aggregator",
    "sum_aggregator",
]
