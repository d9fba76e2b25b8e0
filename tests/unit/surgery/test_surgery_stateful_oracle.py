"""GradVac and Nash-MTL (the stateful aggregators) against torchjd 0.18, over several steps."""

from __future__ import annotations

import warnings

import pytest
import torch
from oracle_cases import oracle_cases

from mgs.surgery.aggregators import GradVac, NashMTL
from mgs.surgery.aggregators.nash_mtl import nash_weights

tj = pytest.importorskip("torchjd.aggregation", reason="torchjd (the dev extra) is the oracle")


def torchjd_orders(k: int, seed: int) -> torch.Tensor:
    """The orders torchjd's GradVac draws after ``torch.manual_seed(seed)``: ``[1, K, K-1]``."""
    torch.manual_seed(seed)
    rows = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        rows.append([others[p] for p in torch.randperm(len(others)).tolist()])
    return torch.tensor(rows, dtype=torch.long).reshape(1, k, max(k - 1, 0))


def _unit_trace(j: torch.Tensor) -> torch.Tensor:
    """J scaled so that its Gram has trace 1: there mgs's relative eps equals torchjd's absolute one."""
    return j / j.pow(2).sum().sqrt()


@pytest.mark.parametrize("seed", range(12))
def test_gradvac_matches_torchjd_step_after_step(seed: int) -> None:
    k = 2 + seed % 3
    gen = torch.Generator().manual_seed(seed)
    ours, ref = GradVac(beta=0.3), tj.GradVac(beta=0.3)
    shared = torch.randn(1, 9, dtype=torch.float64, generator=gen)
    corrected = 0
    for step in range(5):  # the targets carry over: later steps depend on the state
        # Aligned at first, then less and less: the cosines fall below the targets they set.
        j = torch.randn(k, 9, dtype=torch.float64, generator=gen) + (2.0 - step) * shared
        j = _unit_trace(j)
        orders = torchjd_orders(k, 1000 * seed + step)
        torch.manual_seed(1000 * seed + step)
        expected = ref(j)
        coef, fired = ours((j @ j.T)[None], torch.ones(k, dtype=torch.bool), orders)
        torch.testing.assert_close(coef[0] @ j, expected, rtol=1e-10, atol=1e-12)
        corrected += int(fired.sum())
    assert corrected > 0, "the targets rose above some cosines: GradVac corrected something"


def _orders_with_inactive(active: torch.Tensor, seed: int) -> torch.Tensor:
    """torchjd's orders over the active domains, in global indices; inactive ones come last."""
    k = active.shape[0]
    index = torch.nonzero(active).flatten().tolist()
    sub = torchjd_orders(len(index), seed)[0].tolist() if len(index) > 1 else [[]] * len(index)
    rows = [[j for j in range(k) if j != i] for i in range(k)]
    for position, i in enumerate(index):
        mapped = [index[j] for j in sub[position]]
        rows[i] = mapped + [j for j in range(k) if j != i and j not in mapped]
    return torch.tensor(rows, dtype=torch.long).reshape(1, k, k - 1)


@pytest.mark.parametrize("case", range(len(oracle_cases())), ids=[c[0] for c in oracle_cases()])
def test_gradvac_matches_torchjd_on_every_case(case: int) -> None:
    """Random and degenerate cases (zero, identical, opposite gradients, inactive domains), two
    steps on the same Jacobian (the second one starts from the first one's targets)."""
    _, j, active = oracle_cases()[case]
    trace = float(j[active].pow(2).sum())
    j = j / trace**0.5 if trace > 0 else j  # unit trace: mgs's relative eps = torchjd's absolute
    ours, ref = GradVac(), tj.GradVac()
    for step in range(2):
        orders = _orders_with_inactive(active, 10 * case + step)
        torch.manual_seed(10 * case + step)
        expected = ref(j[active])
        coef, _ = ours((j @ j.T)[None], active, orders)
        assert torch.isfinite(coef).all() and (coef[0, ~active] == 0).all()
        torch.testing.assert_close(coef[0] @ j, expected, rtol=1e-9, atol=1e-12)


def test_gradvac_eps_is_relative_to_the_group_scale() -> None:
    """The same gradients at any scale give the same weights (torchjd's absolute eps would not)."""
    gen = torch.Generator().manual_seed(1)
    j = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    orders = torchjd_orders(3, 0)
    active = torch.ones(3, dtype=torch.bool)
    coefs = []
    for scale in (1.0, 1e-5):
        agg = GradVac()
        for _ in range(3):
            coef, _ = agg(((scale * j) @ (scale * j).T)[None], active, orders)
        coefs.append(coef)
    torch.testing.assert_close(coefs[0], coefs[1], rtol=1e-9, atol=0)


def test_gradvac_keeps_the_targets_of_an_inactive_domain() -> None:
    gen = torch.Generator().manual_seed(2)
    j = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    agg = GradVac()
    orders = torchjd_orders(3, 0)
    agg((j @ j.T)[None], torch.ones(3, dtype=torch.bool), orders)
    before = agg.state_dict()["phi_hat"]
    active = torch.tensor([True, True, False])
    coef, _ = agg((j @ j.T)[None], active, orders)
    after = agg.state_dict()["phi_hat"]
    assert coef[0, 2] == 0
    torch.testing.assert_close(after[0, 2], before[0, 2])
    torch.testing.assert_close(after[0, :, 2], before[0, :, 2])
    assert not torch.equal(after[0, 0, 1], before[0, 0, 1])


