"""CAGrad (Liu et al. 2021) per group, with an exact batched solver of its dual problem.

torchjd 0.18's ``CAGradWeighting`` normalises the Gram by its trace (``Gn``), takes the mean
``g0 = J^T u`` (``u = 1/K``) and solves with cvxpy/CLARABEL, over the simplex,

    min_w  f(w) = b^T w + sqrt_phi * sqrt(w^T Gn w),   b = Gn u,   sqrt_phi = c |g0|

then returns ``u + sqrt_phi / |g_w| * w`` (``g_w = J^T w``), or zeros when ``|g_w| < eps`` (a
Pareto-stationary group). Here every group is solved at once, exactly, by enumerating the faces of
the simplex. On a face ``F`` whose Gram ``Gn_FF`` is invertible, the stationary point is closed
form: with ``p = Gn_FF^-1 1``, ``q = Gn_FF^-1 b_F``, ``P = 1^T p``, ``Q = 1^T q``, ``R = b_F^T q``
and ``D = Q^2 - P (R - phi)``,

    w_F = ((Q + sqrt(D)) / P * p - q) / sqrt(D)        (sums to 1; valid when D > 0, w_F >= 0)

(from ``b_F + sqrt_phi Gn_FF w_F / |g_w| = nu 1`` and ``|g_w| = sqrt_phi / sqrt(D)``). The minimum
is attained at a vertex, at such a point, or at ``g_w = 0`` when 0 is in the convex hull of the
gradients (on faces whose gradients are linearly dependent the objective restricted to the face
has no other stationary point), so the candidate with the smallest ``f`` among the feasible ones is
the exact minimiser, up to the rounding of K x K solves. Cost: ``2^K`` small solves and
eigen-decompositions per group (see :mod:`mgs.surgery.aggregators.qp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mgs.dataclass_config import option
from mgs.surgery.aggregators.qp import MAX_DOMAINS, active_set_masks
from mgs.surgery.aggregators.registry import (
    Aggregator,
    check_param,
    finish,
    masked_gram,
    mean_weights,
    register_aggregator,
    reweighted,
    trace_normalized,
)

_FEASIBLE_TOL = 1e-9  # a face's weights may be this negative (rounding) before it is rejected
_NULL_TOL = 1e-12  # an eigenvalue of the trace-normalised Gram this small is a linear dependency


@register_aggregator("cagrad")
@dataclass
class CAGrad(Aggregator):
    """Conflict-Averse Gradient descent: the update maximising the worst domain's improvement
    within a ball of radius ``c |g0|`` around the mean gradient ``g0``.

    ``fired[m, k]``: domain k's weight differs from the mean's (``w`` is not uniform).
    """

    c: float = option(
        0.4,
        help="Radius of the ball around the mean gradient, relative to its norm (the Nash-MTL "
        "benchmarks' CAGrad setting; c = 0 is the mean).",
    )
    norm_eps: float = option(
        0.0,
        help="A group whose Gram trace is below this counts as zero (torchjd: its norm_eps, 1e-4; "
        "mgs: 0, only an all-zero group).",
    )
    stationary_eps: float = option(
        1e-4,
        help="|g_w| (trace-normalised) below which the group is Pareto-stationary and gets zero "
        "weights (torchjd's norm_eps).",
    )

    def __post_init__(self) -> None:
        check_param(self.c >= 0, f"c must be >= 0, got {self.c}")
        check_param(self.norm_eps >= 0, f"norm_eps must be >= 0, got {self.norm_eps}")
        check_param(
            self.stationary_eps >= 0, f"stationary_eps must be >= 0, got {self.stationary_eps}"
        )

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        gram = masked_gram(gram, active)
        unit, _ = trace_normalized(gram, self.norm_eps)  # [M, K, K]
        k = gram.shape[-1]
        check_param(k <= MAX_DOMAINS, f"cagrad supports at most {MAX_DOMAINS} domains, got {k}")
        u = mean_weights(gram, active)  # [K]
        b = torch.einsum("mij,j->mi", unit, u)  # [M, K]
        phi = self.c**2 * (b * u).sum(-1)  # [M]: sqrt_phi^2 = c^2 |g0|^2
        w, g_norm = _minimise(unit, b, phi, active)  # [M, K], [M]
        scale = phi.clamp(min=0).sqrt() / torch.where(g_norm > 0, g_norm, 1.0)
        coef = torch.where(
            (g_norm >= self.stationary_eps)[:, None], u[None, :] + scale[:, None] * w, 0.0
        )
        coef = torch.where(active[None, :], coef, 0.0)
        return finish(coef, reweighted(coef, active), gram, active)


def _minimise(
    unit: torch.Tensor, b: torch.Tensor, phi: torch.Tensor, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimiser ``w [M, K]`` of ``f`` over the simplex of the active domains, and ``|g_w|``."""
    m, k, _ = unit.shape
    subsets = active_set_masks(k, torch.device("cpu"))[1:]  # [F, K] non-empty subsets
    faces = subsets[subsets.sum(-1) >= 2].to(unit.device)
    vertices = torch.eye(k, dtype=torch.bool, device=unit.device)
    candidates = torch.cat(  # [F + K, M, K]: interior points of faces, then the vertices
        [_face_points(unit, b, phi, faces), vertices[:, None, :].to(unit.dtype).expand(-1, m, -1)]
    )
    members = torch.cat([faces, vertices])  # [F + K, K]
    of_active = ~(members & ~active[None, :]).any(-1)  # [F + K]: faces of active domains only
    feasible = (candidates >= -_FEASIBLE_TOL).all(-1) & torch.isfinite(candidates).all(-1)
    feasible &= of_active[:, None]
    w = candidates.clamp(min=0)
    w = w / w.sum(-1, keepdim=True).clamp(min=torch.finfo(unit.dtype).tiny)
    g_sq = torch.einsum("fmi,mij,fmj->fm", w, unit, w).clamp(min=0)  # [F', M]
    value = (w * b[None]).sum(-1) + phi.clamp(min=0).sqrt()[None] * g_sq.sqrt()
    value = torch.where(feasible, value, torch.inf)
    zero_in_hull = _zero_in_hull(unit, members, of_active)  # [M]: g_w = 0 is feasible, f = 0
    best_value, pick = value.min(0)  # [M]
    take_zero = zero_in_hull & (best_value > 0)
    w = torch.gather(w, 0, pick[None, :, None].expand(1, m, k))[0]
    g_norm = torch.gather(g_sq, 0, pick[None, :])[0].sqrt()
    return w, torch.where(take_zero, 0.0, g_norm)


