"""Load the policy (built-in tiny or a Hugging Face model) and pick the device.

One process or DDP: every rank loads the whole model onto its device (:func:`load_policy`).

FSDP2 (:func:`load_policy_for` + :func:`shard_from_rank0`): a full copy per GPU does not fit at
paper scale (a 7B model in float32 is 30 GB, 60 GB with the KL reference), so only rank 0 reads
the weights, into host memory; every rank builds the same architecture on the ``meta`` device (no
memory), shards it with ``fully_shard`` (each decoder layer, then the root), allocates only its own
shards on its device, and receives its slices of rank 0's weights by broadcast. The frozen KL
reference is built the same way, so each rank holds 1/world of the policy and 1/world of the
reference. A LoRA policy (``model.lora``) is rebuilt the same way, adapters included (the
:class:`ModelSpec` carries peft's config); its KL reference is the policy itself with the adapters
disabled, so no second copy is built.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mgs.errors import ConfigError
from mgs.models.loading import resolve_device
from mgs.models.registry import builtin_model
from mgs.train.config import ModelConfig
from mgs.train.distributed import DistContext, shard_module

__all__ = [
    "ModelSpec",
    "build_on_meta",
    "checkpointing_enabled",
    "frozen_copy",
    "load_policy",
    "load_policy_for",
    "model_spec",
    "non_persistent_buffers",
    "resolve_device",
    "shard_from_rank0",
    "unsharded_class",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer_for(cfg: ModelConfig) -> Any:
    """The policy's tokenizer, left-padded (generation pads on the left), with a pad token."""
    builtin = builtin_model(cfg.name)
    if builtin is not None:
        return builtin.tokenizer(cfg)
    from mgs.models.loading import load_tokenizer, model_dir_problem

    # Every rank runs this (FSDP2 loads the weights on rank 0 only), so all fail alike.
    problem = model_dir_problem(cfg.name) if Path(cfg.name).is_dir() else None
    if problem:
        raise ConfigError(
            f"model.name {cfg.name!r} is not a loadable model directory: {problem}; give a "
            "Hugging Face model directory (save_pretrained: config.json, weights, tokenizer), a "
            "hub name, or a builtin model (tiny)"
        )
    tokenizer = _or_config_error(cfg, load_tokenizer, cfg.name)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(cfg: ModelConfig, device: torch.device) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: a builtin model built in-process, or ``from_pretrained``."""
    dtype = _DTYPES[cfg.dtype]
    tokenizer = load_tokenizer_for(cfg)
    builtin = builtin_model(cfg.name)
    if builtin is not None:
        model = builtin.policy(cfg, tokenizer)
    else:
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"dtype": dtype}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        model = _or_config_error(cfg, AutoModelForCausalLM.from_pretrained, cfg.name, **kwargs)
    model.to(device=device, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tokenizer


def _or_config_error(cfg: ModelConfig, load, *args: Any, **kwargs: Any) -> Any:
    from mgs.models.loading import load_errors

    try:
        return load(*args, **kwargs)
    except load_errors() as exc:
        raise ConfigError(
            f"model.name {cfg.name!r} could not be loaded ({exc.__class__.__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}); give a local Hugging Face model directory, "
            "a hub name reachable from this machine, or a builtin model (tiny)"
        ) from None


def load_policy_for(
    cfg: ModelConfig, device: torch.device, ctx: DistContext
) -> tuple[nn.Module | None, Any]:
    """``(model, tokenizer)`` as this rank needs them before :class:`GRPOTrainer` shards them.

    FSDP2: the full weights on rank 0 only, in host memory (None on the other ranks, which get
    their shards from rank 0 in :func:`shard_from_rank0`). Otherwise: :func:`load_policy`.
    """
    if ctx.strategy != "fsdp2":
        return load_policy(cfg, device)
    if ctx.is_main:
        return load_policy(cfg, torch.device("cpu"))
    return None, load_tokenizer_for(cfg)


def frozen_copy(model: nn.Module) -> nn.Module:
    """The reference policy: a frozen copy in eval mode (for the KL loss; one process or DDP)."""
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


@dataclass(frozen=True)
class ModelSpec:
    """What a rank needs to rebuild rank 0's model without its weights (small, picklable)."""

    cls: type[nn.Module]  # e.g. Qwen2ForCausalLM
    config: Any  # the loaded PretrainedConfig (attention implementation, use_cache... included)
    generation_config: Any  # eos / pad ids the HF rollout backend reads
    dtype: torch.dtype  # the parameters' dtype (load_policy casts every parameter to it)
    training: bool  # train/eval mode as loaded (from_pretrained returns eval mode)
    gradient_checkpointing: bool
    lora: Any = None  # peft's LoraConfig of a LoRA policy (the spec's cls is then its base's)


def model_spec(model: nn.Module) -> ModelSpec:
    from mgs.models.lora import lora_of, peft_model_of

    peft_model = peft_model_of(model)
    base = model if peft_model is None else peft_model.get_base_model()
    return ModelSpec(
        cls=type(base),
        config=base.config,
        generation_config=getattr(base, "generation_config", None),
        dtype=next(base.parameters()).dtype,
        training=model.training,
        gradient_checkpointing=checkpointing_enabled(base),
        lora=copy.deepcopy(lora_of(model)),
    )


