"""GradVac (Wang et al. 2021): PCGrad's walk with adaptive cosine targets, per group, with state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mgs.dataclass_config import option
from mgs.surgery.aggregators.registry import (
    Aggregator,
    check_param,
    finish,
    masked_gram,
    register_aggregator,
    trace_normalized,
)
from mgs.surgery.aggregators.state import check_keys, tensor_entry


@register_aggregator("gradvac")
@dataclass
class GradVac(Aggregator):
    """Gradient Vaccine, as torchjd 0.18's ``GradVacWeighting``, for every group at once.

    For each domain i, the other domains j in a random order (the surgeon's, as PCGrad's): the
    cosine ``phi`` between the running ``g_i'`` and the original ``g_j`` is compared with the
    target ``phi_hat[i, j]``; when below it, ``g_i' += w g_j`` with the closed-form ``w`` that
    lifts the cosine to the target; then ``phi_hat[i, j] <- (1 - beta) phi_hat + beta phi``. The
    result is ``sum_i g_i'``. The targets ``phi_hat [M, K, K]`` are the state (one set per
    group), saved by ``state_dict()``; pairs with an inactive domain keep their target.

    Each group's Gram is divided by its trace first, so ``eps`` is relative to the group's scale
    (torchjd adds an absolute 1e-8, larger than ``|g_i| |g_j|`` in most per-tensor groups of an LLM).

    ``fired[m, k]``: domain k's gradient was corrected (its cosine with another domain was below
    the target).
    """

    beta: float = option(0.5, help="EMA rate of the cosine targets (torchjd's default).")
    eps: float = option(1e-8, help="Added to the denominators (relative to the group's trace).")
    _phi: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_param(0.0 <= self.beta <= 1.0, f"beta must be in [0, 1], got {self.beta}")
        check_param(self.eps >= 0, f"eps must be >= 0, got {self.eps}")

    def state_dict(self) -> dict[str, Any]:
        return {} if self._phi is None else {"phi_hat": self._phi.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_keys(state, ("phi_hat",), "GradVac")
        self._phi = tensor_entry(state, "phi_hat", "GradVac", ndim=3)

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        gram = masked_gram(gram, active)
        unit, _ = trace_normalized(gram, 0.0)  # [M, K, K], eps relative to the trace
        m, k, _ = gram.shape
        phi_hat = self._targets(m, k, gram)  # [M, K(i), K(j)]
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        coef = eye.expand(m, k, k) * active.to(gram.dtype)[None, :, None]  # row i: g_i'
        norm_orig = torch.diagonal(unit, dim1=1, dim2=2).clamp(min=0).sqrt()  # [M, K]
        fired = torch.zeros(m, k, dtype=torch.bool, device=gram.device)
        for step in range(k - 1):  # vectorised over groups and domains i: rows are independent
            j = orders[:, :, step]  # [M, K]
            dots = torch.einsum("mik,mkl->mil", coef, unit)  # [M, K(i), K]: <g_i', g_l>
            dot = torch.gather(dots, 2, j[:, :, None])[..., 0]  # <g_i', g_j>
            norm_i = (dots * coef).sum(-1).clamp(min=0).sqrt()  # |g_i'|
            norm_j = torch.gather(norm_orig, 1, j)
            phi = dot / (norm_i * norm_j + self.eps)
            target = torch.gather(phi_hat, 2, j[:, :, None])[..., 0]  # [M, K]
            pair = active[None, :] & active[j]
            vaccinate = pair & (phi < target)
            root_phi = (1 - phi * phi).clamp(min=0).sqrt()
            root_target = (1 - target * target).clamp(min=0).sqrt()
            w = norm_i * (target * root_phi - phi * root_target) / (norm_j * root_target + self.eps)
            coef = coef.scatter_add(2, j[:, :, None], torch.where(vaccinate, w, 0.0)[..., None])
            moved = torch.where(pair, (1 - self.beta) * target + self.beta * phi, target)
            phi_hat = phi_hat.scatter(2, j[:, :, None], moved[..., None])
            fired |= vaccinate
        self._phi = phi_hat
        return finish(coef.sum(1), fired, gram, active)

    def _targets(self, m: int, k: int, gram: torch.Tensor) -> torch.Tensor:
        if self._phi is None:
            return torch.zeros(m, k, k, dtype=gram.dtype, device=gram.device)
        check_param(
            tuple(self._phi.shape) == (m, k, k),
            f"GradVac's state holds targets for {tuple(self._phi.shape)} (groups, domains, "
            f"domains) but this surgeon has {(m, k, k)}: resume with the same model, domains and "
            "granularity",
        )
        return self._phi.to(dtype=gram.dtype, device=gram.device)
