"""LoRA through peft (``model.lora``; the optional extra ``mgs[lora]``).

The policy becomes ``peft.get_peft_model(base, LoraConfig(...))``: the base model's weights are
frozen and only the adapters (``lora_A`` / ``lora_B`` of each targeted module) train, so the
optimizer state, the gradients and the surgeon's per-domain buffers hold the adapters only.

- **Names.** peft names an adapter weight ``base_model.model.<module>.lora_A.default.weight``; the
  surgery strips ``base_model.model.`` and the adapter name (:func:`mgs.surgery.groups.clean_name`),
  so ``module`` granularity keys a module's ``lora_A`` and ``lora_B`` together under the original
  module's name (``model.layers.0.self_attn.q_proj``).
- **KL reference.** The base model is the policy with its adapters disabled (peft's
  ``disable_adapter()``): :class:`AdaptersDisabled`, no second copy of the weights.
- **Rollouts** (hf backend) run on merged weights: :func:`merged_for_generation` merges the
  adapters (peft's ``merge_adapter``) into *copies* of the targeted base weights, generates with the
  base model, then unmerges and puts the original weights back, so training continues on exactly
  the unmerged adapters it had (no merge / unmerge rounding reaches them).
- **Saving.** ``save_pretrained`` of the peft model writes the adapter (``adapter_config.json`` +
  ``adapter_model.safetensors``); :func:`merge_lora_state` folds the adapters into a full state dict
  (``W + alpha / r * B @ A``) for a merged Hugging Face directory.

peft is imported only when a LoRA policy is built or loaded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgs.dataclass_config import option
from mgs.errors import ConfigError
from mgs.run_dir import RunDir

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "LORA_HINT",
    "AdaptersDisabled",
    "LoRAConfig",
    "adapter_state",
    "apply_lora",
    "attach_adapters",
    "import_peft",
    "is_adapter_dir",
    "is_adapter_name",
    "load_adapter_state",
    "lora_of",
    "merge_lora_state",
    "merged_for_generation",
    "peft_model_of",
    "save_adapter",
]

LORA_HINT = "pip install 'mgs[lora]'"
ADAPTER_CONFIG = RunDir.ADAPTER_CONFIG  # what peft's save_pretrained writes beside the weights
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "default"  # peft's name of the one adapter get_peft_model adds
# The linear layers of a Llama / Qwen2 / Mistral decoder layer (peft's usual targets).
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PEFT_PREFIX = "base_model.model."


@dataclass
class LoRAConfig:
    """Low-rank adapters on the policy (``model.lora``; null: train every weight)."""

    r: int = option(16, help="Rank of every adapter (lora_A: [r, in], lora_B: [out, r]).")
    alpha: int = option(32, help="Scaling numerator: the update is alpha / r * B @ A.")
    dropout: float = option(0.0, help="Dropout on the adapter's input while training (0: none).")
    target_modules: list[str] = option(
        default_factory=lambda: list(DECODER_LINEARS),
        help="Names of the modules that get adapters (peft's target_modules: module-name "
        "suffixes, or ['all-linear'] for every linear layer but the output head).",
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"model.lora.r must be a positive integer, got {self.r}; e.g. 16")
        if self.alpha <= 0:
            raise ConfigError(f"model.lora.alpha must be > 0, got {self.alpha}; e.g. 2 x r")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules or not all(
            isinstance(t, str) and t for t in self.target_modules
        ):
            raise ConfigError(
                f"model.lora.target_modules must list module names, got {self.target_modules!r}; "
                f"e.g. [{', '.join(DECODER_LINEARS[:4])}] or [all-linear]"
            )

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


def import_peft() -> Any:
    """The ``peft`` module, or one clear error naming the extra to install."""
    try:
        import peft
    except ImportError as exc:
        raise ConfigError(
            f"model.lora needs peft, which is not installed ({exc}); run {LORA_HINT}, or remove "
            "model.lora to train every weight"
        ) from None
    return peft


_ADAPTER_PART = re.compile(r"(^|\.)(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.|$)")


def is_adapter_name(name: str) -> bool:
    """Whether a parameter name is a LoRA adapter's (``...q_proj.lora_A.default.weight``)."""
    return _ADAPTER_PART.search(name) is not None


