"""The colocated vLLM engine: its config, how it is built, and how the policy's weights reach it.

Written for vLLM 0.33-0.34 (see docs/vllm.md); vLLM is imported only when an engine is built.

**Engine.** ``vllm.LLM(**engine_kwargs(...))``: the policy's own checkpoint, ``enable_sleep_mode``
and ``gpu_memory_utilization`` for sharing the GPU with training, prefix caching on. Under torchrun
every rank builds its own engine with ``distributed_executor_backend="external_launcher"`` (the
engine joins the trainer's process group; TRL's colocate mode does the same); in a single process
the engine core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) unless
``engine_in_process: false``. Three process-wide facts of vLLM are enforced here rather than
discovered as hangs: vLLM reads its environment variables once, when the first engine of a process
is built (:func:`freeze_engine_env`); one process holds at most one sleep-mode engine (its memory
pool is a process singleton); an in-process engine reseeds Python's, NumPy's and torch's global
random generators (:func:`preserved_rng` restores the trainer's).

**Weight sync.** After each optimizer step every parameter of the policy, under its Hugging Face
name (the parts wrappers add, ``_orig_mod.`` from ``torch.compile``, ``module.`` from DDP,
``_fsdp_wrapped_module.`` / ``_checkpoint_wrapped_module.``, removed), is gathered to a full tensor
(``DTensor.full_tensor()`` for FSDP2: a collective every rank joins, in the same order) and handed
to the engine through ``LLM.apply_model(LoadWeights(chunk))``: vLLM runs it as
``model.load_weights(chunk)`` in every worker, whose loaders map the Hugging Face names onto the
fused layers (``qkv_proj``, ``gate_up_proj``), slice them for tensor parallelism and cast them. With
the worker in this process the chunk's tensors are passed as they are (on the GPU, no copy);
otherwise they are moved to the CPU and serialized to the worker processes (correct, slow). At most
one chunk of about ``chunk_bytes`` of gathered weights is alive at a time. ``load_weights`` alone
is right for unquantized bfloat16 engines only (others need vLLM's ``process_weights_after_loading``
after the last chunk), so :func:`check_engine_weights` refuses any other engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch

from mgs.dataclass_config import option
from mgs.errors import ConfigError, MgsError
from mgs.models.lora import is_adapter_name, lora_of
from mgs.rl.vllm_lora import lora_engine_kwargs

__all__ = [
    "INSTALL_HINT",
    "SUPPORTED_VERSIONS",
    "WRAPPER_PARTS",
    "LoadWeights",
    "VLLMConfig",
    "check_engine_weights",
    "claim_sleep_mode",
    "engine_env",
    "engine_kwargs",
    "freeze_engine_env",
    "full_weight_chunks",
    "hf_name",
    "import_vllm",
    "preserved_rng",
    "push_weights",
    "release_sleep_mode",
    "worker_in_process",
]

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'mgs[vllm]'"
# major.minor range the fakes in tests/unit/rl/test_rl_vllm_fakes.py mirror (and pyproject's extra).
SUPPORTED_VERSIONS = ((0, 33), (0, 34))
# Parts of parameter names that wrappers add (torch.compile, FSDP1, activation checkpointing).
WRAPPER_PARTS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")
# The environment of the first engine built in this process: vLLM reads it once (vllm.envs caches
# every value from then on), so a later engine needing other values would silently not get them.
_FROZEN_ENV: dict[str, str] | None = None
# The owner of this process's sleep-mode engine: vLLM's sleep-mode allocator is a process singleton.
_SLEEP_MODE_OWNER: weakref.ref | None = None


@dataclass
class VLLMConfig:
    """The colocated vLLM engine (``rollout.vllm``); see docs/vllm.md."""

    gpu_memory_utilization: float = option(
        0.4, help="Share of each GPU vLLM may take (weights + KV cache); the trainer gets the rest."
    )
    tensor_parallel_size: int = option(
        1, help="GPUs per engine; under torchrun it must be 1 (one engine per rank)."
    )
    enable_sleep_mode: bool = option(
        False,
        help="Free the engine's GPU memory between generations (CUDA only; one such engine per "
        "process).",
    )
    sleep_level: int = option(
        1, help="1: weights to CPU RAM, KV cache dropped; 2: both dropped (all weights re-pushed)."
    )
    dtype: Literal["auto", "bfloat16"] = option(
        "auto",
        help="Engine weights: bfloat16, or auto (vLLM's default for the platform, not the "
        "checkpoint's); an engine that does not end up unquantized bfloat16 is refused.",
    )
    max_model_len: int | None = option(
        None, help="Longest prompt + response; null: the model's (KV cache must hold one of them)."
    )
    max_num_seqs: int | None = option(None, help="Sequences decoded together; null: vLLM's.")
    enforce_eager: bool = option(False, help="Disable CUDA graphs (less memory, slower).")
    load_format: Literal["auto", "dummy"] = option(
        "auto", help="auto: read the checkpoint; dummy: random init, synced from the policy first."
    )
    model_path: str | None = option(
        None, help="Checkpoint the engine starts from; null: the policy's own path (model.name)."
    )
    engine_in_process: bool = option(
        True,
        help="Run vLLM's engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so weights "
        "reach it without a copy; false: they are serialized to its process on the CPU.",
    )
    sync_chunk_mb: int = option(
        1024, help="Gathered weights handed to the engine per load_weights call, in MiB."
    )
    seed: int = option(0, help="Engine seed (each request also gets its own seed).")

    def __post_init__(self) -> None:
        checks = [
            ("gpu_memory_utilization", 0 < self.gpu_memory_utilization <= 1, "in (0, 1], e.g. 0.4"),
            ("tensor_parallel_size", self.tensor_parallel_size >= 1, "a positive integer"),
            ("sleep_level", self.sleep_level in (1, 2), "1 or 2"),
            (
                "max_model_len",
                self.max_model_len is None or self.max_model_len >= 2,
                ">= 2 or null",
            ),
            ("max_num_seqs", self.max_num_seqs is None or self.max_num_seqs >= 1, ">= 1 or null"),
            ("sync_chunk_mb", self.sync_chunk_mb >= 1, "a positive integer, e.g. 1024"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(
                    f"rollout.vllm.{name} must be {want}; got {getattr(self, name)!r}"
                )


def _version(text: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def import_vllm() -> SimpleNamespace:
    """``vllm.LLM``, ``SamplingParams``, ``TokensPrompt``; a clear error when vLLM is missing or
    older than the API this backend mirrors."""
    try:
        import vllm
    except ImportError as exc:
        raise MgsError(
            f"rollout.backend: vllm needs vLLM, which is not installed ({exc}); run {INSTALL_HINT} "
            "on a CUDA machine, or use rollout.backend: hf"
        ) from None
    version = str(getattr(vllm, "__version__", "0"))
    low, high = SUPPORTED_VERSIONS
    if _version(version) < low:
        raise MgsError(
            f"vLLM {version} is too old for mgs's vLLM backend (written for {low[0]}.{low[1]}-"
            f"{high[0]}.{high[1]}); run {INSTALL_HINT}"
        )
    if _version(version) > high:
        log.warning(
            "vLLM %s is newer than the %d.%d-%d.%d this backend was written for",
            version,
            *low,
            *high,
        )
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    return SimpleNamespace(
        LLM=vllm.LLM,
        SamplingParams=vllm.SamplingParams,
        TokensPrompt=TokensPrompt,
        LoRARequest=LoRARequest,
    )


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def worker_in_process(cfg: VLLMConfig) -> bool:
    """Whether the engine's (only) worker runs in this process: under torchrun (the external
    launcher) or with an in-process engine core and one GPU per engine."""
    return _world_size() > 1 or (cfg.engine_in_process and cfg.tensor_parallel_size == 1)


def engine_env(cfg: VLLMConfig) -> dict[str, str]:
    """The vLLM environment variables this engine needs."""
    if _world_size() > 1:
        return {}  # external launcher: the engine lives in the rank's process anyway
    if cfg.engine_in_process:
        env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        if cfg.tensor_parallel_size == 1:
            return env
    else:
        env = {}
    env["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # apply_model ships a callable to a process
    return env


def freeze_engine_env(env: dict[str, str]) -> None:
    """Set ``env`` for the first engine of this process; a later engine must need the same values
    (of the variables mgs manages: a variable one engine leaves unset counts as unset)."""
    global _FROZEN_ENV
    if _FROZEN_ENV is None:
        os.environ.update(env)
        _FROZEN_ENV = dict(env)
        return
    for name in sorted(set(env) | set(_FROZEN_ENV)):
        want, had = env.get(name), _FROZEN_ENV.get(name)
        if want != had:
            raise MgsError(
                f"this vLLM engine needs {name}={want or '(unset)'}, but vLLM read its environment "
                f"when the first engine of this process was built ({name}={had or '(unset)'}) and "
                "ignores later changes; build it in a new process, or give it the same "
                "rollout.vllm.engine_in_process and tensor_parallel_size as the first engine"
            )


def claim_sleep_mode(owner: object) -> None:
    """Record ``owner`` as this process's one sleep-mode engine; a second live one is refused
    (the claim ends when ``owner`` is garbage-collected or :func:`release_sleep_mode` is called)."""
    global _SLEEP_MODE_OWNER
    if _SLEEP_MODE_OWNER is not None and _SLEEP_MODE_OWNER() is not None:
        raise MgsError(
            "this process already holds a vLLM engine with enable_sleep_mode, and vLLM's "
            "sleep-mode memory pool is one per process; close() the first backend before "
            "building another, or set rollout.vllm.enable_sleep_mode: false"
        )
    _SLEEP_MODE_OWNER = weakref.ref(owner)


def release_sleep_mode(owner: object) -> None:
    """End ``owner``'s sleep-mode claim (called when its engine is shut down)."""
    global _SLEEP_MODE_OWNER
    if _SLEEP_MODE_OWNER is not None and _SLEEP_MODE_OWNER() is owner:
        _SLEEP_MODE_OWNER = None


