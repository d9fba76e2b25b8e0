"""Nash-MTL (Navon et al. 2022) per group: the Nash bargaining solution, solved exactly in batch."""

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
    reweighted,
)
from mgs.surgery.aggregators.state import check_keys, tensor_entry

_DONE = 1e-13  # |G a - 1/a| / |1/a| at which a group has converged (float64 rounding ~1e-15)
_RESIDUAL_TOL = 1e-6  # |G a - 1/a| / |1/a| above this after max_iters: no solution (see below)
_SYNC_EVERY = 5


@register_aggregator("nash_mtl")
@dataclass
class NashMTL(Aggregator):
    """The weights ``alpha > 0`` with ``G alpha = 1 / alpha`` (Theorem 5.1 of the paper: the
    combined gradient ``d = J^T alpha`` satisfies ``<g_i, d> alpha_i = 1``, the Nash bargaining
    solution), per group, followed by torchjd's ``max_norm`` clipping of ``|d|``.

    ``alpha`` minimises the strictly convex ``a^T G a / 2 - sum_i log a_i``, which a damped Newton
    method solves to machine precision in a few iterations, for all groups at once (with
    trace-normalised Gram matrices; ``alpha`` scales as ``1 / sqrt(trace)``). torchjd (like the
    paper's code) approaches the same point by a sequence of convex programs (cvxpy/ECOS, at most
    ``optim_niter = 20``); where those converge the two agree, where they stop early they differ
    (docs/aggregators.md). Domains with a zero gradient in a group are left out there (no
    solution exists with them); where no solution exists for the others (e.g. two exactly opposite
    gradients), the group keeps its previous weights, as torchjd does when its solver fails
    (initially all ones).

    State (saved by ``state_dict()``): the last weights ``[M, K]`` (the warm start, and the weights
    reused between updates when ``update_weights_every > 1``) and the call counter.

    ``fired[m, k]``: domain k's weight differs from the mean of the active domains' weights.
    """

    max_norm: float = option(
        1.0,
        help="Scale each group's combined gradient down to this norm (0: off; torchjd's default).",
    )
    update_weights_every: int = option(
        1, help="Solve for new weights every this many steps; reuse the last ones in between."
    )
    max_iters: int = option(50, help="Newton iterations at most (converged groups stop earlier).")
    _alpha: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_param(self.max_norm >= 0, f"max_norm must be >= 0, got {self.max_norm}")
        check_param(
            self.update_weights_every >= 1,
            f"update_weights_every must be >= 1, got {self.update_weights_every}",
        )
        check_param(self.max_iters >= 1, f"max_iters must be >= 1, got {self.max_iters}")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"calls": self._calls}
        if self._alpha is not None:
            state["alpha"] = self._alpha.clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_keys(state, ("alpha", "calls"), "NashMTL")
        self._alpha = tensor_entry(state, "alpha", "NashMTL", ndim=2)
        self._calls = int(state.get("calls", 0))

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        gram = masked_gram(gram, active)
        m, k, _ = gram.shape
        present = active[None, :] & (torch.diagonal(gram, dim1=1, dim2=2) > 0)  # [M, K]
        previous = self._previous(m, k, gram)
        if self._calls % self.update_weights_every == 0:
            alpha = nash_weights(gram, present, previous, self.max_iters)
            self._alpha = alpha
        else:
            alpha = torch.where(present, previous, 0.0)
        self._calls += 1
        if self.max_norm > 0:
            norm = torch.einsum("mi,mij,mj->m", alpha, gram, alpha).clamp(min=0).sqrt()  # |d|
            shrink = (self.max_norm / torch.where(norm > 0, norm, 1.0)).clamp(max=1.0)
            alpha = alpha * shrink[:, None]
        return finish(alpha, reweighted(alpha, active), gram, active)

    def _previous(self, m: int, k: int, gram: torch.Tensor) -> torch.Tensor:
        if self._alpha is None:
            return torch.ones(m, k, dtype=gram.dtype, device=gram.device)  # torchjd's start
        check_param(
            tuple(self._alpha.shape) == (m, k),
            f"NashMTL's state holds weights for {tuple(self._alpha.shape)} (groups, domains) but "
            f"this surgeon has {(m, k)}: resume with the same model, domains and granularity",
        )
        return self._alpha.to(dtype=gram.dtype, device=gram.device)


