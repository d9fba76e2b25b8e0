"""The batched solvers against independent solvers: the dual-cone QP against quadprog, CAGrad's
problem against CLARABEL at tight tolerances, and hand-worked cases."""

from __future__ import annotations

import warnings

import pytest
import torch

from mgs.errors import ConfigError
from mgs.surgery.aggregators import CAGrad
from mgs.surgery.aggregators.cagrad import _minimise
from mgs.surgery.aggregators.qp import dual_cone_weights


def _pd_gram(k: int, seed: int, m: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(m, k, k + 2, dtype=torch.float64, generator=gen)
    j[..., 0] += 2 * torch.randn(m, k, dtype=torch.float64, generator=gen)  # conflicts
    gram = j @ j.transpose(1, 2)
    gram = gram / torch.diagonal(gram, dim1=1, dim2=2).sum(-1)[:, None, None]
    return gram + 1e-4 * torch.eye(k, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(12))
def test_dual_cone_qp_matches_quadprog(seed: int) -> None:
    pytest.importorskip("quadprog", reason="quadprog is the independent QP solver (dev extra)")
    qpsolvers = pytest.importorskip("qpsolvers", reason="qpsolvers (dev extra)")
    import numpy as np

    k = 1 + seed % 6
    gram = _pd_gram(k, seed, m=3)
    gen = torch.Generator().manual_seed(100 + seed)
    u = torch.randn(3, 4, k, dtype=torch.float64, generator=gen)  # any sign, 4 rows per group
    v = dual_cone_weights(gram, u)
    for g in range(3):
        for r in range(4):
            expected = qpsolvers.solve_qp(
                gram[g].numpy(), np.zeros(k), -np.eye(k), -u[g, r].numpy(), solver="quadprog"
            )
            torch.testing.assert_close(v[g, r], torch.from_numpy(expected), rtol=1e-9, atol=1e-11)


def test_dual_cone_qp_hand_worked() -> None:
    # G = [[1, -1], [-1, 2]] (g1 = (1, 0), g2 = (-1, 1)), u = (1/2, 0): unconstrained minimiser of
    # v^T G v over v2 for v1 = 1/2 is v2 = 1/4 >= 0, so v = (1/2, 1/4), multiplier (G v)_1 = 1/4.
    gram = torch.tensor([[[1.0, -1.0], [-1.0, 2.0]]], dtype=torch.float64)
    v = dual_cone_weights(gram, torch.tensor([[[0.5, 0.0]]], dtype=torch.float64))
    torch.testing.assert_close(v[0, 0], torch.tensor([0.5, 0.25], dtype=torch.float64))
    # The projection g1/2 + g2/4 = (1/4, 1/4) is orthogonal to g2 and non-conflicting with g1.


def test_dual_cone_qp_refuses_too_many_domains() -> None:
    with pytest.raises(ConfigError, match="at most 12 domains"):
        dual_cone_weights(torch.eye(13, dtype=torch.float64)[None], torch.zeros(1, 1, 13))


def _cagrad_problem(seed: int, k: int, c: float):
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(k, 6, dtype=torch.float64, generator=gen)
    j[:, 0] += 2 * torch.randn(k, dtype=torch.float64, generator=gen)
    gram = j @ j.T
    unit = gram / gram.trace()
    u = torch.full((k,), 1 / k, dtype=torch.float64)
    b = unit @ u
    phi = c**2 * (b @ u)
    return unit, b, phi


@pytest.mark.parametrize("seed", range(10))
def test_cagrad_minimiser_matches_clarabel_at_tight_tolerance(seed: int) -> None:
    cp = pytest.importorskip("cvxpy", reason="cvxpy + CLARABEL are the independent solver")
    pytest.importorskip("clarabel", reason="CLARABEL (dev extra)")
    k, c = 2 + seed % 3, [0.2, 0.4, 0.8][seed % 3]
    unit, b, phi = _cagrad_problem(seed, k, c)
    w, g_norm = _minimise(unit[None], b[None], phi[None], torch.ones(k, dtype=torch.bool))
    variable = cp.Variable(k)
    root = torch.linalg.cholesky(unit + 1e-15 * torch.eye(k, dtype=torch.float64)).numpy()
    objective = b.numpy() @ variable + float(phi.sqrt()) * cp.norm(root.T @ variable, 2)
    problem = cp.Problem(cp.Minimize(objective), [variable >= 0, cp.sum(variable) == 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "solution may be inaccurate" at these tolerances
        problem.solve(cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)

    def f(x: torch.Tensor) -> float:
        return float(b @ x + phi.sqrt() * (x @ unit @ x).sqrt())

    expected = torch.from_numpy(variable.value)
    assert f(w[0]) <= f(expected) + 1e-12, "never worse than the interior-point solver"
    # CLARABEL reaches ~1e-9 on the objective here, so |g_w| agrees to ~1e-6 (ours is exact).
    torch.testing.assert_close(w[0] @ unit @ w[0], expected @ unit @ expected, rtol=1e-5, atol=0)
    assert float(g_norm[0]) == pytest.approx(float((w[0] @ unit @ w[0]).sqrt()))


def test_cagrad_with_c_zero_is_the_mean_and_c_large_minimises_the_worst_domain() -> None:
    gen = torch.Generator().manual_seed(0)
    j = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    active = torch.ones(3, dtype=torch.bool)
    coef, _ = CAGrad(c=0.0)((j @ j.T)[None], active, None)
    torch.testing.assert_close(coef, torch.full((1, 3), 1 / 3, dtype=torch.float64))
    # Pareto-stationary: 0 is in the hull of g1 = (1, 0), g2 = (-1, 0), g3 = (0, 1) and f >= 0 there:
    # the minimum of f is at g_w = 0 (an edge through the origin), so the update is zero.
    j = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    coef, _ = CAGrad(c=0.4)((j @ j.T)[None], active, None)
    torch.testing.assert_close(coef, torch.zeros(1, 3, dtype=torch.float64))


def test_cagrad_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="c must be >= 0"):
        CAGrad(c=-1.0)