def engine_kwargs(cfg: VLLMConfig, model: torch.nn.Module, tokenizer: Any) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for a colocated engine of ``model``."""
    path = cfg.model_path or getattr(model, "name_or_path", "") or ""
    if not path or path == "tiny":
        raise MgsError(
            "the vLLM backend starts its engine from the policy's Hugging Face directory, but "
            "this policy has none (built in-process); save it with save_pretrained and set "
            "model.name (or rollout.vllm.model_path), or use rollout.backend: hf"
        )
    kwargs: dict[str, Any] = {
        "model": str(path),
        "tokenizer": getattr(tokenizer, "name_or_path", "") or str(path),
        "dtype": cfg.dtype,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "enable_sleep_mode": cfg.enable_sleep_mode,
        "enforce_eager": cfg.enforce_eager,
        "load_format": cfg.load_format,
        "seed": cfg.seed,
        "enable_prefix_caching": True,  # the n requests of a prompt share its keys/values
    }
    for name in ("max_model_len", "max_num_seqs"):
        if getattr(cfg, name) is not None:
            kwargs[name] = getattr(cfg, name)
    lora = lora_of(model)
    if lora is not None:  # the engine serves the frozen base; requests name the adapter
        kwargs.update(lora_engine_kwargs(lora))
    if _world_size() > 1:
        if cfg.tensor_parallel_size != 1:
            raise MgsError(
                f"rollout.vllm.tensor_parallel_size={cfg.tensor_parallel_size} under torchrun: "
                "mgs runs one engine per rank, so write tensor_parallel_size: 1 (a 7-8B model "
                "fits one 80 GB GPU), or run a single process with tensor_parallel_size > 1"
            )
        kwargs["distributed_executor_backend"] = "external_launcher"
    return kwargs


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and every initialised CUDA device's) global
    random states on exit: building an in-process engine reseeds them with the engine's seed."""
    python, numpy_state, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def check_engine_weights(llm: Any) -> None:
    """Refuse an engine whose weights ``load_weights`` alone cannot update: quantized or not
    bfloat16 (those need ``process_weights_after_loading`` after every sync)."""
    model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    dtype = getattr(model_config, "dtype", None)
    quantization = getattr(model_config, "quantization", None)
    if quantization is not None or dtype != torch.bfloat16:
        what = f"quantized ({quantization})" if quantization is not None else f"in {dtype}"
        raise MgsError(
            f"the vLLM engine holds its weights {what}; mgs updates them with load_weights alone, "
            "which is only right for unquantized bfloat16 engines. Set rollout.vllm.dtype: "
            "bfloat16 and start the engine from an unquantized checkpoint, or use "
            "rollout.backend: hf"
        )


