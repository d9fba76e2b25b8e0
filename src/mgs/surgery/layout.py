"""Where every trainable parameter lives in the surgeon's flat per-domain buffers.

Each group's parameters are contiguous, so a group's gradients are one slice ``[start, end)`` of
every domain's buffer; each parameter's slice starts at a multiple of a block size (zero padding in
between), so the batched passes can view the buffers as blocks that never straddle two parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from mgs.surgery import distributed as mgs_dist
from mgs.surgery.groups import Group

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """One parameter's place in the flat buffers."""

    name: str
    param: nn.Parameter
    group: int
    start: int
    end: int
    shape: torch.Size  # local shape (the shard under FSDP2)
    sharded: bool


def buffer_layout(groups: list[Group], params: dict[str, nn.Parameter], chunk: int = 1):
    """``(slots, bounds)``: each parameter's slice of the flat buffers (starting at a multiple of
    ``chunk``), group by group, and each group's ``[start, end)``."""
    slots: list[Slot] = []
    bounds: list[tuple[int, int]] = []
    offset = 0
    for g, group in enumerate(groups):
        start = offset
        for name in group.param_names:
            p = params[name]
            local = mgs_dist.local_part(p)
            slots.append(
                Slot(
                    name,
                    p,
                    g,
                    offset,
                    offset + local.numel(),
                    local.shape,
                    mgs_dist.is_sharded(p),
                )
            )
            offset += -(-local.numel() // chunk) * chunk
        bounds.append((start, offset))
    sharded = {s.sharded for s in slots}
    if len(sharded) > 1 and any(s.sharded for s in slots):
        log.debug(
            "mixing sharded and replicated parameters; their Gram parts are reduced separately"
        )
    return slots, bounds