def _peft_config(cfg: LoRAConfig) -> Any:
    peft = import_peft()
    targets: Any = cfg.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"  # peft's special value (a string, not a list)
    return peft.LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        bias="none",
    )


def apply_lora(model: Any, cfg: LoRAConfig) -> Any:
    """``model`` (a Hugging Face causal LM) with ``cfg``'s adapters: peft's ``PeftModelForCausalLM``,
    every base weight frozen. A target that matches no module is a :class:`ConfigError` listing the
    model's linear layers."""
    from torch import nn

    try:
        return attach_adapters(model, _peft_config(cfg))
    except ValueError as exc:
        linears = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        raise ConfigError(
            f"model.lora.target_modules {cfg.target_modules} do not fit this model "
            f"({(str(exc).splitlines() or [''])[0]}); its linear layers are: {', '.join(linears)}"
        ) from None


def attach_adapters(model: Any, config: Any) -> Any:
    """``peft.get_peft_model(model, config)`` (peft's ``LoraConfig``). With gradient checkpointing
    on, the embeddings' output is made to require grad first: with reentrant checkpointing (the
    default of transformers 4) a frozen embedding would otherwise cut the adapters' gradients."""
    from mgs.train.modeling import checkpointing_enabled

    if checkpointing_enabled(model):
        model.enable_input_require_grads()
    return import_peft().get_peft_model(model, config)


def _unwrap(model: Any) -> Any:
    from torch import nn

    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def peft_model_of(model: Any) -> Any:
    """The peft model behind ``model`` (itself, or a DDP wrapper's module), else None."""
    import sys

    if "peft" not in sys.modules:  # nothing can be a peft model before peft is imported
        return None
    from peft import PeftModel

    inner = _unwrap(model)
    return inner if isinstance(inner, PeftModel) else None


def lora_of(model: Any) -> Any:
    """peft's ``LoraConfig`` of a LoRA policy, else None."""
    peft_model = peft_model_of(model)
    return None if peft_model is None else peft_model.peft_config[ADAPTER_NAME]