def hf_name(name: str) -> str:
    """``name`` without the parts wrappers add: the name in the Hugging Face checkpoint (a LoRA
    policy's base weight ``base_model.model.<module>.base_layer.weight`` -> ``<module>.weight``)."""
    parts = [p for p in name.split(".") if p not in WRAPPER_PARTS]
    if parts[:2] == ["base_model", "model"]:  # peft's prefix
        parts = [p for p in parts[2:] if p != "base_layer"]
    return ".".join(parts)


def full_weight_chunks(
    model: torch.nn.Module, chunk_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The policy's parameters as ``(Hugging Face name, full tensor)`` lists of about
    ``chunk_bytes`` each (a larger tensor is a chunk of its own). Tied parameters appear once.
    DTensor parameters are all-gathered, so every rank must run the whole iteration. A LoRA
    policy gives its base weights only (the engine gets the adapter as a ``LoRARequest``)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module  # its parameters are named module.<name>
    lora = lora_of(model) is not None
    chunk: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, param in model.named_parameters():
        if lora and is_adapter_name(name):
            continue
        tensor = param.detach()
        if hasattr(tensor, "full_tensor"):  # a DTensor; FSDP2 may keep its shards on the CPU
            mesh_device = getattr(getattr(tensor, "device_mesh", None), "device_type", "cpu")
            if tensor.device.type == "cpu" and mesh_device != "cpu":
                tensor = tensor.to(mesh_device)
            tensor = tensor.full_tensor()
        chunk.append((hf_name(name), tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= chunk_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class LoadWeights:
    """The ``apply_model`` callable: load one chunk of ``(name, tensor)`` pairs into the engine's
    model (picklable, for engines whose workers live in other processes)."""

    def __init__(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        self.weights = weights

    def __call__(self, model: torch.nn.Module) -> None:
        model.load_weights(self.weights)  # type: ignore[operator]  # returns nothing to ship back


def push_weights(llm: Any, model: torch.nn.Module, chunk_bytes: int, *, in_process: bool) -> int:
    """Load ``model``'s full weights into ``llm``'s model(s) through ``LLM.apply_model``; with the
    worker ``in_process`` the tensors go as they are (no copy). Returns the number of chunks."""
    count = 0
    for chunk in full_weight_chunks(model, chunk_bytes):
        weights = chunk if in_process else [(name, t.cpu()) for name, t in chunk]
        llm.apply_model(LoadWeights(weights))
        count += 1
        del chunk, weights  # this chunk's gathered tensors can go before the next is gathered
    return count
