"""Loss aggregation with a mini-batch-wide normaliser: values, and exact micro-batch additivity."""

from __future__ import annotations

import pytest
import torch

from mgs.errors import UnknownNameError
from mgs.rl.aggregation import AGGREGATION_MODES, aggregate, loss_normalizer

X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 0.0], [7.0, 8.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])  # row 2: a zero-weight padding row


def test_hand_worked_values() -> None:
    # masked tokens: row 0 -> 1, 2, 3 (sum 6, 3 tokens), row 1 -> 5 (sum 5, 1 token), row 2 -> none
    assert loss_normalizer(MASK, "token-mean").item() == 4  # 4 response tokens
    assert loss_normalizer(MASK, "seq-mean-token-mean").item() == 2  # the empty row does not count
    assert loss_normalizer(MASK, "seq-mean-token-sum").item() == 2
    # token-mean: (6 + 5) / 4 = 2.75
    assert aggregate(X, MASK, "token-mean", normalizer=4).item() == pytest.approx(2.75)
    # seq-mean-token-mean: (6/3 + 5/1) / 2 = 3.5
    assert aggregate(X, MASK, "seq-mean-token-mean", normalizer=2).item() == pytest.approx(3.5)
    # seq-mean-token-sum: (6 + 5) / 2 = 5.5
    assert aggregate(X, MASK, "seq-mean-token-sum", normalizer=2).item() == pytest.approx(5.5)


def test_with_own_normaliser_equals_plain_masked_means() -> None:
    # On a batch without empty rows, the mini-batch normaliser gives the usual (verl) means.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen)
    mask = (torch.rand(4, 6, generator=gen) < 0.7).long()
    mask[:, 0] = 1
    m = mask.float()
    expect = {
        "token-mean": (x * m).sum() / m.sum(),
        "seq-mean-token-mean": ((x * m).sum(1) / m.sum(1)).mean(),
        "seq-mean-token-sum": (x * m).sum(1).mean(),
    }
    for mode, value in expect.items():
        got = aggregate(x, mask, mode, normalizer=loss_normalizer(mask, mode))
        torch.testing.assert_close(got, value)


@pytest.mark.parametrize("mode", list(AGGREGATION_MODES))
def test_micro_batches_sum_to_the_mini_batch_in_value_and_gradient(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    batch, length = 10, 7
    theta = torch.randn(batch, length, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # [B, T] varied lengths

    def per_token(rows: torch.Tensor) -> torch.Tensor:
        return torch.tanh(theta[rows]) * theta[rows].square()  # any nonlinear function

    everything = torch.arange(batch)
    norm = loss_normalizer(mask, mode)
    whole = aggregate(per_token(everything), mask, mode, normalizer=norm)
    (grad_whole,) = torch.autograd.grad(whole, theta)

    for trial in range(5):  # arbitrary partitions into micro-batches of uneven sizes
        perm = torch.randperm(batch, generator=gen)
        cuts = sorted(torch.randperm(batch - 1, generator=gen)[: 2 + trial % 3].add(1).tolist())
        parts = torch.tensor_split(perm, cuts)
        split = sum(aggregate(per_token(p), mask[p], mode, normalizer=norm) for p in parts)
        (grad_split,) = torch.autograd.grad(split, theta)
        torch.testing.assert_close(split, whole)
        torch.testing.assert_close(grad_split, grad_whole)
        # The control: each micro-batch normalised by its own count does NOT add up.
        local = sum(
            aggregate(per_token(p), mask[p], mode, normalizer=loss_normalizer(mask[p], mode))
            for p in parts
        )
        assert not torch.allclose(local, whole)


def test_zero_weight_micro_batch_contributes_nothing() -> None:
    x = torch.randn(2, 3)
    assert aggregate(x, torch.zeros(2, 3), "seq-mean-token-mean", normalizer=5).item() == 0.0


def test_errors() -> None:
    with pytest.raises(
        UnknownNameError, match="valid names: seq-mean-token-mean, seq-mean-token-sum, token-mean"
    ):
        aggregate(X, MASK, "token-sum", normalizer=1)
    with pytest.raises(UnknownNameError):
        loss_normalizer(MASK, "mean")
    with pytest.raises(ValueError, match="same shape"):
        aggregate(X, MASK[:, :2], "token-mean", normalizer=1)
    with pytest.raises(ValueError, match="positive"):
        aggregate(X, MASK, "token-mean", normalizer=0)
