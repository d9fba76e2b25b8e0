"""bf16 mixed precision on one process (``model.mixed_precision``): the forward passes compute in
bfloat16 under autocast while the weights, their gradients and the surgeon's buffers stay float32;
off by default (the tiny default's numbers unchanged); TF32 only on CUDA, never in the surgery.
FSDP2 against one process: tests/integration/test_precision_distributed.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mgs.errors import ConfigError
from mgs.surgery.surgeon import exact_fp32_matmul
from mgs.train.builder import build_trainer, forward_dtype
from mgs.train.config import load_config
from mgs.train.distributed import DistContext
from mgs.train.precision import MixedPrecisionConfig, enable_tf32, fsdp_mixed_precision
from mgs.train.trainer import seed_everything

ON = {"model.mixed_precision.enabled": "true"}


def _trainer(overrides, **extra):
    cfg = load_config(None, overrides(**extra))
    seed_everything(cfg.seed)
    return build_trainer(cfg)


def _record_dtypes(model) -> tuple[list[str], object]:
    """The output dtype of a decoder projection at every forward (and the hook's handle)."""
    seen: list[str] = []
    layer = next(m for n, m in model.named_modules() if n.endswith("layers.0.mlp.down_proj"))
    handle = layer.register_forward_hook(lambda mod, args, out: seen.append(str(out.dtype)))
    return seen, handle


def test_forward_passes_compute_in_bf16_with_float32_weights_and_gradients(overrides) -> None:
    trainer = _trainer(overrides, strategy__name="mgs", grpo__loss__kl_coef=0.1, **ON)
    assert trainer.updater.compute_dtype == torch.bfloat16
    assert trainer.backend.compute_dtype == torch.bfloat16  # generation under autocast too
    seen, handle = _record_dtypes(trainer.policy)
    reference_seen, reference_handle = _record_dtypes(trainer.updater.reference)
    grads = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, *_: grads.extend(p.grad.dtype for g in opt.param_groups for p in g["params"])
    )
    out = trainer.step(0)
    handle.remove()
    reference_handle.remove()
    trainer.close()
    assert seen and set(seen) == {"torch.bfloat16"}  # rollouts and the training forward
    assert reference_seen and set(reference_seen) == {"torch.bfloat16"}  # the KL reference's
    assert {p.dtype for p in trainer.policy.parameters()} == {torch.float32}  # master weights
    assert set(grads) == {torch.float32}
    assert trainer.surgeon.buffers.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(v)) for v in out.metrics.values())


def test_off_by_default_and_nothing_changes(overrides) -> None:
    cfg = load_config(None, overrides())
    assert not cfg.model.mixed_precision.enabled and cfg.model.lora is None
    assert not load_config(None, None).model.mixed_precision.enabled  # the tiny default
    trainer = _trainer(overrides)
    seen, handle = _record_dtypes(trainer.policy)
    trainer.step(0)
    handle.remove()
    trainer.close()
    assert trainer.updater.compute_dtype is None and set(seen) == {"torch.float32"}


def test_fsdp2_casts_through_its_policy_not_autocast(overrides) -> None:
    cfg = load_config(None, overrides(**ON))
    assert forward_dtype(cfg, DistContext(0, 2, 0, "fsdp2")) is None
    assert forward_dtype(cfg, DistContext(0, 2, 0, "ddp")) == torch.bfloat16
    assert forward_dtype(load_config(None, overrides()), DistContext()) is None
    policy = fsdp_mixed_precision(cfg.model.mixed_precision)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert fsdp_mixed_precision(MixedPrecisionConfig()) is None


def test_master_weights_must_be_float32(overrides) -> None:
    with pytest.raises(ConfigError, match=r"model.dtype is bfloat16; set model.dtype: float32"):
        load_config(None, overrides(**ON, model__dtype="bfloat16"))


@pytest.fixture
def tf32_flags():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    yield matmul, conv
    matmul.fp32_precision, conv.fp32_precision = saved


def test_tf32_on_cuda_only_and_never_inside_the_surgery(tf32_flags) -> None:
    matmul, conv = tf32_flags
    cfg = MixedPrecisionConfig(enabled=True)
    assert not enable_tf32(cfg, torch.device("cpu"))
    assert matmul.fp32_precision != "tf32"
    cuda = SimpleNamespace(type="cuda")  # the flags are process-wide; no GPU needed to set them
    assert not enable_tf32(MixedPrecisionConfig(enabled=True, tf32=False), cuda)
    assert not enable_tf32(MixedPrecisionConfig(enabled=False), cuda)
    assert enable_tf32(cfg, cuda)
    assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    with exact_fp32_matmul(cuda):  # the surgeon's Gram matrices and write pass
        assert matmul.fp32_precision == "ieee"
    assert matmul.fp32_precision == "tf32"
    with exact_fp32_matmul(torch.device("cpu")):
        assert matmul.fp32_precision == "tf32"  # nothing to do off CUDA
