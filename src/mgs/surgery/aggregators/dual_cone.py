"""UPGrad and DualProj: projections onto the dual cone of the domain gradients, per group.

Both follow torchjd 0.18 (``UPGradWeighting`` / ``DualProjWeighting`` with its default
``QuadprogProjector``): the Gram matrix is divided by its trace (``normalize``), ``reg_eps * I`` is
added (``regularize``), and the quadratic program ``min v^T G v s.t. v >= u`` is solved for
``u`` = the mean weights (DualProj) or each row of ``diag(mean weights)`` (UPGrad, whose weights
are the sum of the K solutions). The one deliberate difference is ``norm_eps``'s default; see
:func:`~mgs.surgery.aggregators.registry.trace_normalized`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mgs.dataclass_config import option
from mgs.surgery.aggregators.qp import dual_cone_weights
from mgs.surgery.aggregators.registry import (
    Aggregator,
    check_param,
    finish,
    masked_gram,
    mean_weights,
    register_aggregator,
    trace_normalized,
)

_FIRED_TOL = 1e-9  # a weight moved above its lower bound (weights are O(1/K) after normalising)


@dataclass
class _DualCone(Aggregator):
    norm_eps: float = option(
        0.0,
        help="A group whose Gram trace is below this counts as zero (torchjd: 1e-4, absolute; "
        "mgs: 0, only an all-zero group).",
    )
    reg_eps: float = option(
        1e-4, help="Added to the diagonal of the trace-normalised Gram (torchjd's default)."
    )

    def __post_init__(self) -> None:
        check_param(self.norm_eps >= 0, f"norm_eps must be >= 0, got {self.norm_eps}")
        check_param(
            self.reg_eps > 0,
            f"reg_eps must be > 0 (the solver needs a positive definite Gram), got {self.reg_eps}; "
            "torchjd's default is 1e-4",
        )

    def _regularized(self, gram: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Normalised, regularised Gram; inactive domains get an identity block (so ``v = 0``)."""
        normalized, _ = trace_normalized(masked_gram(gram, active), self.norm_eps)
        act = active.to(gram.dtype)
        return normalized + torch.diag(self.reg_eps * act + (1 - act))[None]  # [M, K, K]


@register_aggregator("upgrad")
@dataclass
class UPGrad(_DualCone):
    """UPGrad (Quinton & Rey 2024): each domain's gradient projected onto the dual cone of all of
    them, then averaged. The result never conflicts with any domain's gradient in its group.

    ``fired[m, k]``: domain k's gradient conflicted with the cone, i.e. its projection moved it.
    """

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        m, k, _ = gram.shape
        lower = torch.diag(mean_weights(gram, active)).expand(m, k, k)  # [M, K(row i), K]
        weights = dual_cone_weights(self._regularized(gram, active), lower)  # [M, K, K]
        fired = ((weights - lower) > _FIRED_TOL).any(-1)
        return finish(weights.sum(1), fired, gram, active)


@register_aggregator("dualproj")
@dataclass
class DualProj(_DualCone):
    """DualProj (the projection of GEM, Lopez-Paz & Ranzato 2017): the mean gradient projected
    onto the dual cone of the domain gradients. Never conflicts with any domain's gradient.

    ``fired[m, k]``: the mean conflicted with domain k (its constraint is active: k's weight was
    raised above the mean's).
    """

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        m, k, _ = gram.shape
        lower = mean_weights(gram, active).expand(m, 1, k)  # [M, 1, K]
        weights = dual_cone_weights(self._regularized(gram, active), lower)[:, 0]  # [M, K]
        return finish(weights, (weights - lower[:, 0]) > _FIRED_TOL, gram, active)
