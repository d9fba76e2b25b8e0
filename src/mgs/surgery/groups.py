"""Partition of a model's trainable parameters into *groups*, the unit of gradient surgery.

Granularities (docs/method.md):

- ``"tensor"``: every parameter tensor is its own group (the paper's code);
- ``"module"``: every module that owns parameters (``...self_attn.q_proj``, ``...mlp.down_proj``);
- ``"layer"``: every transformer block (``model.layers.3``); parameters outside the blocks
  (embeddings, final norm, head) fall back to their owning module;
- ``"global"``: one group for the whole model (plain PCGrad);
- a callable ``(name, param) -> key``: any partition a user wants.

Groups are sorted by key and parameters by name, so the layout (and the random order PCGrad draws
for each group) depends only on the names, never on the order in which a model lists its tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import nn

from mgs.errors import unknown_name

Granularity = str | Callable[[str, torch.nn.Parameter], Hashable]
GRANULARITIES = ("tensor", "module", "layer", "global")

# Prefixes that wrappers add to parameter names (DDP, torch.compile, FSDP1, activation checkpointing).
_WRAPPER_PARTS = re.compile(
    r"(^|\.)(module|_orig_mod|_fsdp_wrapped_module|_checkpoint_wrapped_module)(?=\.)"
)
_NUMERIC = re.compile(r"^\d+$")
# What peft adds to a LoRA policy's names: the ``base_model.model.`` prefix, and the adapter's
# name after each adapter part (``q_proj.lora_A.default.weight``; an embedding's parameter is
# ``embed_tokens.lora_embedding_A.default`` itself).
_PEFT_PREFIX = re.compile(r"^base_model\.model\.")
ADAPTER_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
_ADAPTER_NAME = re.compile(r"\.(" + "|".join(ADAPTER_PARTS) + r")\.[^.]+(?=\.|$)")


def clean_name(name: str) -> str:
    """Parameter name without wrapper prefixes: ``module.model.layers.0.x`` -> ``model.layers.0.x``;
    a peft (LoRA) name also loses peft's prefix and the adapter's name:
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight`` ->
    ``model.layers.0.self_attn.q_proj.lora_A.weight``."""
    name = _WRAPPER_PARTS.sub("", name).lstrip(".")
    return _ADAPTER_NAME.sub(r".\1", _PEFT_PREFIX.sub("", name))


def module_key(name: str) -> str:
    """Owning module of a parameter: ``model.layers.0.mlp.up_proj.weight`` -> ``...mlp.up_proj``.

    A LoRA adapter's parameters belong to the module they adapt: ``...q_proj.lora_A.weight`` and
    ``...q_proj.lora_B.weight`` -> ``...q_proj`` (one group holds a module's A and B)."""
    parts = name.split(".")
    owner = parts[:-1] if len(parts) > 1 else parts
    while len(owner) > 1 and owner[-1] in ADAPTER_PARTS:
        owner = owner[:-1]
    return ".".join(owner)


def layer_key(name: str) -> str:
    """Transformer block of a parameter: the name up to its first numeric component.

    ``model.layers.3.self_attn.q_proj.weight`` -> ``model.layers.3``; a parameter outside any
    ``ModuleList`` (``model.embed_tokens.weight``) keeps its owning module.
    """
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if _NUMERIC.match(part):
            return ".".join(parts[: i + 1])
    return module_key(name)


@dataclass(frozen=True)
class Group:
    """One surgery group: a key and the (cleaned) names of its parameters, in layout order."""

    key: str
    param_names: tuple[str, ...]


def partition(
    model: nn.Module, granularity: Granularity
) -> tuple[list[Group], dict[str, nn.Parameter]]:
    """Split ``model``'s trainable parameters into groups.

    Returns the groups (sorted by key) and a ``name -> parameter`` map of the trainable parameters
    (frozen ones are left out; tied parameters appear once, under their first name).
    """
    key_of = _key_function(granularity)
    params: dict[str, nn.Parameter] = {}
    for raw_name, param in model.named_parameters():
        if param.requires_grad:
            params[clean_name(raw_name)] = param
    if not params:
        raise ValueError("the model has no parameters with requires_grad=True: nothing to train")
    members: dict[str, list[str]] = {}
    for name, param in params.items():
        members.setdefault(str(key_of(name, param)), []).append(name)
    groups = [Group(key, tuple(sorted(names))) for key, names in sorted(members.items())]
    return groups, params


def _key_function(granularity: Granularity) -> Callable[[str, nn.Parameter], Hashable]:
    if callable(granularity):
        return granularity
    table: dict[str, Callable[[str, nn.Parameter], Hashable]] = {
        "tensor": lambda name, _p: name,
        "module": lambda name, _p: module_key(name),
        "layer": lambda name, _p: layer_key(name),
        "global": lambda _name, _p: "global",
    }
    if granularity not in table:
        raise unknown_name("granularity", granularity, [*GRANULARITIES, "<callable(name, param)>"])
    return table[granularity]
