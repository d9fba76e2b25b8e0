"""The colocated vLLM engine: its config, how it is built, and how the policy's weights reach it.

Written for vLLM 0.8.5 to 0.11.x (see docs/vllm.md); vLLM is imported only when an engine is built.

**Engine.** ``vllm.LLM(**engine_kwargs(...))``: the policy's own checkpoint, ``enable_sleep_mode``
and ``gpu_memory_utilization`` for sharing the GPU with training, prefix caching on. Under torchrun
every rank builds its own engine with ``distributed_executor_backend="external_launcher"`` (the
engine joins the trainer's process group; TRL's colocate mode does the same); in a single process
the engine core runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) unless
``engine_in_process: false``.

**Weight sync.** After each optimizer step every parameter of the policy, under its Hugging Face
name (the parts wrappers add, ``_orig_mod.`` from ``torch.compile``, ``module.`` from DDP,
``_fsdp_wrapped_module.`` / ``_checkpoint_wrapped_module.``, removed), is gathered to a full tensor
(``DTensor.full_tensor()`` for FSDP2 or tensor parallelism: a collective every rank joins, in the
same order) and handed to the engine model's ``load_weights`` in chunks of about ``chunk_bytes``,
so at most one chunk of gathered weights is alive at a time. vLLM's weight loaders map the Hugging
Face names onto its fused layers (``qkv_proj``, ``gate_up_proj``), slice them for tensor
parallelism and cast them to the engine's dtype. The engine's model is reached in-process when its
worker lives in this process (vLLM V0, V1 in-process, or the external launcher):
``llm.llm_engine[.engine_core.engine_core].model_executor.driver_worker[.worker].model_runner``
``.model`` (the path TRL's colocate mode and verl's sharding manager use). Otherwise each chunk
goes through ``LLM.apply_model(fn)``, vLLM's documented way to run ``fn(model)`` in every worker:
the tensors are moved to the CPU and pickled to the workers, which is correct but slow.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import torch

from mgs.dataclass_config import option
from mgs.errors import ConfigError, MgsError

__all__ = [
    "INSTALL_HINT",
    "WRAPPER_PARTS",
    "LoadWeights",
    "VLLMConfig",
    "engine_kwargs",
    "engine_model",
    "full_weight_chunks",
    "hf_name",
    "import_vllm",
    "push_weights",
]

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'mgs[vllm]'"
TESTED_VERSIONS = ((0, 8), (0, 11))  # major.minor range the code was written against
# Parts of parameter names that wrappers add (torch.compile, FSDP1, activation checkpointing).
WRAPPER_PARTS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")


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
        False, help="Free the engine's GPU memory between generations (CUDA only)."
    )
    sleep_level: int = option(
        1, help="1: weights to CPU RAM, KV cache dropped; 2: both dropped (re-synced on wake)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="Engine weights dtype; auto: the checkpoint's torch_dtype."
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
        "are copied in place; false: weights are pickled to its workers through apply_model.",
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


def import_vllm() -> SimpleNamespace:
    """``vllm.LLM``, ``SamplingParams``, ``TokensPrompt``; a clear error when vLLM is missing."""
    try:
        import vllm
    except ImportError as exc:
        raise MgsError(
            f"rollout.backend: vllm needs vLLM, which is not installed ({exc}); run {INSTALL_HINT} "
            "on a CUDA machine, or use rollout.backend: hf"
        ) from None
    version = str(getattr(vllm, "__version__", "0"))
    found = re.match(r"(\d+)\.(\d+)", version)
    major_minor = (int(found[1]), int(found[2])) if found else (0, 0)
    if major_minor < TESTED_VERSIONS[0]:
        raise MgsError(f"vLLM {version} is too old for mgs; run {INSTALL_HINT} (vllm>=0.8)")
    if major_minor > TESTED_VERSIONS[1]:
        log.warning("vLLM %s is newer than the 0.8-0.11 this backend was written for", version)
    try:
        from vllm.inputs import TokensPrompt
    except ImportError:  # TokensPrompt is a TypedDict: a plain dict is the same request
        TokensPrompt = dict
    return SimpleNamespace(
        LLM=vllm.LLM, SamplingParams=vllm.SamplingParams, TokensPrompt=TokensPrompt
    )


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def engine_kwargs(cfg: VLLMConfig, model: torch.nn.Module, tokenizer: Any) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for a colocated engine of ``model`` (sets vLLM's env vars)."""
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
    if _world_size() > 1:
        if cfg.tensor_parallel_size != 1:
            raise MgsError(
                f"rollout.vllm.tensor_parallel_size={cfg.tensor_parallel_size} under torchrun: "
                "mgs runs one engine per rank, so write tensor_parallel_size: 1 (a 7-8B model "
                "fits one 80 GB GPU), or run a single process with tensor_parallel_size > 1"
            )
        kwargs["distributed_executor_backend"] = "external_launcher"
    elif cfg.engine_in_process:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    else:  # apply_model ships a pickled callable to the engine process
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    return kwargs


def hf_name(name: str) -> str:
    """``name`` without the parts wrappers add: the name in the Hugging Face checkpoint."""
    return ".".join(p for p in name.split(".") if p not in WRAPPER_PARTS)


def full_weight_chunks(
    model: torch.nn.Module, chunk_bytes: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The policy's parameters as ``(Hugging Face name, full tensor)`` lists of about
    ``chunk_bytes`` each (a larger tensor is a chunk of its own). Tied parameters appear once.
    DTensor parameters are all-gathered, so every rank must run the whole iteration."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module  # its parameters are named module.<name>
    chunk: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, param in model.named_parameters():
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


def engine_model(llm: Any) -> Any | None:
    """The engine's ``nn.Module`` when its worker lives in this process, else None."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(getattr(engine, "engine_core", None), "engine_core", None)  # V1 InprocClient
    for executor in (
        getattr(engine, "model_executor", None),
        getattr(core, "model_executor", None),
    ):
        worker = getattr(executor, "driver_worker", None)  # a WorkerWrapperBase (or the worker)
        for holder in (getattr(worker, "worker", None), worker):
            runner = getattr(holder, "model_runner", None)
            get_model = getattr(runner, "get_model", None)  # unwraps CUDA-graph wrappers
            model = get_model() if callable(get_model) else getattr(runner, "model", None)
            if model is not None and hasattr(model, "load_weights"):
                return model
    return None


class LoadWeights:
    """Picklable ``apply_model`` callable: load one chunk of ``(name, CPU tensor)`` pairs."""

    def __init__(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        self.weights = weights

    def __call__(self, model: torch.nn.Module) -> None:
        model.load_weights(self.weights)  # type: ignore[operator]  # returns nothing to ship back


def push_weights(llm: Any, model: torch.nn.Module, chunk_bytes: int) -> int:
    """Load ``model``'s full weights into ``llm``'s model(s); returns the number of chunks."""
    target = engine_model(llm)
    count = 0
    for chunk in full_weight_chunks(model, chunk_bytes):
        if target is not None:
            target.load_weights(chunk)
        else:
            llm.apply_model(LoadWeights([(name, t.cpu()) for name, t in chunk]))
        count += 1
        del chunk  # the gathered tensors of this chunk can be freed before the next is gathered
    return count
