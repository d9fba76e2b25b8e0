"""Reduce a per-token quantity ``[B, T]`` to the scalar loss, with a normaliser passed in.

Why the normaliser comes from outside: the trainer splits one mini-batch into per-domain
micro-batches and back-propagates each separately (so that the gradient surgeon sees one gradient
per domain). For the per-domain gradients to add up to the ordinary mixed gradient, the per-domain
losses must add up to the mini-batch loss. A mean taken *inside* each micro-batch breaks that (the
mean of means is not the mean); dividing every micro-batch by the same mini-batch-wide count keeps
it exact. Compute the count once per mini-batch with :func:`loss_normalizer` and pass it to every
micro-batch.

Modes (names as in verl's ``loss_agg_mode``):

- ``token-mean``: ``sum(x * mask) / normalizer``; normaliser = response tokens in the mini-batch.
  Every token weighs the same, so long responses weigh more (DAPO, the paper's setting).
- ``seq-mean-token-mean``: ``sum_b [sum_t(x * mask) / n_tokens_b] / normalizer``; normaliser =
  sequences in the mini-batch. Every sequence weighs the same (the original GRPO).
- ``seq-mean-token-sum``: ``sum(x * mask) / normalizer``; normaliser = sequences in the
  mini-batch (a sum over tokens, a mean over sequences).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgs.errors import unknown_name

__all__ = ["AGGREGATION_MODES", "aggregate", "loss_normalizer"]


def _token_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()  # [B, T] -> []


def _seq_token_mean_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n_tokens = mask.sum(dim=-1).clamp(min=1)  # [B]; a row with no token contributes 0
    return ((x * mask).sum(dim=-1) / n_tokens).sum()  # [B] -> []


def _count_tokens(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum()


def _count_sequences(mask: torch.Tensor) -> torch.Tensor:
    # Sequences with at least one response token: all-zero rows (zero-weight padding micro-batches
    # of the domain-synchronous schedule) do not count.
    return (mask.sum(dim=-1) > 0).sum()


# name -> (numerator over a micro-batch, normaliser over the whole mini-batch)
AGGREGATION_MODES: dict[
    str,
    tuple[
        Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        Callable[[torch.Tensor], torch.Tensor],
    ],
] = {
    "token-mean": (_token_sum, _count_tokens),
    "seq-mean-token-mean": (_seq_token_mean_sum, _count_sequences),
    "seq-mean-token-sum": (_token_sum, _count_sequences),
}


def _lookup(mode: str):
    if mode not in AGGREGATION_MODES:
        raise unknown_name("loss aggregation mode", mode, list(AGGREGATION_MODES))
    return AGGREGATION_MODES[mode]


def loss_normalizer(mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The normaliser of ``mode`` for a whole mini-batch ``mask [B, T]`` (0-d float tensor).

    ``token-mean``: number of response tokens; the ``seq-mean-*`` modes: number of sequences with
    at least one response token. Under data parallelism all-reduce (sum) it across ranks first.
    """
    _, count = _lookup(mode)
    return count(mask).to(torch.float32)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    normalizer: float | torch.Tensor,
) -> torch.Tensor:
    """``per_token [B, T]`` masked by ``mask [B, T]`` -> scalar, divided by ``normalizer``.

    ``normalizer`` is the mini-batch-wide count from :func:`loss_normalizer` (not this micro-batch's),
    so that summing the results over micro-batches gives the mini-batch value exactly. A Python
    number must be positive; a tensor is used as is (checking it would cost a device sync).
    """
    numerator, _ = _lookup(mode)
    if per_token.shape != mask.shape:
        raise ValueError(
            f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must have the same shape"
        )
    if not isinstance(normalizer, torch.Tensor) and not normalizer > 0:
        raise ValueError(f"normalizer must be positive, got {normalizer!r}")
    if not per_token.is_floating_point():  # e.g. boolean clip indicators
        per_token = per_token.float()
    mask = mask.to(per_token.dtype)  # [B, T]
    return numerator(per_token, mask) / normalizer
