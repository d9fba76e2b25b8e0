"""Data parallelism for ``mgs train`` under ``torchrun``: DDP or FSDP2 on torch.distributed.

``torchrun --nproc_per_node N -m mgs train ...`` starts N ranks; each takes its share of every
batch's prompts (the same domains on every rank, each domain spread evenly), and the updater runs
a *domain-synchronous* schedule: every rank back-propagates the same domain at the same micro-step,
with the same number of micro-batches per domain (a rank with fewer prompts of a domain pads with
copies whose loss weight is zero), so DDP's all-reduce / FSDP2's reduce-scatter never mixes one
rank's math gradient with another's chat gradient (docs/method.md, the domain-synchronous
schedule).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from mgs.dataclass_config import option
from mgs.errors import ConfigError, MgsError

T = TypeVar("T")


@dataclass
class DistributedConfig:
    """How ranks share the work when launched with torchrun."""

    strategy: Literal["auto", "ddp", "fsdp2"] = option(
        "auto",
        help="auto: DDP when launched with more than one rank; ddp; fsdp2 (fully_shard each "
        "decoder layer and the root: parameters, gradients and optimizer state sharded).",
    )
    backend: Literal["auto", "nccl", "gloo"] = option(
        "auto", help="Process-group backend; auto: nccl on CUDA, gloo on CPU."
    )


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(cfg: DistributedConfig, device: torch.device) -> DistContext:
    """Join the process group torchrun set up (a no-op for a single process)."""
    world = launched_world_size()
    if world <= 1:
        if cfg.strategy == "fsdp2":
            raise ConfigError(
                "distributed.strategy: fsdp2 needs several ranks; launch with "
                "`torchrun --nproc_per_node N -m mgs train ...`"
            )
        return DistContext()
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"model.device {str(device)!r} puts every rank on one GPU; write model.device=auto "
                "or cuda: under torchrun each rank takes the GPU of its LOCAL_RANK"
            )
        # Before anything touches CUDA: "cuda" then means this rank's GPU everywhere (NCCL, the
        # model, the rollout engine), not GPU 0 for every rank.
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    strategy = "ddp" if cfg.strategy == "auto" else cfg.strategy
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, strategy)


@contextlib.contextmanager
def distributed_session(cfg: DistributedConfig, device: torch.device) -> Iterator[DistContext]:
    """:func:`init_distributed` for the length of a run, then leave the process group.

    A rank that exits with its process group alive can die in the interpreter's teardown
    (SIGABRT, "terminate called without an active exception"): gloo's worker threads still hold
    finished work whose tensors need the GIL that finalisation is taking away (pytorch/pytorch
    #179291, #190489). So the group is destroyed here, while Python is fully alive: after a
    barrier on success (no rank tears down while another still talks to it), at once on an error
    (the other ranks may be gone; torchrun stops them). A group that existed before the call
    (a user's own script) is left alone.
    """
    joined = launched_world_size() > 1 and not dist.is_initialized()
    ctx = init_distributed(cfg, device)
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        if joined and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def wrap_policy(policy: nn.Module, ctx: DistContext, mp_policy: Any = None) -> nn.Module:
    """The module the training forward/backward runs through (the policy itself for FSDP2).

    Under FSDP2 the trainer's policy comes already sharded (``modeling.shard_from_rank0``); a
    full one is sharded here (with ``mp_policy``: bf16 compute, :mod:`mgs.train.precision`).
    """
    if not ctx.enabled:
        return policy
    if ctx.strategy == "ddp":
        device_ids = [ctx.local_rank] if next(policy.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(policy, device_ids=device_ids)
    if fsdp_root(policy) is None:
        shard_module(policy, mp_policy)
    return policy


def _shard_target(model: nn.Module) -> nn.Module:
    """The module whose decoder layers and root get ``fully_shard``: the model, or a LoRA policy's
    base model (peft calls it, hooks included, both in forward and in ``generate``)."""
    from mgs.models.lora import peft_model_of

    peft_model = peft_model_of(model)
    return model if peft_model is None else peft_model.get_base_model()


def shard_module(model: nn.Module, mp_policy: Any = None) -> nn.Module:
    """``fully_shard`` each decoder layer, then the root (embeddings, final norm, LM head).

    One all-gather per layer in forward and backward, so only one layer is ever unsharded; works
    on a module on ``meta`` too (then ``to_empty`` allocates just this rank's shards). A LoRA
    policy's base model is sharded (its adapters with the layers that hold them). ``mp_policy``:
    FSDP2's ``MixedPrecisionPolicy`` on every unit (None: compute in the parameters' dtype).
    """
    from torch.distributed.fsdp import fully_shard

    kwargs = {} if mp_policy is None else {"mp_policy": mp_policy}
    target = _shard_target(model)
    for layer in _decoder_layers(target):
        fully_shard(layer, **kwargs)
    fully_shard(target, **kwargs)
    return model


def fsdp_root(model: nn.Module) -> Any:
    """The FSDP2 root of a sharded policy (itself, or a LoRA policy's base model), else None."""
    from torch.distributed.fsdp import FSDPModule

    target = _shard_target(model)
    return target if isinstance(target, FSDPModule) else None


def _decoder_layers(policy: nn.Module) -> list[nn.Module]:
    for module in policy.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return list(module)
    raise ConfigError(
        "distributed.strategy: fsdp2 found no ModuleList of decoder layers in the model to shard"
    )


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce when distributed (no-op otherwise); returns the tensor."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def gather_objects(obj: object) -> list[object]:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out: list[object] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def decided_by_main(ctx: DistContext, decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only (it may touch files); every rank gets its result, or
    raises its :class:`~mgs.errors.MgsError` as one :class:`ConfigError` with the same message,
    so that no rank waits at a collective for a rank that stopped."""
    result, error = None, None
    if ctx.is_main:
        try:
            result = decide()
        except MgsError as exc:
            error = str(exc)
    result, error = gather_objects((result, error))[0]
    if error is not None:
        raise ConfigError(error)
    return result


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
