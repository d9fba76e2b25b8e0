"""bf16 compute with fp32 master weights (``model.mixed_precision``), and TF32 on CUDA.

The weights, their gradients, AdamW's state and the surgeon's per-domain buffers stay in
``model.dtype`` (float32: the master copy; at lr 1e-6 most updates are below bfloat16's resolution);
only the forward and backward passes compute in bfloat16, as verl trains:

- one process / DDP: ``torch.autocast(device_type, dtype=torch.bfloat16)`` around every forward pass
  (the policy's training and log-prob passes, the KL reference's, generation on the hf backend);
  autocast keeps the parameters' gradients in their own dtype, so they land in float32 buffers;
- FSDP2: ``MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32)`` on every
  ``fully_shard``: each layer's float32 shards are all-gathered as bfloat16, its gradients are
  computed in bfloat16, cast to float32 for the reduce-scatter, and accumulate into the float32
  sharded gradients (the surgeon's buffers); no autocast is needed.

On CUDA, the float32 matmuls that remain (autocast runs a few ops in float32; the SFT warm start)
may use TF32 tensor cores (``mixed_precision.tf32``). The surgeon's Gram matrices and write pass
stay exact float32 all the same: it switches TF32 off for its own matmuls
(:func:`mgs.surgery.surgeon.exact_fp32_matmul`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from mgs.dataclass_config import option
from mgs.errors import ConfigError

__all__ = [
    "MixedPrecisionConfig",
    "autocast",
    "compute_dtype",
    "enable_tf32",
    "fsdp_mixed_precision",
]


@dataclass
class MixedPrecisionConfig:
    """bf16 compute with the weights kept in ``model.dtype`` (``model.mixed_precision``)."""

    enabled: bool = option(
        False,
        help="Compute forward and backward passes in param_dtype while the weights, gradients, "
        "AdamW state and MGS buffers stay in model.dtype (float32 master weights): torch.autocast "
        "for one process / DDP, FSDP2's MixedPrecisionPolicy under distributed.strategy: fsdp2.",
    )
    param_dtype: Literal["bfloat16"] = option(
        "bfloat16",
        help="The compute dtype (FSDP2: the all-gathered parameters). float16 would need loss "
        "scaling, which mgs does not do.",
    )
    reduce_dtype: Literal["float32", "bfloat16"] = option(
        "float32",
        help="FSDP2 only: dtype of the gradient reduce-scatter (float32: exact sums, as verl). "
        "DDP all-reduces the float32 gradients autocast leaves.",
    )
    tf32: bool = option(
        True,
        help="On CUDA, let the float32 matmuls that remain use TF32 tensor cores "
        "(torch.backends.cuda.matmul.fp32_precision = 'tf32'); ignored on CPU.",
    )

    def check_master_dtype(self, dtype: str) -> None:
        """Mixed precision keeps the master weights in ``model.dtype``: it must be float32."""
        if self.enabled and dtype != "float32":
            raise ConfigError(
                f"model.mixed_precision.enabled computes in {self.param_dtype} and keeps float32 "
                f"master weights, but model.dtype is {dtype}; set model.dtype: float32 (or turn "
                "model.mixed_precision.enabled off to train in pure "
                f"{dtype})"
            )


def compute_dtype(cfg: MixedPrecisionConfig) -> Any:
    """The torch dtype forward passes compute in: ``param_dtype`` when enabled, else None."""
    import torch

    return getattr(torch, cfg.param_dtype) if cfg.enabled else None


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast(device.type, dtype)`` when ``dtype`` is a dtype, else a no-op.

    Used around forward passes of one process / DDP; under FSDP2 the caller passes None (the
    MixedPrecisionPolicy casts the parameters instead).
    """
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype)


def fsdp_mixed_precision(cfg: MixedPrecisionConfig) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` of ``cfg`` (None when mixed precision is off)."""
    if not cfg.enabled:
        return None
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(
        param_dtype=getattr(torch, cfg.param_dtype),
        reduce_dtype=getattr(torch, cfg.reduce_dtype),
    )


def enable_tf32(cfg: MixedPrecisionConfig, device: Any) -> bool:
    """Allow TF32 for float32 matmuls and convolutions on CUDA (process-wide); returns whether it
    did. torch 2.9+ has ``fp32_precision``; older versions the ``allow_tf32`` flags."""
    if not (cfg.enabled and cfg.tf32 and device.type == "cuda"):
        return False
    import torch

    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:  # pragma: no cover - torch < 2.9
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return True