def _face_points(
    unit: torch.Tensor, b: torch.Tensor, phi: torch.Tensor, faces: torch.Tensor
) -> torch.Tensor:
    """The stationary point of ``f`` on every face: ``[F, M, K]`` (NaN where there is none)."""
    dtype = unit.dtype
    inside = faces.to(dtype)  # [F, K]
    systems = (
        unit[None] * (inside[:, :, None] * inside[:, None, :])[:, None]
        + torch.diag_embed(1 - inside)[:, None]
    )  # [F, M, K, K]: Gn_FF, identity outside F
    rhs = torch.stack(
        [inside[:, None, :].expand(-1, b.shape[0], -1), b[None] * inside[:, None]], -1
    )
    sol, info = torch.linalg.solve_ex(systems, rhs)  # [F, M, K, 2]
    p, q = sol[..., 0], sol[..., 1]  # [F, M, K]
    big_p, big_q = p.sum(-1), q.sum(-1)  # [F, M]
    big_r = (b[None] * q).sum(-1)
    disc = big_q**2 - big_p * (big_r - phi[None])
    ok = (info == 0) & (disc > 0) & (big_p > 0)
    root = torch.where(ok, disc, 1.0).sqrt()
    nu = (big_q + root) / torch.where(ok, big_p, 1.0)
    w = (nu[..., None] * p - q) / root[..., None]
    return torch.where(ok[..., None], w * inside[:, None], torch.nan)


def _zero_in_hull(unit: torch.Tensor, faces: torch.Tensor, of_active: torch.Tensor) -> torch.Tensor:
    """``[M]``: 0 is a convex combination of the gradients, i.e. some set of them is linearly
    dependent with a null vector of one sign (a zero gradient is the set of one)."""
    inside = faces.to(unit.dtype)  # [F, K]
    # Outside the face: 2 on the diagonal, above every eigenvalue of a trace-normalised Gram.
    systems = (
        unit[None] * (inside[:, :, None] * inside[:, None, :])[:, None]
        + torch.diag_embed(2 * (1 - inside))[:, None]
    )  # [F, M, K, K]
    lam, vec = torch.linalg.eigh(systems)  # ascending
    null = vec[..., 0]  # [F, M, K]: eigenvector of the smallest eigenvalue
    null = null * torch.where(null.sum(-1, keepdim=True) < 0, -1.0, 1.0)
    one_sign = torch.where(faces[:, None, :], null > 0, True).all(-1)
    return ((lam[..., 0] <= _NULL_TOL) & one_sign & of_active[:, None]).any(0)