def nash_weights(
    gram: torch.Tensor, present: torch.Tensor, previous: torch.Tensor, max_iters: int
) -> torch.Tensor:
    """``alpha [M, K]`` with ``(G alpha)_i = 1 / alpha_i`` on the present domains (0 elsewhere);
    ``previous`` where no such point exists.

    Newton's method on ``f(a) = a^T G a / 2 - sum log a``, which is self-concordant: the damped
    step ``delta / (1 + lambda)`` (``lambda`` the Newton decrement) stays positive and decreases
    ``f`` by a fixed amount, and full steps converge quadratically once ``lambda < 1/4``
    (Nesterov & Nemirovski); a full step is also taken earlier whenever it decreases ``f``.
    """
    m = gram.shape[0]
    dtype = gram.dtype
    trace = torch.diagonal(gram, dim1=1, dim2=2).sum(-1)  # [M]
    scale = torch.where(trace > 0, trace, 1.0)
    unit = gram / scale[:, None, None]  # [M, K, K] trace-normalised
    on = present.to(dtype)
    a = _start(unit, present, previous * scale.sqrt()[:, None])
    outside = torch.diag_embed(1 - on)  # identity on the absent domains: their step is 0
    done = torch.zeros(m, dtype=torch.bool, device=gram.device)
    for it in range(max_iters):
        grad = (torch.einsum("mij,mj->mi", unit, a) - 1 / a) * on  # [M, K]
        hess = unit * (on[:, :, None] * on[:, None, :]) + torch.diag_embed(on / a**2) + outside
        delta = -torch.linalg.solve_ex(hess, grad)[0]  # [M, K]
        decrement = (-(grad * delta).sum(-1)).clamp(min=0).sqrt()  # lambda
        converged = grad.norm(dim=-1) <= _DONE * ((1 / a) * on).norm(dim=-1)
        done = done | converged | ~(decrement > 0)
        full = a + delta
        take_full = (decrement < 0.25) | (
            ((full > 0) | ~present).all(-1) & (_objective(unit, full, on) < _objective(unit, a, on))
        )
        step = torch.where(take_full, 1.0, 1 / (1 + decrement))
        a = torch.where(done[:, None], a, a + step[:, None] * delta)
        if (it + 1) % _SYNC_EVERY == 0 and bool(done.all()):
            break
    residual = ((torch.einsum("mij,mj->mi", unit, a) - 1 / a) * on).norm(dim=-1)
    solved = residual <= _RESIDUAL_TOL * ((1 / a) * on).norm(dim=-1)
    alpha = torch.where(present, a, 0.0) / scale.sqrt()[:, None]
    return torch.where(solved[:, None], alpha, previous)


def _start(unit: torch.Tensor, present: torch.Tensor, warm: torch.Tensor) -> torch.Tensor:
    """The previous weights where usable (else ``1 / |g_i|``), rescaled to the best multiple."""
    diag = torch.diagonal(unit, dim1=1, dim2=2)
    use_warm = ((torch.isfinite(warm) & (warm > 0)) | ~present).all(-1, keepdim=True)  # [M, 1]
    cold = torch.where(diag > 0, diag.clamp(min=1e-300).rsqrt(), 1.0)
    a = torch.where(present, torch.where(use_warm, warm, cold), 1.0)
    on = present.to(unit.dtype)
    # argmin_s f(s a) = sqrt(K / a^T G a): the start's scale is then right whatever its direction
    quad = torch.einsum("mi,mij,mj->m", a * on, unit, a * on)
    best = (on.sum(-1) / torch.where(quad > 0, quad, 1.0)).sqrt()
    return torch.where(present, a * torch.where(quad > 0, best, 1.0)[:, None], 1.0)


def _objective(unit: torch.Tensor, a: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """``a^T G a / 2 - sum_present log a`` for ``a [M, K]``: ``[M]`` (inf where some a <= 0)."""
    quad = torch.einsum("mi,mij,mj->m", a * on, unit, a * on) / 2
    logs = torch.where(on > 0, torch.log(a.clamp(min=0)), 0.0).sum(-1)
    return torch.where(torch.isfinite(logs), quad - logs, torch.inf)
