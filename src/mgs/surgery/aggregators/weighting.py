"""Closed-form weightings of the Gram matrix: IMTL-G, Aligned-MTL and ConFIG, batched over groups.

Each mirrors torchjd 0.18 (``IMTLGWeighting``, ``AlignedMTLWeighting``, ``ConFIG``) with batched
``torch.linalg`` calls on the ``[M, K, K]`` stack; inactive domains are zero rows and columns whose
eigenvalues / singular values fall below the same relative cut-offs, which makes each result that
of the active domains' matrix alone. ``fired[m, k]`` for all three: domain k's weight differs from
the equal weight of the active domains (the method re-weighted it).
"""

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


@register_aggregator("imtl_g")
def imtl_g_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """IMTL-G (Liu et al. 2021), generalised to dependent gradients as in torchjd: weights
    ``pinv(G) @ sqrt(diag G)`` normalised to sum 1, so that the combined gradient has equal
    projections onto every domain's unit gradient (0 where the weights sum to < 1e-12)."""
    gram = masked_gram(gram, active)
    d = torch.diagonal(gram, dim1=1, dim2=2).clamp(min=0).sqrt()  # [M, K]
    n_active = active.sum().to(gram.dtype)
    rtol = (
        n_active * torch.finfo(gram.dtype).eps
    )  # torch's default for a K_active x K_active matrix
    v = torch.einsum("mij,mj->mi", torch.linalg.pinv(gram, rtol=rtol), d)  # [M, K]
    v_sum = v.sum(-1, keepdim=True)
    small = v_sum.abs() < 1e-12
    weights = torch.where(small, 0.0, v / torch.where(small, 1.0, v_sum))
    return finish(weights, reweighted(weights, active), gram, active)


@register_aggregator("aligned_mtl")
@dataclass
class AlignedMTL(Aggregator):
    """Aligned-MTL (Senushkin et al. 2023): the mean weights through the balance transformation
    ``B = sqrt(scale) V diag(lambda)^(-1/2) V^T`` of the Gram's eigen-decomposition (eigenvalues
    above ``max(lambda) * K * eps``), which makes the combined gradients' components equal.
    """

    scale_mode: str = option(
        "min",
        help="Eigenvalue that sets the scale: min (torchjd's default), median, or rmse (the mean, "
        "as the original code).",
    )

    def __post_init__(self) -> None:
        check_param(
            self.scale_mode in ("min", "median", "rmse"),
            f"scale_mode {self.scale_mode!r} is unknown; write one of: min, median, rmse",
        )

    def __call__(self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
        gram = masked_gram(gram, active)
        k = gram.shape[-1]
        lam, vec = torch.linalg.eigh(gram, UPLO="U")  # ascending: [M, K], [M, K, K]
        n_active = active.sum().to(gram.dtype)
        tol = lam.amax(-1, keepdim=True) * n_active * torch.finfo(gram.dtype).eps
        kept = lam > tol  # [M, K]: the top `rank` eigenvalues
        rank = kept.sum(-1)  # [M]
        safe = torch.where(kept, lam, 1.0)
        if self.scale_mode == "min":
            scale = torch.where(kept, lam, torch.inf).amin(-1)
        elif self.scale_mode == "median":  # torch.median: the lower middle value
            index = (k - rank + (rank - 1).clamp(min=0) // 2).clamp(max=k - 1)
            scale = torch.gather(lam, 1, index[:, None])[:, 0]
        else:
            scale = (lam * kept).sum(-1) / rank.clamp(min=1)
        inv_sqrt = torch.where(kept, safe.rsqrt(), 0.0)  # [M, K]
        balance = torch.einsum("mik,mk,mjk->mij", vec, inv_sqrt, vec)  # V S^-1/2 V^T
        balance = scale.clamp(min=0).sqrt()[:, None, None] * balance
        eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
        balance = torch.where(rank[:, None, None] > 0, balance, eye)  # rank 0: B = I
        alpha = torch.einsum("mij,j->mi", balance, mean_weights(gram, active))
        alpha = torch.where(active[None, :], alpha, 0.0)
        return finish(alpha, reweighted(alpha, active), gram, active)


@register_aggregator("config")
def config_aggregator(gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor):
    """ConFIG (Liu et al. 2024, Eq. 2): the direction whose cosines with all domain gradients are
    equal (``pinv`` of the unit gradients times ones), scaled to the sum of the gradients'
    projections on it. From the Gram: with ``D`` the gradient norms and ``C = D^-1 G D^-1`` the
    cosines, ``c = D^-1 pinv(C) 1`` and the result is ``J^T c (1^T G c) / |J^T c|^2``.
    """
    gram = masked_gram(gram, active)
    norms = torch.diagonal(gram, dim1=1, dim2=2).clamp(min=0).sqrt()  # [M, K]
    inv = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
    cosines = inv[:, :, None] * gram * inv[:, None, :]  # [M, K, K]
    ones = active.to(gram.dtype)  # torchjd's SumWeighting over the rows
    rtol = active.sum().to(gram.dtype) * torch.finfo(gram.dtype).eps
    pinv = torch.linalg.pinv(cosines, rtol=rtol, hermitian=True)
    c = inv * torch.einsum("mij,j->mi", pinv, ones)  # [M, K]: best direction = J^T c
    g_c = torch.einsum("mij,mj->mi", gram, c)  # [M, K]
    sq_norm = (c * g_c).sum(-1).clamp(min=0)  # |J^T c|^2
    length = (g_c * ones).sum(-1)  # sum_i <g_i, J^T c>
    # torchjd normalises J^T c with F.normalize (eps 1e-12 on its norm, which is scale-free here:
    # the unit gradients' pinv); below that the direction is 0/0 (e.g. g_2 = -s g_1), and mgs
    # returns 0 where torchjd returns rounding noise.
    defined = sq_norm.sqrt() > 1e-12
    weights = torch.where(defined, length / torch.where(defined, sq_norm, 1.0), 0.0)[:, None] * c
    return finish(weights, reweighted(weights, active), gram, active)
