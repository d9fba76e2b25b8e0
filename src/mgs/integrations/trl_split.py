"""Split one TRL micro-batch by domain: the rows of each domain, and its share of the loss.

A TRL micro-batch (what ``GRPOTrainer._prepare_inputs`` hands to ``compute_loss``) is a dict of
per-row tensors ``[B, ...]`` and lists of length ``B``, plus 0-dim tensors that hold for the
whole batch (``num_items_in_batch``). Taking rows keeps every per-row value and shares the rest,
so TRL's own ``_compute_loss`` runs unchanged on a domain's rows. Pure functions, no TRL import.
"""

from __future__ import annotations

from typing import Any

import torch

from mgs.errors import ConfigError

# The row -> domain index tensor the trainer adds to TRL's generation batch.
DOMAIN_KEY = "mgs_domain"


def batch_rows(inputs: dict[str, Any]) -> int:
    """Number of rows ``B`` of a micro-batch (its completions)."""
    return int(inputs["completion_ids"].shape[0])


def select_rows(inputs: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    """The micro-batch restricted to rows ``idx`` (a 1-D index tensor on the batch's device).

    Tensors with ``B`` rows and lists of length ``B`` are indexed; 0-dim tensors and None are
    shared. Anything else (multimodal tensors indexed by image, not by row) is refused.
    """
    rows = batch_rows(inputs)
    picked: list[int] | None = None
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if key == DOMAIN_KEY:
            continue
        if value is None or (isinstance(value, torch.Tensor) and value.dim() == 0):
            out[key] = value
        elif isinstance(value, torch.Tensor) and value.shape[0] == rows:
            out[key] = value.index_select(0, idx.to(value.device))
        elif isinstance(value, list) and len(value) == rows:
            picked = idx.tolist() if picked is None else picked
            out[key] = [value[i] for i in picked]
        else:
            raise ConfigError(
                f"MGSGRPOTrainer cannot split the micro-batch entry {key!r} by row (it is not one "
                "value per completion, e.g. image tensors); it supports text-only models"
            )
    return out


def domain_rows(inputs: dict[str, Any], idx: torch.Tensor, size: int) -> dict[str, Any]:
    """Rows ``idx`` of the micro-batch followed by ``size - len(idx)`` padding rows.

    A padding row is a copy of row 0 with its loss mask and advantage zeroed: its loss, gradient
    and metrics are all zero. Under DDP every rank runs each domain's rows with the same ``size``
    (the largest count over the ranks), so that every rank takes part in the same all-reduces and
    TRL's metric gathers (which need equal shapes on all ranks) in the same order.
    """
    real = idx.numel()
    if size < real:
        raise ValueError(f"cannot fit {real} rows into {size}")
    if size == real:
        return select_rows(inputs, idx)
    full = torch.cat([idx, idx.new_zeros(size - real)])
    rows = select_rows(inputs, full)
    keep = torch.arange(size, device=full.device) < real  # [size]
    for key in ("completion_mask", "tool_mask"):
        if rows.get(key) is not None:
            rows[key] = rows[key] * keep.to(rows[key].device)[:, None]
    advantages = rows["advantages"]  # [size] or [size, T]
    keep_adv = keep.to(advantages.device)
    rows["advantages"] = advantages * (keep_adv if advantages.dim() == 1 else keep_adv[:, None])
    return rows


def loss_mask(inputs: dict[str, Any]) -> torch.Tensor:
    """``[B, T]`` tokens that count in TRL's loss (completion mask times tool mask)."""
    mask = inputs["completion_mask"]
    tool = inputs.get("tool_mask")
    return mask if tool is None else mask * tool


def loss_share(
    normaliser: str, inputs: dict[str, Any], idx: torch.Tensor, size: int | None = None
) -> torch.Tensor | float:
    """Factor turning TRL's loss on rows ``idx`` (plus padding up to ``size`` rows) into their
    exact part of the micro-batch loss.

    ``normaliser`` is :data:`mgs.integrations.trl_config.LOSS_NORMALISERS`' entry for the loss
    type. "rows": TRL divided by the ``size`` rows it saw, the micro-batch divides by its ``B``;
    "tokens": padding rows have no loss token. TRL clamps its normalisers at 1, so the shares of
    rows with no loss token are irrelevant (their part is 0) and stay finite.
    """
    if normaliser == "global":
        return 1.0
    if normaliser == "rows":
        return (idx.numel() if size is None else size) / batch_rows(inputs)
    if normaliser == "tokens":
        mask = loss_mask(inputs)
        part = mask.index_select(0, idx.to(mask.device)).sum().float().clamp(min=1.0)
        return part / mask.sum().float().clamp(min=1.0)
    raise ValueError(f"unknown loss normaliser {normaliser!r}")
