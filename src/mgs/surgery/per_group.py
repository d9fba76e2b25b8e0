"""The surgeon's passes parameter by parameter, for buffers the batched passes do not take.

The batched passes of :class:`~mgs.surgery.surgeon.GradientSurgeon` need every gradient in the
buffers' dtype, float32 or float64. Buffers of another dtype (e.g. bfloat16 buffers for float32
parameters, to halve their memory) take this path: Gram matrices group by group in float32, then
one small matrix product per parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from mgs.surgery import distributed as mgs_dist
from mgs.surgery.layout import Slot

if TYPE_CHECKING:
    from mgs.surgery.surgeon import GradientSurgeon


def slots_of(surgeon: GradientSurgeon, m: int) -> list[Slot]:
    """The parameters of group ``m``."""
    if surgeon._group_slots is None:
        surgeon._group_slots = [[] for _ in surgeon._bounds]
        for s in surgeon._slots:
            surgeon._group_slots[s.group].append(s)
    return surgeon._group_slots[m]


def gram(surgeon: GradientSurgeon) -> torch.Tensor:
    """The Gram stack group by group (buffers in a dtype the batched path does not take)."""
    num_domains, num_groups = len(surgeon.domains), len(surgeon._bounds)
    shape = (num_groups, num_domains, num_domains)
    sharded = torch.zeros(shape, dtype=torch.float32, device=surgeon.device)
    replicated = (
        torch.zeros(shape, dtype=torch.float32, device=surgeon.device)
        if surgeon._shard_groups
        else sharded
    )
    # A group holds either sharded or replicated parameters in practice; handle mixtures too.
    for m, (start, end) in enumerate(surgeon._bounds):
        if start == end:
            continue
        kinds = {s.sharded for s in slots_of(surgeon, m)}
        target = sharded if kinds == {True} or not surgeon._shard_groups else None
        if target is not None:
            block = surgeon.buffers[:, start:end]
            block = block if block.dtype == torch.float32 else block.float()
            torch.mm(block, block.t(), out=target[m])
            continue
        for s in slots_of(surgeon, m):  # mixed group: per parameter
            block = surgeon.buffers[:, s.start : s.end].float()
            (sharded if s.sharded else replicated)[m] += block @ block.t()
    for group in surgeon._shard_groups:
        dist.all_reduce(sharded, group=group)
    gram = sharded + replicated if replicated is not sharded else sharded
    return gram.double()


def write(surgeon: GradientSurgeon, coef: torch.Tensor) -> None:
    """``param.grad = coef[m] @ buffers[:, slice]``, parameter by parameter."""
    for i, slot in enumerate(surgeon._slots):
        out = surgeon._out[i]
        if out is None:
            local = torch.empty(slot.shape, dtype=slot.param.dtype, device=surgeon.device)
            out = surgeon._out[i] = mgs_dist.wrap_like(slot.param, local)
        local = mgs_dist.local_part(out)
        block = surgeon.buffers[:, slot.start : slot.end]  # [K, n]
        row = coef[slot.group : slot.group + 1]  # [1, K]
        if local.dtype == block.dtype and local.is_contiguous():
            torch.mm(row, block, out=local.view(1, -1))
        else:
            local.copy_((row @ block).view(slot.shape))
        slot.param.grad = out