def _sharded(model: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


@contextlib.contextmanager
def merged_for_generation(model: Any) -> Iterator[Any]:
    """The module to generate with: a LoRA policy's base model with the adapters merged into
    copies of its weights (peft's ``merge_adapter`` / ``unmerge_adapter``; the originals are put
    back afterwards, bit for bit); any other model as it is.

    A policy sharded across ranks (FSDP2) yields its base model unmerged: peft's layers inside it
    compute ``W x + s B A x``, the same function; merging would need every targeted weight whole.
    """
    peft_model = peft_model_of(model)
    if peft_model is None:
        yield model
        return
    if _sharded(peft_model):
        yield peft_model.get_base_model()
        return
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    originals = []
    for layer in peft_model.modules():
        if isinstance(layer, BaseTunerLayer):
            base = layer.get_base_layer()
            originals.append((base, base.weight))
            base.weight = nn.Parameter(base.weight.detach().clone(), requires_grad=False)
    try:
        peft_model.merge_adapter()
        yield peft_model.get_base_model()
    finally:
        peft_model.unmerge_adapter()
        for base, weight in originals:
            base.weight = weight


class AdaptersDisabled:
    """The KL reference of a LoRA policy: the policy's forward with its adapters disabled (peft's
    ``disable_adapter()``), i.e. the frozen base model, without a second copy of it.

    Call it like a model (``reference(input_ids=..., ...)``) under ``torch.no_grad()``; under FSDP2
    every rank must call it alike (the forward all-gathers the shards).
    """

    def __init__(self, model: Any) -> None:
        peft_model = peft_model_of(model)
        if peft_model is None:
            raise ValueError("AdaptersDisabled needs a peft (LoRA) policy")
        self.peft_model = peft_model

    def forward(self, **inputs: Any) -> Any:
        with self.peft_model.disable_adapter():
            return self.peft_model(**inputs)

    __call__ = forward


def adapter_state(model: Any) -> dict[str, Any]:
    """The adapters' full tensors by peft's parameter names (``...lora_A.default.weight``), on the
    CPU. FSDP2 shards are all-gathered: a collective, every rank must call it."""
    peft_model = peft_model_of(model)
    if peft_model is None:
        raise ValueError("adapter_state needs a peft (LoRA) policy")
    state = {}
    for name, param in peft_model.named_parameters():
        if not param.requires_grad:
            continue
        tensor = param.detach()
        if hasattr(tensor, "full_tensor"):  # an FSDP2 DTensor
            tensor = tensor.full_tensor()
        state[name] = tensor.cpu()
    return state


def save_adapter(model: Any, path: Path, state: dict[str, Any]) -> None:
    """Write the adapter (``adapter_config.json`` + ``adapter_model.safetensors``) of ``model``
    with the weights ``state`` (:func:`adapter_state`) into ``path``."""
    peft_model = peft_model_of(model)
    peft_model.save_pretrained(
        str(path), state_dict=state, safe_serialization=True, save_embedding_layers=False
    )


def is_adapter_dir(path: str | Path) -> bool:
    """``path`` holds a peft LoRA adapter (a LoRA run's ``model/`` or checkpoint), not a model."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_adapter_state(path: str | Path, model: Any) -> dict[str, Any]:
    """The adapter weights saved in ``path`` under ``model``'s parameter names (the adapter name
    peft drops when saving put back); every adapter parameter of ``model`` must be there."""
    from safetensors.torch import load_file

    file = Path(path) / ADAPTER_WEIGHTS
    if not file.is_file():
        raise ConfigError(f"{path} holds no {ADAPTER_WEIGHTS}: not a LoRA adapter saved by mgs")
    saved = load_file(str(file))
    peft_model = peft_model_of(model)
    wanted = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    state = {}
    for name in wanted:
        key = name.replace(f".{ADAPTER_NAME}.", ".").removesuffix(f".{ADAPTER_NAME}")
        if key not in saved:
            raise ConfigError(
                f"the adapter in {path} has no {key!r}; it was saved with another model.lora "
                "(rank or target modules) than this run's"
            )
        state[name] = saved[key]
    return state


_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)"
)


def merge_lora_state(state: dict[str, Any], scaling: float) -> dict[str, Any]:
    """A peft LoRA model's full state dict (``base_model.model.X.base_layer.weight``,
    ``X.lora_A.default.weight``...) as the base model's, adapters folded in:
    ``X.weight = W + scaling * B @ A`` for linear layers, ``W + scaling * (B @ A)^T`` for embeddings
    (peft's ``get_delta_weight``); the other tensors keep their names without peft's prefix."""
    adapters: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = key.removeprefix(_PEFT_PREFIX)
        found = _LORA_KEY.match(name)
        if found:
            adapters.setdefault(found["module"], {})[found["kind"]] = value
            continue
        out[name.replace(".base_layer.", ".")] = value
    merged: dict[tuple, Any] = {}  # storage of a base weight -> its merged tensor
    for module, parts in adapters.items():
        weight = f"{module}.weight"
        if weight not in out or len(parts) != 2:
            raise ValueError(f"incomplete LoRA weights for {module}: {sorted(parts)}")
        base = out[weight]
        if "lora_A" in parts:
            delta = parts["lora_B"].float() @ parts["lora_A"].float()  # [out, in]
        else:
            delta = (parts["lora_embedding_B"].float() @ parts["lora_embedding_A"].float()).T
        merged[_storage(base)] = out[weight] = (base.float() + scaling * delta).to(base.dtype)
    # Tied weights (an LM head sharing the embedding's storage) stay tied to the merged tensor.
    return {name: merged.get(_storage(value), value) for name, value in out.items()}


def _storage(tensor: Any) -> tuple:
    return (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
