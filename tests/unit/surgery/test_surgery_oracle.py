"""Every Gram aggregator against torchjd 0.18's implementation of the same method (the oracle).

torchjd aggregates a Jacobian ``J [K, N]``; ours maps ``Gram = J J^T`` to coefficients, so the
comparison is ``coef @ J`` against torchjd's vector (coefficients are not unique when J is
rank-deficient). Inactive domains: torchjd sees ``J[active]`` only. Each method runs with the
parameters that make it torchjd's (``norm_eps=1e-4``: torchjd's absolute zero-trace threshold) on
every case, and with mgs's defaults on every case whose Gram trace is >= 1e-4 (where the two agree).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from oracle_cases import case_ids, oracle_cases

from mgs.surgery.aggregators import (
    MGDA,
    AlignedMTL,
    CAGrad,
    DualProj,
    UPGrad,
    get_aggregator,
    random_orders,
)

tj = pytest.importorskip("torchjd.aggregation", reason="torchjd (the dev extra) is the oracle")
CASES = oracle_cases()
# Where mgs's defaults and torchjd's agree: torchjd switches UPGrad / DualProj / CAGrad off in a
# group whose Gram trace is below 1e-4, mgs does not (test_tiny_groups_get_the_method_...).
NOT_TINY = [i for i, (_, j, active) in enumerate(CASES) if float(j[active].pow(2).sum()) >= 1e-4]


def _needs(*modules: str) -> None:
    for module in modules:
        pytest.importorskip(module, reason=f"torchjd needs {module} for this method (dev extra)")


def _ours(aggregator, j: torch.Tensor, active: torch.Tensor):
    k = j.shape[0]
    orders = random_orders(1, k, torch.Generator().manual_seed(0))
    coef, fired = aggregator((j @ j.T)[None], active, orders)
    assert coef.shape == (1, k) and fired.shape == (1, k) and fired.dtype == torch.bool
    assert torch.isfinite(coef).all()
    assert (coef[0, ~active] == 0).all() and not fired[0, ~active].any()
    return coef[0] @ j, coef[0]


def _reference(method, j: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's DPP notice
        return method(j[active])


def _assert_same(ours: torch.Tensor, ref: torch.Tensor, j: torch.Tensor, rtol: float) -> None:
    scale = float(j.norm(dim=1).max()) if j.numel() else 1.0
    if ref.norm() <= 1e-7 * scale:  # torchjd's "zero" can be rounding noise (ConFIG's 0/0)
        assert float(ours.norm()) <= 1e-7 * scale
        return
    torch.testing.assert_close(ours, ref, rtol=rtol, atol=rtol * max(scale, 1e-30))


# name -> (ours with torchjd's parameters, torchjd, ours with mgs defaults, torchjd for those,
#          relative tolerance, modules torchjd needs)
METHODS = {
    "upgrad": (
        lambda: UPGrad(norm_eps=1e-4),
        lambda: tj.UPGrad(),
        lambda: get_aggregator("upgrad"),
        lambda: tj.UPGrad(projector=tj_projector(0.0)),
        1e-7,
        ("quadprog", "qpsolvers"),
    ),
    "dualproj": (
        lambda: DualProj(norm_eps=1e-4),
        lambda: tj.DualProj(),
        lambda: get_aggregator("dualproj"),
        lambda: tj.DualProj(projector=tj_projector(0.0)),
        1e-7,
        ("quadprog", "qpsolvers"),
    ),
    "mgda": (MGDA, tj.MGDA, MGDA, tj.MGDA, 1e-9, ()),
    "aligned_mtl": (AlignedMTL, tj.AlignedMTL, AlignedMTL, tj.AlignedMTL, 1e-9, ()),
    "aligned_mtl-median": (
        lambda: AlignedMTL(scale_mode="median"),
        lambda: tj.AlignedMTL(scale_mode="median"),
        lambda: AlignedMTL(scale_mode="median"),
        lambda: tj.AlignedMTL(scale_mode="median"),
        1e-9,
        (),
    ),
    "aligned_mtl-rmse": (
        lambda: AlignedMTL(scale_mode="rmse"),
        lambda: tj.AlignedMTL(scale_mode="rmse"),
        lambda: AlignedMTL(scale_mode="rmse"),
        lambda: tj.AlignedMTL(scale_mode="rmse"),
        1e-9,
        (),
    ),
    "imtl_g": (
        lambda: get_aggregator("imtl_g"),
        tj.IMTLG,
        lambda: get_aggregator("imtl_g"),
        tj.IMTLG,
        1e-9,
        (),
    ),
    "config": (
        lambda: get_aggregator("config"),
        tj.ConFIG,
        lambda: get_aggregator("config"),
        tj.ConFIG,
        1e-9,
        (),
    ),
    # CLARABEL stops at its default tolerances (~1e-8 on the objective, ~1e-4 on the weights);
    # test_surgery_aggregator_solvers.py checks that ours is the exact minimiser.
    "cagrad": (
        lambda: CAGrad(c=0.4, norm_eps=1e-4),
        lambda: tj.CAGrad(c=0.4),
        lambda: get_aggregator("cagrad"),
        lambda: tj.CAGrad(c=0.4),
        3e-3,
        ("cvxpy", "clarabel"),
    ),
}


def tj_projector(norm_eps: float):
    from torchjd.linalg import QuadprogProjector

    return QuadprogProjector(norm_eps=norm_eps)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", range(len(CASES)), ids=case_ids())
def test_matches_torchjd_with_its_parameters(method: str, case: int) -> None:
    ours, reference, _, _, rtol, needs = METHODS[method]
    _needs(*needs)
    _, j, active = CASES[case]
    got, coef = _ours(ours(), j, active)
    _assert_same(got, _reference(reference(), j, active), j[active], rtol)
    zero_rows = active & (j.norm(dim=1) == 0)
    assert (coef[zero_rows] == 0).all(), "a zero-gradient domain gets coefficient 0"


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("case", NOT_TINY, ids=[case_ids()[i] for i in NOT_TINY])
def test_mgs_defaults_match_torchjd_where_the_trace_is_not_tiny(method: str, case: int) -> None:
    _, _, ours, reference, rtol, needs = METHODS[method]
    _needs(*needs)
    _, j, active = CASES[case]
    got, _ = _ours(ours(), j, active)
    _assert_same(got, _reference(reference(), j, active), j[active], rtol)


@pytest.mark.parametrize("method", ["upgrad", "dualproj", "cagrad"])
def test_tiny_groups_get_the_method_not_a_fallback(method: str) -> None:
    """mgs's default: a group with a tiny Gram trace is aggregated as the same group scaled up
    (positive homogeneity), where torchjd's absolute norm_eps = 1e-4 would give the mean (UPGrad,
    DualProj) or zero (CAGrad)."""
    _, torchjd_default, ours, reference, rtol, needs = METHODS[method]
    _needs(*needs)
    _, j, active = next(c for c in CASES if c[0] == "tiny-scale")
    got, _ = _ours(ours(), j, active)
    scaled = _reference(reference(), j * 1e3, active) / 1e3
    _assert_same(got, scaled, j, rtol)
    fallback = _reference(torchjd_default(), j, active)
    assert not torch.allclose(got, fallback, rtol=1e-3, atol=0)


def test_the_cases_cover_what_the_issue_asks() -> None:
    names = case_ids()
    for needed in ("zero-gradient", "identical", "inactive102", "all-zero", "tiny-scale"):
        assert needed in names
    assert {int(c[1].shape[0]) for c in CASES} == {1, 2, 3, 4}
