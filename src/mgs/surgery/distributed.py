"""The surgeon's view of distributed training: FSDP2 shards (DTensor) and rank agreement.

Under FSDP2 every rank holds ``Shard(0)`` pieces of each parameter and of its gradient, so a dot
product of local pieces is only a partial sum. The surgeon computes local Gram stacks and sums them
over the shard groups with one ``all_reduce`` of ``M*K*K`` floats per step; every rank then derives
identical weights. Under DDP each rank already holds the full, averaged gradient, so no collective
is needed for the surgery itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

try:  # torch >= 2.5
    from torch.distributed.tensor import DTensor, Shard
except ImportError:  # pragma: no cover - older torch
    from torch.distributed._tensor import DTensor, Shard  # type: ignore[no-redef]


def is_dtensor(t: torch.Tensor | None) -> bool:
    return isinstance(t, DTensor)


def local_part(t: torch.Tensor) -> torch.Tensor:
    """The rank-local tensor behind ``t`` (itself for a plain tensor); no copy."""
    return t._local_tensor if isinstance(t, DTensor) else t


def is_sharded(param: torch.Tensor) -> bool:
    """True for a DTensor parameter with a ``Shard`` placement (its local dot products are partial)."""
    return isinstance(param, DTensor) and any(isinstance(p, Shard) for p in param.placements)


def shard_groups(param: torch.Tensor) -> list[dist.ProcessGroup]:
    """Process groups over which ``param``'s local pieces must be summed (its Shard mesh dims)."""
    if not is_sharded(param):
        return []
    mesh = param.device_mesh
    return [mesh.get_group(dim) for dim, p in enumerate(param.placements) if isinstance(p, Shard)]


def wrap_like(param: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """A gradient for ``param`` whose storage is ``local`` (a DTensor with the param's layout)."""
    if not isinstance(param, DTensor):
        return local
    return DTensor.from_local(
        local,
        device_mesh=param.device_mesh,
        placements=param.placements,
        run_check=False,
        shape=param.shape,
        stride=param.stride(),
    )


def reshard_fsdp(model: torch.nn.Module) -> None:
    """Register every FSDP2 unit's *sharded* parameters before the surgeon lists them.

    FSDP2 keeps the root unit's parameters unsharded after a forward that had no backward (e.g.
    an evaluation under ``torch.no_grad()``); a surgeon built then would lay out those plain,
    soon-freed tensors instead of the sharded ``DTensor`` parameters the optimizer steps.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def check_rank_agreement(signature: torch.Tensor, what: str) -> None:
    """Raise if ``signature`` (a small float tensor) differs between ranks.

    Used to catch ranks that ran different domains, or the same domains in a different order, in
    one step: their "domain" buffers would silently hold a mixture of domains after DDP/FSDP
    reduced them. One tiny ``all_reduce`` (max of ``[s, -s]``) and one host sync.
    """
    if world_size() == 1:
        return
    both = torch.cat([signature, -signature])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    hi, neg_lo = both.chunk(2)
    if not torch.equal(hi, -neg_lo):
        raise RuntimeError(
            f"ranks disagree on {what} in this step (rank {dist.get_rank()} has "
            f"{signature.tolist()}, the max over ranks is {hi.tolist()}): every rank must run "
            "the same domains, in the same order, with the same number of backward passes "
            "(pad with zero-weight micro-batches). The mgs trainer's domain-synchronous schedule "
            "does this; a custom loop must do it too."
        )
