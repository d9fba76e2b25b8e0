"""Modular Gradient Surgery: per-domain gradients combined group by group from Gram matrices.

Usable on its own in any PyTorch training loop::

    surgeon = GradientSurgeon(model, domains=["math", "chat"], aggregator="pcgrad", granularity="module")
    surgeon.zero_grad()
    with surgeon.domain("math"):
        loss_math.backward()
    with surgeon.domain("chat"):
        loss_chat.backward()
    stats = surgeon.apply(max_norm=1.0)
    optimizer.step()
"""

from mgs.surgery.aggregators import (
    MGDA,
    Aggregator,
    AlignedMTL,
    CAGrad,
    DualProj,
    GradVac,
    NashMTL,
    UPGrad,
    available_aggregators,
    get_aggregator,
    register_aggregator,
)
from mgs.surgery.groups import GRANULARITIES, Group, partition
from mgs.surgery.stats import SurgeryStats
from mgs.surgery.surgeon import GradientSurgeon

__all__ = [
    "GRANULARITIES",
    "MGDA",
    "Aggregator",
    "AlignedMTL",
    "CAGrad",
    "DualProj",
    "GradVac",
    "GradientSurgeon",
    "Group",
    "NashMTL",
    "SurgeryStats",
    "UPGrad",
    "available_aggregators",
    "get_aggregator",
    "partition",
    "register_aggregator",
]
