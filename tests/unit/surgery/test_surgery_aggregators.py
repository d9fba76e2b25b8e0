"""Property tests of the Gram-matrix aggregators over many random inputs (torchjd style)."""

from __future__ import annotations

import pytest
import torch
from torchjd.aggregation import PCGrad

from mgs.errors import UnknownNameError
from mgs.surgery.aggregators import (
    get_aggregator,
    pcgrad_projections,
    random_orders,
    register_aggregator,
)


def _gram(grads: torch.Tensor) -> torch.Tensor:
    return (grads @ grads.T)[None].double()  # [1, K, K]


def _orders(k: int, seed: int = 0) -> torch.Tensor:
    return random_orders(1, k, torch.Generator().manual_seed(seed))


def _reference_pcgrad(grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Textbook PCGrad on explicit vectors (Yu et al. 2020, Algorithm 1), given the orders."""
    out = torch.zeros_like(grads[0])
    for i in range(grads.shape[0]):
        g = grads[i].clone()
        for j in orders[0, i].tolist():
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        out += g
    return out


@pytest.mark.parametrize("seed", range(40))
def test_pcgrad_matches_textbook_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    k = 2 + seed % 4
    grads = torch.randn(k, 50, generator=gen, dtype=torch.float64)
    orders = _orders(k, seed)
    coef, _ = get_aggregator("pcgrad")(_gram(grads), torch.ones(k, dtype=torch.bool), orders)
    torch.testing.assert_close(coef[0] @ grads, _reference_pcgrad(grads, orders))


@pytest.mark.parametrize("seed", range(30))
def test_pcgrad_two_domains_matches_torchjd(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    grads = torch.randn(2, 40, generator=gen, dtype=torch.float64)
    coef, _ = get_aggregator("pcgrad")(_gram(grads), torch.ones(2, dtype=torch.bool), _orders(2))
    torch.testing.assert_close(coef[0] @ grads, PCGrad()(grads))


@pytest.mark.parametrize("seed", range(30))
def test_pcgrad_on_non_conflicting_gradients_is_the_sum(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    k = 2 + seed % 3
    grads = torch.rand(k, 30, generator=gen, dtype=torch.float64)  # all positive: pairwise dot > 0
    coef, fired = get_aggregator("pcgrad")(
        _gram(grads), torch.ones(k, dtype=torch.bool), _orders(k, seed)
    )
    torch.testing.assert_close(coef, torch.ones(1, k, dtype=torch.float64))
    assert not fired.any()


@pytest.mark.parametrize("seed", range(30))
def test_two_conflicting_domains_are_projected_orthogonal(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    g1 = torch.randn(25, generator=gen, dtype=torch.float64)
    g2 = -g1 + 0.3 * torch.randn(25, generator=gen, dtype=torch.float64)  # conflicting
    grads = torch.stack([g1, g2])
    assert g1 @ g2 < 0
    weights, fired = pcgrad_projections(_gram(grads), torch.ones(2, dtype=torch.bool), _orders(2))
    projected = weights[0] @ grads  # [2, n]: g1', g2'
    assert abs(float(projected[0] @ g2)) < 1e-9
    assert abs(float(projected[1] @ g1)) < 1e-9
    assert fired.all()


def test_hand_worked_pcgrad_in_two_dimensions() -> None:
    # g1 = (1, 0), g2 = (-1, 1): <g1, g2> = -1 < 0.
    # g1' = g1 - (-1 / 2) g2 = (0.5, 0.5);  g2' = g2 - (-1 / 1) g1 = (0, 1);  sum = (0.5, 1.5).
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    coef, _ = get_aggregator("pcgrad")(_gram(grads), torch.ones(2, dtype=torch.bool), _orders(2))
    torch.testing.assert_close(coef[0] @ grads, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_inactive_domain_is_neither_summed_nor_projected_against() -> None:
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -5.0]], dtype=torch.float64)
    active = torch.tensor([True, True, False])
    for name in ("sum", "mean", "pcgrad"):
        coef, fired = get_aggregator(name)(_gram(grads), active, _orders(3))
        assert coef[0, 2] == 0, name
        assert not fired[0, 2]
    coef, _ = get_aggregator("pcgrad")(_gram(grads), active, _orders(3))
    torch.testing.assert_close(coef[0] @ grads, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_zero_gradient_domain_causes_no_division_by_zero() -> None:
    grads = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    coef, _ = get_aggregator("pcgrad")(_gram(grads), torch.ones(2, dtype=torch.bool), _orders(2))
    assert torch.isfinite(coef).all()
    torch.testing.assert_close(coef[0] @ grads, grads[0])


@pytest.mark.parametrize("seed", range(10))
def test_pcgrad_is_vectorised_over_groups(seed: int) -> None:
    """Many groups at once give the same coefficients as each group alone."""
    gen = torch.Generator().manual_seed(seed)
    m, k = 7, 4
    grads = torch.randn(m, k, 12, generator=gen, dtype=torch.float64)
    gram = grads @ grads.transpose(1, 2)
    orders = random_orders(m, k, torch.Generator().manual_seed(seed))
    active = torch.ones(k, dtype=torch.bool)
    coef, _ = get_aggregator("pcgrad")(gram, active, orders)
    for g in range(m):
        alone, _ = get_aggregator("pcgrad")(gram[g : g + 1], active, orders[g : g + 1])
        torch.testing.assert_close(coef[g], alone[0])


def test_random_orders_are_permutations_of_the_other_domains() -> None:
    orders = random_orders(50, 4, torch.Generator().manual_seed(3))
    assert orders.shape == (50, 4, 3)
    for i in range(4):
        assert (orders[:, i] != i).all()
        assert torch.equal(
            orders[:, i].sort(-1).values[0], torch.tensor([j for j in range(4) if j != i])
        )


def test_mean_and_sum() -> None:
    grads = torch.randn(3, 5, dtype=torch.float64)
    active = torch.ones(3, dtype=torch.bool)
    s, _ = get_aggregator("sum")(_gram(grads), active, _orders(3))
    m, _ = get_aggregator("mean")(_gram(grads), active, _orders(3))
    torch.testing.assert_close(s, torch.ones(1, 3, dtype=torch.float64))
    torch.testing.assert_close(m, torch.full((1, 3), 1 / 3, dtype=torch.float64))


def test_unknown_aggregator_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="pcgrad"):
        get_aggregator("pc-grad")


def test_registered_aggregator_is_found() -> None:
    @register_aggregator("first_only_test")
    def first_only(gram, active, orders):
        coef = torch.zeros(gram.shape[:2], dtype=gram.dtype)
        coef[:, 0] = 1
        return coef, torch.zeros(gram.shape[:2], dtype=torch.bool)

    assert get_aggregator("first_only_test") is first_only
