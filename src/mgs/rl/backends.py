"""Rollout backends by name: ``hf`` (Hugging Face ``generate``) and ``vllm`` (colocated vLLM).

The trainer builds its backend with :func:`build_backend` from ``rollout.backend``; add your own
with ``@register_backend("name")`` (a function with the same keyword arguments returning a
:class:`~mgs.rl.rollout.RolloutBackend`). Importing this module never imports vLLM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mgs.errors import unknown_name
from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.rollout import RolloutBackend
from mgs.rl.vllm_backend import VLLMBackend, VLLMConfig

__all__ = ["BackendBuilder", "available_backends", "build_backend", "register_backend"]

BackendBuilder = Callable[..., RolloutBackend]
_REGISTRY: dict[str, BackendBuilder] = {}


def register_backend(name: str) -> Callable[[BackendBuilder], BackendBuilder]:
    """Decorator: ``fn(model, tokenizer, *, max_prompt_tokens, micro_batch_size, vllm_options,
    decode, compute_dtype)`` becomes the backend ``name``."""

    def wrap(fn: BackendBuilder) -> BackendBuilder:
        _REGISTRY[name] = fn
        return fn

    return wrap


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def build_backend(
    name: str,
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    max_prompt_tokens: int,
    micro_batch_size: int,
    vllm_options: VLLMConfig | None = None,
    decode: str = "generate",
    compute_dtype: torch.dtype | None = None,
) -> RolloutBackend:
    """The rollout backend called ``name`` for ``model``; an unknown name lists the valid ones.

    ``micro_batch_size`` is the rows per ``generate`` call of ``hf`` (vLLM schedules its own
    batches: see ``vllm_options.max_num_seqs``); ``vllm_options`` configures ``vllm`` (default:
    :class:`VLLMConfig`'s defaults); ``decode`` is ``hf``'s decode loop (``rollout.decode``);
    ``compute_dtype`` is ``hf``'s autocast dtype (bf16 mixed precision; vLLM has its own dtype).
    """
    if name not in _REGISTRY:
        raise unknown_name("rollout backend", name, list(_REGISTRY))
    return _REGISTRY[name](
        model,
        tokenizer,
        max_prompt_tokens=max_prompt_tokens,
        micro_batch_size=micro_batch_size,
        vllm_options=vllm_options if vllm_options is not None else VLLMConfig(),
        decode=decode,
        compute_dtype=compute_dtype,
    )


@register_backend("hf")
def _hf(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    max_prompt_tokens: int,
    micro_batch_size: int,
    vllm_options: VLLMConfig,
    decode: str,
    compute_dtype: torch.dtype | None,
) -> RolloutBackend:
    return HFGenerateBackend(
        model,
        tokenizer,
        max_prompt_tokens=max_prompt_tokens,
        micro_batch_size=micro_batch_size,
        decode=decode,
        compute_dtype=compute_dtype,
    )


@register_backend("vllm")
def _vllm(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    max_prompt_tokens: int,
    micro_batch_size: int,
    vllm_options: VLLMConfig,
    decode: str,
    compute_dtype: torch.dtype | None,
) -> RolloutBackend:
    return VLLMBackend(model, tokenizer, max_prompt_tokens=max_prompt_tokens, config=vllm_options)
