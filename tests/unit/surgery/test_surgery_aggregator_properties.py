"""Properties every registered aggregator keeps (torchjd's testing habit), over many random inputs:
finite output on degenerate Gram matrices, vectorisation over groups, permutation equivariance,
the guarantees each method states, and the registry's behaviour."""

from __future__ import annotations

import pytest
import torch

from mgs.errors import ConfigError, UnknownNameError
from mgs.surgery.aggregators import (
    Aggregator,
    AlignedMTL,
    CAGrad,
    available_aggregators,
    get_aggregator,
    random_orders,
    register_aggregator,
)

NEW = [
    "upgrad",
    "dualproj",
    "mgda",
    "cagrad",
    "aligned_mtl",
    "imtl_g",
    "config",
    "gradvac",
    "nash_mtl",
]
ORDER_FREE = ["sum", "mean", "upgrad", "dualproj", "mgda", "cagrad", "aligned_mtl", "imtl_g", "config", "nash_mtl"]  # fmt: skip


def _stack(seed: int, m: int, k: int, n: int = 7, conflicting: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(m, k, n, dtype=torch.float64, generator=gen)
    if conflicting:
        signs = torch.randint(0, 2, (m, k, 1), generator=gen).to(torch.float64) * 2 - 1
        j = 0.5 * j + signs * torch.randn(m, 1, n, dtype=torch.float64, generator=gen)
    return j  # [M, K, N]


def _run(name: str, j: torch.Tensor, active: torch.Tensor, seed: int = 0):
    m, k, _ = j.shape
    orders = random_orders(m, k, torch.Generator().manual_seed(seed))
    return get_aggregator(name)(j @ j.transpose(1, 2), active, orders)


def test_every_method_the_issue_names_is_registered() -> None:
    assert set(NEW) <= set(available_aggregators())


@pytest.mark.parametrize("name", sorted(set(NEW) | {"sum", "mean", "pcgrad"}))
def test_degenerate_groups_give_finite_coefficients(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    groups = torch.stack(
        [
            torch.zeros(3, 5, dtype=torch.float64),  # every gradient zero
            torch.stack([g[0], torch.zeros(5, dtype=torch.float64), g[2]]),  # one zero gradient
            torch.stack([g[0], g[0], g[0]]),  # identical
            torch.stack([g[0], -g[0], 2 * g[0]]),  # collinear, opposite
            1e-20 * g,  # tiny
            1e20 * g,  # huge
        ]
    )
    for active in ([True, True, True], [True, False, True], [False, False, False], [True, False, False]):  # fmt: skip
        act = torch.tensor(active)
        coef, fired = _run(name, groups, act)
        assert coef.shape == (6, 3) and fired.shape == (6, 3) and fired.dtype == torch.bool
        assert torch.isfinite(coef).all(), (name, active)
        assert (coef[:, ~act] == 0).all() and not fired[:, ~act].any()
        assert (coef[0] == 0).all() or name in ("sum", "mean", "pcgrad"), "zero group: zero coefs"
        if name not in ("sum", "mean", "pcgrad"):
            assert coef[1, 1] == 0, "a zero-gradient domain gets coefficient 0"


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("seed", range(4))
def test_groups_are_independent(name: str, seed: int) -> None:
    """M groups at once give each group's coefficients alone (stateful ones from a fresh start)."""
    k = 2 + seed % 3
    j = _stack(seed, 5, k)
    active = torch.ones(k, dtype=torch.bool)
    orders = random_orders(5, k, torch.Generator().manual_seed(seed))
    gram = j @ j.transpose(1, 2)
    together, _ = get_aggregator(name)(gram, active, orders)
    for g in range(5):
        alone, _ = get_aggregator(name)(gram[g : g + 1], active, orders[g : g + 1])
        torch.testing.assert_close(together[g], alone[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ORDER_FREE)
@pytest.mark.parametrize("seed", range(4))
def test_permuting_domains_permutes_coefficients(name: str, seed: int) -> None:
    k = 3 + seed % 2
    j = _stack(seed, 4, k)
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(seed))
    active = torch.ones(k, dtype=torch.bool)
    coef, _ = _run(name, j, active)
    coef_p, _ = _run(name, j[:, perm], active)
    torch.testing.assert_close(coef_p, coef[:, perm], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", ["upgrad", "dualproj", "nash_mtl"])
@pytest.mark.parametrize("seed", range(6))
def test_result_never_conflicts_with_any_domain(name: str, seed: int) -> None:
    """``<g_k, d> >= 0`` for every domain k. UPGrad and DualProj solve the QP on ``G / tr(G) +
    reg_eps I`` (torchjd's regularisation), so their bound is ``-reg_eps tr(G) coef_k``."""
    k = 2 + seed % 3
    j = _stack(seed, 6, k)
    coef, _ = _run(name, j, torch.ones(k, dtype=torch.bool))
    d = torch.einsum("mk,mkn->mn", coef, j)  # [M, N]
    dots = torch.einsum("mkn,mn->mk", j, d)
    trace = j.pow(2).sum((1, 2))[:, None]
    slack = 0.0 if name == "nash_mtl" else 1e-4 * trace * coef
    bound = slack + 1e-9 * j.norm(dim=-1) * d.norm(dim=-1, keepdim=True)
    assert (dots >= -bound).all(), f"{name} conflicts with a domain: {dots.min()}"


@pytest.mark.parametrize("name", ["imtl_g", "config"])
@pytest.mark.parametrize("seed", range(4))
def test_equal_projections_on_the_unit_gradients(name: str, seed: int) -> None:
    """IMTL-G and ConFIG: the result has the same component along every unit domain gradient."""
    k = 2 + seed % 3
    j = _stack(seed, 3, k, n=9)
    coef, _ = _run(name, j, torch.ones(k, dtype=torch.bool))
    d = torch.einsum("mk,mkn->mn", coef, j)
    along = torch.einsum("mkn,mn->mk", j / j.norm(dim=-1, keepdim=True), d)
    torch.testing.assert_close(along, along[:, :1].expand_as(along), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["pcgrad", "upgrad", "dualproj", "gradvac"])
def test_fired_means_modified(name: str) -> None:
    """Projection methods: non-conflicting gradients are left alone; conflicting ones are not."""
    gen = torch.Generator().manual_seed(3)
    agreeing = torch.rand(4, 3, 6, dtype=torch.float64, generator=gen)  # all dot products > 0
    _, fired = _run(name, agreeing, torch.ones(3, dtype=torch.bool))
    assert not fired.any()
    if name == "gradvac":
        return  # its first step only aims for cosine >= 0, as PCGrad; covered by the oracle test
    conflicting = torch.tensor([[[1.0, 0.0], [-3.0, 0.5]]], dtype=torch.float64)  # mean too
    _, fired = _run(name, conflicting, torch.ones(2, dtype=torch.bool))
    assert fired.any()


def test_sum_and_upgrad_agree_without_conflict() -> None:
    """With no conflict the dual cone contains every gradient: UPGrad is the mean."""
    gen = torch.Generator().manual_seed(4)
    j = torch.rand(5, 3, 6, dtype=torch.float64, generator=gen)
    active = torch.ones(3, dtype=torch.bool)
    up, _ = _run("upgrad", j, active)
    mean, _ = _run("mean", j, active)
    torch.testing.assert_close(up, mean, rtol=1e-9, atol=1e-12)


def test_registry_gives_fresh_instances_of_classes_and_functions_as_they_are() -> None:
    a, b = get_aggregator("gradvac"), get_aggregator("gradvac")
    assert isinstance(a, Aggregator) and a is not b
    assert get_aggregator("imtl_g") is get_aggregator("imtl_g")
    assert isinstance(get_aggregator(CAGrad), CAGrad)
    custom = CAGrad(c=0.1)
    assert get_aggregator(custom) is custom

    @register_aggregator("half_mean_test")
    class HalfMean(Aggregator):
        def __call__(self, gram, active, orders):
            coef = active.to(gram.dtype).expand(gram.shape[0], -1) / 2
            return coef, torch.zeros(coef.shape, dtype=torch.bool)

    assert isinstance(get_aggregator("half_mean_test"), HalfMean)
    with pytest.raises(TypeError, match="derive from Aggregator"):
        register_aggregator("bad_test")(int)


def test_unknown_name_and_bad_parameters_give_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match="upgrad"):
        get_aggregator("up-grad")
    with pytest.raises(ConfigError, match="scale_mode 'max' is unknown; write one of"):
        AlignedMTL(scale_mode="max")