def _nash_reference(j: torch.Tensor, max_norm: float):
    ref = tj.NashMTL(n_tasks=j.shape[0], max_norm=max_norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's DPP notice
        out = ref(j)
    alpha = torch.from_numpy(ref.weighting.prvs_alpha).to(torch.float64)
    gram = j @ j.T
    residual = float((gram @ alpha - 1 / alpha).norm() / (1 / alpha).norm())
    return out, residual


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("max_norm", [0.0, 1.0])
def test_nash_mtl_matches_torchjd_where_its_solver_converged(seed: int, max_norm: float) -> None:
    pytest.importorskip("cvxpy", reason="torchjd's NashMTL needs cvxpy (dev extra)")
    pytest.importorskip("ecos", reason="torchjd's NashMTL needs ecos (dev extra)")
    k = 2 + seed % 3
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(k, 12, dtype=torch.float64, generator=gen)
    expected, residual = _nash_reference(j, max_norm)
    if residual > 1e-5:
        pytest.skip(
            f"torchjd's 20 convex programs stopped before G a = 1/a (residual {residual:.1e})"
        )
    coef, _ = NashMTL(max_norm=max_norm)((j @ j.T)[None], torch.ones(k, dtype=torch.bool), None)
    torch.testing.assert_close(coef[0] @ j, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", range(len(oracle_cases())))
def test_nash_mtl_solves_the_bargaining_equation_exactly(case: int) -> None:
    """Independent of torchjd: on every case where a solution exists, ``(G a)_i a_i = 1`` for the
    domains with a non-zero gradient, and ``|J^T a| = sqrt(K)``."""
    _, j, active = oracle_cases()[case]
    gram = (j @ j.T)[None]
    present = active[None] & (torch.diagonal(gram, dim1=1, dim2=2) > 0)
    previous = torch.full_like(gram[:, 0], -1.0)  # marks "no solution" below
    alpha = nash_weights(gram * (active[:, None] & active[None, :]), present, previous, 50)[0]
    if (alpha == -1).all():
        assert present.sum() >= 2, "a solution always exists for one domain"
        return  # no solution (e.g. opposite gradients): the previous weights are kept
    on = present[0]
    product = (gram[0] @ alpha)[on] * alpha[on]
    torch.testing.assert_close(product, torch.ones_like(product), rtol=1e-9, atol=0)
    assert (alpha[~on] == 0).all()
    norm = float(alpha @ gram[0] @ alpha) ** 0.5
    assert norm == pytest.approx(float(on.sum()) ** 0.5, rel=1e-9)


def test_nash_mtl_leaves_zero_gradients_out_as_torchjd_on_the_others() -> None:
    pytest.importorskip("cvxpy", reason="torchjd's NashMTL needs cvxpy (dev extra)")
    gen = torch.Generator().manual_seed(4)
    j = torch.randn(3, 8, dtype=torch.float64, generator=gen)
    j[1] = 0
    coef, _ = NashMTL()((j @ j.T)[None], torch.ones(3, dtype=torch.bool), None)
    expected, residual = _nash_reference(j[[0, 2]], 1.0)
    assert residual < 1e-5
    assert coef[0, 1] == 0
    torch.testing.assert_close(coef[0] @ j, expected, rtol=1e-4, atol=1e-6)


def test_nash_mtl_keeps_the_previous_weights_where_no_solution_exists() -> None:
    j = torch.tensor([[1.0, 2.0], [-2.0, -4.0]], dtype=torch.float64)  # exactly opposite
    agg = NashMTL(max_norm=0.0)
    coef, _ = agg((j @ j.T)[None], torch.ones(2, dtype=torch.bool), None)
    torch.testing.assert_close(coef, torch.ones(1, 2, dtype=torch.float64))  # torchjd's start
    good = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    solved, _ = agg((good @ good.T)[None], torch.ones(2, dtype=torch.bool), None)
    torch.testing.assert_close(solved, torch.tensor([[1.0, 0.5]], dtype=torch.float64))
    again, _ = agg((j @ j.T)[None], torch.ones(2, dtype=torch.bool), None)
    torch.testing.assert_close(again, solved)


def test_nash_mtl_update_weights_every_reuses_the_last_weights() -> None:
    gen = torch.Generator().manual_seed(5)
    grams = []
    for _ in range(4):
        j = torch.randn(2, 6, dtype=torch.float64, generator=gen)
        grams.append((j @ j.T)[None])
    active = torch.ones(2, dtype=torch.bool)
    every_two = NashMTL(max_norm=0.0, update_weights_every=2)
    fresh = [NashMTL(max_norm=0.0)(g, active, None)[0] for g in grams]
    reused = [every_two(g, active, None)[0] for g in grams]
    torch.testing.assert_close(reused[0], fresh[0])
    torch.testing.assert_close(reused[1], fresh[0])  # step 1 reuses step 0's weights
    torch.testing.assert_close(reused[2], fresh[2])
    torch.testing.assert_close(reused[3], fresh[2])
    assert not torch.allclose(fresh[0], fresh[1])