def checkpointing_enabled(model: nn.Module) -> bool:
    """Whether the model recomputes activations in backward (gradient checkpointing)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # transformers 5, 4
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def build_on_meta(spec: ModelSpec) -> nn.Module:
    """The architecture of ``spec`` with every parameter and buffer on ``meta`` (no memory).

    Tied weights stay tied (``post_init`` ties them); non-persistent buffers (rotary
    ``inv_freq``) are meta too and must be filled in after materialising. A LoRA spec gets its
    adapters (on ``meta`` too: peft puts them on their base layer's device).
    """
    config = copy.deepcopy(spec.config)  # _from_config writes into the config it is given
    with torch.device("meta"):
        model = spec.cls._from_config(config, dtype=spec.dtype)
    model.to(dtype=spec.dtype)  # as load_policy does: every floating tensor in one dtype
    if spec.generation_config is not None:
        model.generation_config = copy.deepcopy(spec.generation_config)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if spec.lora is not None:
        from mgs.models.lora import attach_adapters

        model = attach_adapters(model, copy.deepcopy(spec.lora))
    model.train(spec.training)
    return model


def unsharded_class(model: nn.Module) -> type[nn.Module]:
    """The model's own class: ``fully_shard`` swaps it for a subclass ``FSDP<class>``; a LoRA
    policy's is its base model's."""
    from torch.distributed.fsdp import FSDPModule

    from mgs.models.lora import peft_model_of

    peft_model = peft_model_of(model)
    if peft_model is not None:
        model = peft_model.get_base_model()
    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


def non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Buffers a state dict leaves out (rotary ``inv_freq``...), by every name they have."""
    saved = set(model.state_dict(keep_vars=True))
    return {
        name: buf for name, buf in model.named_buffers(remove_duplicate=False) if name not in saved
    }


def shard_from_rank0(
    full: nn.Module | None,
    device: torch.device,
    ctx: DistContext,
    *,
    reference: bool,
    mp_policy: Any = None,
) -> tuple[nn.Module, nn.Module | None]:
    """``(policy, reference or None)``, both FSDP2-sharded, from rank 0's full model ``full``.

    Every rank calls it (collective); only rank 0 passes ``full`` (anywhere: CPU or its device),
    the other ranks None. Each module is built on ``meta``, sharded, materialised on ``device``
    (this rank's shards only) and loaded from rank 0 by broadcast. ``reference``: also build the
    frozen KL reference (eval mode, no gradients) from the same weights. ``mp_policy``: FSDP2's
    ``MixedPrecisionPolicy`` for both (bf16 compute, :mod:`mgs.train.precision`).
    """
    if ctx.is_main and full is None:
        raise ValueError("shard_from_rank0: rank 0 must pass the full model")
    box: list[Any] = [model_spec(full) if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    spec: ModelSpec = box[0]
    state = full.state_dict() if ctx.is_main else {}
    buffers = non_persistent_buffers(full) if ctx.is_main else {}
    policy = _sharded_copy(spec, state, buffers, device, frozen=False, mp_policy=mp_policy)
    ref = None
    if reference:
        ref = _sharded_copy(spec, state, buffers, device, frozen=True, mp_policy=mp_policy)
    return policy, ref


def _sharded_copy(
    spec: ModelSpec,
    state: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    device: torch.device,
    *,
    frozen: bool,
    mp_policy: Any = None,
) -> nn.Module:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model = build_on_meta(spec)
    if frozen:
        # Before fully_shard: FSDP2 takes requires_grad from the parameters it is given.
        model.eval()
        model.requires_grad_(False)
    shard_module(model, mp_policy)
    model.to_empty(device=device)  # this rank's shards (and every buffer), uninitialised
    set_model_state_dict(
        model,
        dict(state),  # a copy: it writes this rank's DTensors into the dict it is given
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
    )
    # to_empty left the non-persistent buffers as garbage and no state dict carries them: take
    # rank 0's, which are exactly what a single process computes (dtype included).
    _broadcast_buffers(model, buffers, device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"FSDP2 loading left tensors on the meta device: {left}")
    return model


def _broadcast_buffers(
    model: nn.Module, rank0_buffers: dict[str, torch.Tensor], device: torch.device
) -> None:
    """Replace ``model``'s non-persistent buffers by rank 0's (same names, shapes, dtypes)."""
    box: list[Any] = [
        {name: (buf.shape, buf.dtype) for name, buf in rank0_buffers.items()}
        if dist.get_rank() == 0
        else None
    ]
    dist.broadcast_object_list(box, src=0)
    layout: dict[str, tuple[torch.Size, torch.dtype]] = box[0]
    mine = non_persistent_buffers(model)
    if set(mine) != set(layout):
        raise RuntimeError(
            f"FSDP2 loading: the rebuilt model's non-persistent buffers {sorted(mine)} differ "
            f"from rank 0's {sorted(layout)}"
        )
    for name, (shape, dtype) in sorted(layout.items()):
        if dist.get_rank() == 0:
            tensor = rank0_buffers[name].detach().to(device=device, copy=True)
        else:
            tensor = torch.empty(shape, dtype=dtype, device=device)
        dist.broadcast(tensor, src=0)
        owner, _, leaf = name.rpartition(".")
        # Assigning a registered buffer's name keeps it registered (and non-persistent).
        setattr(model.get_submodule(owner), leaf, tensor)
