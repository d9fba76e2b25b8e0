"""Load the policy (built-in tiny or a Hugging Face model) and pick the device."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mgs.errors import ConfigError
from mgs.models.loading import resolve_device
from mgs.models.tiny import build_tiny_policy, build_tiny_tokenizer
from mgs.train.config import ModelConfig

__all__ = ["frozen_copy", "load_policy", "resolve_device"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_policy(cfg: ModelConfig, device: torch.device) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: the tiny architecture built in-process, or ``from_pretrained``."""
    dtype = _DTYPES[cfg.dtype]
    if cfg.name == "tiny":
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_policy(tokenizer, cfg.tiny)
    else:
        from transformers import AutoModelForCausalLM

        from mgs.models.loading import load_tokenizer

        kwargs: dict[str, Any] = {"dtype": dtype}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        try:
            tokenizer = load_tokenizer(cfg.name)
            model = AutoModelForCausalLM.from_pretrained(cfg.name, **kwargs)
        except OSError as exc:
            raise ConfigError(
                f"model.name {cfg.name!r} could not be loaded ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}); give a local Hugging Face model directory, a hub "
                "name reachable from this machine, or `tiny`"
            ) from None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
    model.to(device=device, dtype=dtype)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tokenizer


def frozen_copy(model: nn.Module) -> nn.Module:
    """The reference policy: a frozen copy in eval mode (for the KL loss)."""
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref
