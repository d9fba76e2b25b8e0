"""Exact batched solver of the dual-cone quadratic program of UPGrad and DualProj.

For every group ``m`` and every weight vector ``u`` (row ``r``), solve

    min_v  v^T G_m v   subject to   v >= u          (G_m positive definite, K x K)

which is the dual of projecting ``J^T u`` onto the dual cone of the rows of ``J`` (Proposition 1 of
Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): the projection is
``J^T v``. torchjd solves each one with quadprog on the host; here every group and row is solved at
once by *enumerating active sets*: for each of the ``2^K`` sets ``S`` of constraints held with
equality (``v_S = u_S``), the free part solves the linear system ``G_FF v_F = -G_FS u_S``; the
solution is the candidate that satisfies the KKT conditions (multipliers ``lambda_S = (G v)_S >= 0``
and ``v_F >= u_F``). For a positive definite G exactly one set does (in exact arithmetic; in
degenerate cases several sets give the same ``v``), so picking the candidate with the smallest KKT
violation returns the exact minimiser up to the rounding of a K x K linear solve. Cost: ``2^K``
batched K x K solves per group, all in a few kernels (K <= 10 is practical: 1024 sets). It is
hand-written because no maintained PyTorch library solves many tiny QPs in batch on any device
(qpth / cvxpylayers are unmaintained and iterative).
"""

from __future__ import annotations

import torch

from mgs.surgery.aggregators.registry import check_param

MAX_DOMAINS = 12  # 4096 active sets: beyond this, enumerating them is too slow
_BATCH_ELEMENTS = 1 << 22  # active sets per chunk: at most this many floats in a chunk's systems


def active_set_masks(num_domains: int, device: torch.device) -> torch.Tensor:
    """All ``2^K`` subsets of the K domains as boolean rows: ``[2^K, K]`` (row s = bits of s)."""
    bits = torch.arange(num_domains, device=device)
    return (torch.arange(2**num_domains, device=device)[:, None] >> bits) & 1 == 1


def dual_cone_weights(gram: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Exact minimisers of ``v^T G v`` s.t. ``v >= u``: ``gram [M, K, K]``, ``u [M, R, K]`` ->
    ``v [M, R, K]``. ``gram`` must be positive definite (torchjd adds ``reg_eps * I``)."""
    m, k, _ = gram.shape
    rows = u.shape[1]
    check_param(
        k <= MAX_DOMAINS,
        f"the dual-cone solver enumerates 2^K active sets and supports at most {MAX_DOMAINS} "
        f"domains, got {k}; use pcgrad, mgda or imtl_g for more domains",
    )
    masks = active_set_masks(k, gram.device)  # [S, K] True = constraint held with equality
    chunk = max(1, _BATCH_ELEMENTS // max(1, m * k * max(k, rows)))
    best_v = torch.zeros_like(u)
    best_violation = torch.full((m, rows), torch.inf, dtype=gram.dtype, device=gram.device)
    for start in range(0, masks.shape[0], chunk):
        v, violation = _candidates(gram, u, masks[start : start + chunk])  # [C, M, R, K], [C, M, R]
        violation, pick = violation.min(0)  # [M, R]
        v = torch.gather(v, 0, pick[None, :, :, None].expand(1, m, rows, k))[0]
        better = violation < best_violation
        best_v = torch.where(better[..., None], v, best_v)
        best_violation = torch.where(better, violation, best_violation)
    return best_v


def _candidates(
    gram: torch.Tensor, u: torch.Tensor, clamped: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stationary point of every active set in ``clamped [C, K]`` and its KKT violation."""
    free = ~clamped  # [C, K]
    dtype = gram.dtype
    both_free = (free[:, :, None] & free[:, None, :]).to(dtype)  # [C, K, K]
    eye = torch.diag_embed(clamped.to(dtype))  # [C, K, K] identity on the clamped coordinates
    systems = gram[None] * both_free[:, None] + eye[:, None]  # [C, M, K, K]
    u_clamped = u[None] * clamped[:, None, None, :].to(dtype)  # [C, M, R, K]
    pushed = torch.einsum("mij,cmrj->cmri", gram, u_clamped)  # [C, M, R, K]: G_{:,S} u_S
    rhs = torch.where(clamped[:, None, None, :], u[None], -pushed)  # [C, M, R, K]
    v, info = torch.linalg.solve_ex(systems, rhs.transpose(-1, -2))  # [C, M, K, R]
    v = v.transpose(-1, -2)  # [C, M, R, K]
    multipliers = torch.einsum("mij,cmrj->cmri", gram, v)  # (G v): lambda on the clamped set
    clamp_b = clamped[:, None, None, :]
    violation = torch.where(clamp_b, (-multipliers).clamp(min=0), (u[None] - v).clamp(min=0))
    violation = violation.amax(-1)  # [C, M, R]
    bad = (info != 0)[:, :, None] | ~torch.isfinite(violation)
    violation = torch.where(bad, torch.inf, violation)
    return v, violation
