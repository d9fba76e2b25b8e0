"""Fakes of vLLM 0.33's offline API, shared by the vLLM backend tests, and the check that their
signatures are vLLM's.

``FakeLLM`` stands in for ``vllm.LLM`` as far as the backend uses it, with the behaviour the
backend relies on: ``sleep`` releases the weights and the KV cache *and pauses the scheduler*,
which resumes only once every tag is awake again (``llm_engine.is_sleeping()`` is True until then,
and a ``generate`` call meanwhile would hang in vLLM: here it raises); a level-2 sleep discards the
weights; ``apply_model(fn)`` runs ``fn`` on the worker's model (in this process: the very tensors
it is given); building the engine reseeds the global random generators, as vLLM's in-process
worker does. Outputs come from ``sampler(prompt_ids, params, sample_index) -> token ids``, cut by
:func:`vllm_like` with vLLM's stop rules.

``VLLM_SIGNATURES`` is a recorded copy of the signatures these fakes mirror, as read in vLLM's
source (``vllm/entrypoints/llm.py``: ``LLM``; ``vllm/v1/engine/llm_engine.py``: ``LLMEngine``;
``vllm/engine/arg_utils.py``: ``EngineArgs`` fields; ``vllm/lora/request.py``: ``LoRARequest``),
see docs/vllm.md. A fake drifting from it fails ``test_fakes_mirror_vllms_signatures``.

LoRA (``enable_lora``): ``generate(..., lora_request=LoRARequest(...))`` serves the adapter saved
at the request's ``lora_path``, read when a request first names its ``lora_int_id`` (vLLM caches
adapters by id); a request for an adapter whose rank exceeds ``max_lora_rank``, or any LoRA
request to an engine built without ``enable_lora``, raises as vLLM does. ``LoRARequest`` checks
its id (> 0) and path (not empty) as vLLM's ``__post_init__`` does.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import random
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from mgs.rl import vllm_engine

# Recorded from vLLM's source (annotations dropped; `self` kept).
VLLM_SIGNATURES = {
    "LLM.generate": "(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, "
    "priority=None, tokenization_kwargs=None)",
    "LLM.sleep": "(self, level=1, mode='abort')",
    "LLM.wake_up": "(self, tags=None)",
    "LLM.apply_model": "(self, func)",
    "LLM.collective_rpc": "(self, method, timeout=None, args=(), kwargs=None)",
    "LLM.reset_prefix_cache": "(self, reset_running_requests=False, reset_connector=False)",
    "LLMEngine.is_sleeping": "(self)",
    "LoRARequest": "(lora_name, lora_int_id, lora_path='', base_model_name=None, "
    "tensorizer_config_dict=None)",
}
# vllm.config.lora.MaxLoRARanks: the values max_lora_rank may take.
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# LLM.__init__'s named keyword parameters the backend passes, and the EngineArgs fields it passes
# through LLM's **kwargs.
LLM_INIT_PARAMS = {
    "tokenizer",
    "tensor_parallel_size",
    "dtype",
    "seed",
    "gpu_memory_utilization",
    "enforce_eager",
}
ENGINE_ARGS_FIELDS = {
    "enable_sleep_mode",
    "load_format",
    "enable_prefix_caching",
    "max_model_len",
    "max_num_seqs",
    "distributed_executor_backend",
    "enable_lora",
    "max_lora_rank",
    "max_loras",
}
WAKE_TAGS = ("weights", "kv_cache", "scheduling")


def test_fakes_mirror_vllms_signatures() -> None:
    for name, recorded in VLLM_SIGNATURES.items():
        if name == "LoRARequest":  # a dataclass here: drop its annotations as the record does
            sig = inspect.signature(FakeLoRARequest)
            params = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
            plain = sig.replace(parameters=params, return_annotation=sig.empty)
            assert str(plain) == recorded, name
            continue
        owner, method = name.split(".")
        fake = {"LLM": FakeLLM, "LLMEngine": FakeEngine}[owner]
        assert str(inspect.signature(getattr(fake, method))) == recorded, name


@dataclass(frozen=True)
class FakeLoRARequest:
    """``vllm.lora.request.LoRARequest`` (a msgspec Struct in vLLM): the adapter a request uses."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""
    base_model_name: str | None = None
    tensorizer_config_dict: dict | None = None

    def __post_init__(self):
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        vars(self).update(kwargs)


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]


class RecordingModel:
    """The engine's model: records every ``load_weights`` call (a list of (name, tensor))."""

    def __init__(self) -> None:
        self.loads: list[list[tuple[str, torch.Tensor]]] = []

    def load_weights(self, weights) -> set[str]:
        chunk = list(weights)
        self.loads.append(chunk)
        return {name for name, _ in chunk}

    def received(self) -> dict[str, torch.Tensor]:
        names = [name for chunk in self.loads for name, _ in chunk]
        assert len(names) == len(set(names)), "a weight was pushed twice"
        return {name: t for chunk in self.loads for name, t in chunk}


class FakeEngine:
    """``LLM.llm_engine``: the sleep state and the model config the backend reads."""

    def __init__(self, dtype: torch.dtype, quantization: str | None) -> None:
        self.asleep: set[str] = set()  # memory tags released by sleep()
        self.paused = False  # the scheduler: paused by sleep(), resumed once all tags are awake
        self.model_config = SimpleNamespace(dtype=dtype, quantization=quantization)
        self.engine_core = SimpleNamespace()

    def is_sleeping(self):
        return self.paused or bool(self.asleep)


def vllm_like(raw: list[int], params: FakeSamplingParams, tokenizer, index: int):
    """What vLLM returns for a row sampled as ``raw``: it ends at a stop token (kept) or at the
    token completing a stop string (text cut after the string, kept), else at max_tokens."""
    out: list[int] = []
    for token in raw[: params.max_tokens]:
        out.append(token)
        text = tokenizer.decode(out, skip_special_tokens=True)
        if token in params.stop_token_ids:
            return FakeCompletionOutput(index, text, out, "stop", None)
        hits = [(text.index(s) + len(s), s) for s in params.stop if s in text]
        if hits:
            end, stop = min(hits)
            return FakeCompletionOutput(index, text[:end], out, "stop", stop)
    return FakeCompletionOutput(
        index, tokenizer.decode(out, skip_special_tokens=True), out, "length"
    )


def random_sampler(vocab_size: int, length: int = 6):
    """Rows of random token ids, a function of (request seed, sample index) only."""

    def sample(prompt_ids: list[int], params: FakeSamplingParams, k: int) -> list[int]:
        gen = torch.Generator().manual_seed(params.seed + k)
        return torch.randint(6, vocab_size, (length,), generator=gen).tolist()  # no specials

    return sample


def greedy_sampler(model: torch.nn.Module):
    """Argmax decoding with a real Hugging Face model (full forward each step, no cache)."""

    def sample(prompt_ids: list[int], params: FakeSamplingParams, k: int) -> list[int]:
        out: list[int] = []
        with torch.no_grad():
            for _ in range(params.max_tokens):
                logits = model(input_ids=torch.tensor([prompt_ids + out])).logits[0, -1]
                out.append(int(logits.argmax()))
        return out

    return sample


class FakeLLM:
    """``vllm.LLM`` as the backend sees it; ``FakeLLM.last`` is the latest instance."""

    last: FakeLLM | None = None
    tokenizer: Any = None  # set by install(): the detokenizer of vllm_like
    sampler: Any = None  # set by install() or a test
    engine_dtype: torch.dtype = torch.bfloat16  # what dtype="auto" resolves to
    quantization: str | None = None

    def __init__(self, model, **kwargs: Any) -> None:
        self.kwargs = {"model": model, **kwargs}
        self.calls: list[tuple] = []
        self.model = RecordingModel()
        self.discarded = False  # weights dropped by a level-2 sleep and not pushed since
        self.served: dict[str, torch.Tensor] = {}  # pushed weights the last generate() used
        self.adapters: dict[int, tuple[dict, dict]] = {}  # lora_int_id -> (config, tensors)
        self.lora_requests: list = []  # the lora_request of every generate() call
        self.active_adapter: int | None = None  # the id the last generate() served
        dtype = kwargs.get("dtype", "auto")
        resolved = type(self).engine_dtype if dtype == "auto" else getattr(torch, dtype)
        self.llm_engine = FakeEngine(resolved, type(self).quantization)
        seed = kwargs.get("seed", 0)  # vLLM's worker: set_random_seed(model_config.seed)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        FakeLLM.last = self

    def generate(
        self,
        prompts,
        sampling_params=None,
        *,
        use_tqdm=True,
        lora_request=None,
        priority=None,
        tokenization_kwargs=None,
    ):
        if self.llm_engine.is_sleeping():
            raise RuntimeError("generate() on a sleeping engine: vLLM would wait forever")
        if self.discarded:
            raise RuntimeError("generate() after a level-2 sleep without pushing the weights")
        self.served = self.model.received()  # the weights pushed so far, which this call uses
        self.lora_requests.append(lora_request)
        self.active_adapter = None if lora_request is None else self._adapter(lora_request)
        self.calls.append(("generate", prompts, sampling_params, use_tqdm))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            samples = [self.sample(ids, params, k, len(outputs)) for k in range(params.n)]
            outputs.append(FakeRequestOutput(ids, samples[::-1]))
        return outputs

    def _adapter(self, request: FakeLoRARequest) -> int:
        """Load the adapter a request names, once per id (vLLM's LRU cache of ``max_loras``)."""
        if not self.kwargs.get("enable_lora"):
            raise ValueError(f"LoRA is not enabled, but {request.lora_name} was requested")
        if request.lora_int_id not in self.adapters:
            path = Path(request.lora_path)
            config = json.loads((path / "adapter_config.json").read_text())
            max_rank = self.kwargs.get("max_lora_rank", 16)
            if config["r"] > max_rank:
                raise ValueError(
                    f"LoRA rank {config['r']} is greater than max_lora_rank {max_rank}"
                )
            tensors = load_file(str(path / "adapter_model.safetensors"))
            if len(self.adapters) >= self.kwargs.get("max_loras", 1):
                self.adapters.pop(next(iter(self.adapters)))  # evict the least recently added
            self.adapters[request.lora_int_id] = (config, tensors)
        return request.lora_int_id

    def sample(self, ids, params, k: int, request_index: int) -> FakeCompletionOutput:
        return vllm_like(type(self).sampler(ids, params, k), params, type(self).tokenizer, k)

    def sleep(self, level=1, mode="abort"):
        assert level in (0, 1, 2) and mode in ("abort", "wait", "keep")
        self.calls.append(("sleep", level))
        self.llm_engine.paused = True
        if level == 0:
            return
        self.llm_engine.asleep = {"weights", "kv_cache"}
        if level == 2:  # weights discarded: a generation would use garbage until re-pushed
            self.model.loads.clear()
            self.discarded = True

    def wake_up(self, tags=None):
        assert tags is None or set(tags) <= set(WAKE_TAGS), tags
        self.calls.append(("wake_up", tags))
        self.llm_engine.asleep -= {"weights", "kv_cache"} if tags is None else set(tags)
        if not self.llm_engine.asleep:  # the scheduler resumes once everything is awake
            self.llm_engine.paused = False

    def apply_model(self, func):
        self.calls.append(("apply_model",))
        self.discarded = False
        return [func(self.model)]  # the worker lives in this process

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        raise AssertionError("the backend does not use collective_rpc")

    def reset_prefix_cache(self, reset_running_requests=False, reset_connector=False):
        self.calls.append(("reset_prefix_cache",))
        return True


def lora_greedy_sampler(base: torch.nn.Module):
    """:func:`greedy_sampler` of the engine's base model with the adapter ``FakeLLM.last`` serves
    (built with peft from the adapter's saved config and tensors, merged)."""
    import peft

    models: dict[int, torch.nn.Module] = {}

    def sample(prompt_ids: list[int], params: FakeSamplingParams, k: int) -> list[int]:
        engine = FakeLLM.last
        if engine.active_adapter is None:
            return greedy_sampler(base)(prompt_ids, params, k)
        if engine.active_adapter not in models:
            config, tensors = engine.adapters[engine.active_adapter]
            known = {f.name for f in dataclasses.fields(peft.LoraConfig)}
            lora = peft.LoraConfig(**{k: v for k, v in config.items() if k in known})
            model = peft.get_peft_model(copy.deepcopy(base), lora)
            peft.set_peft_model_state_dict(model, tensors)
            models[engine.active_adapter] = model.merge_and_unload()
        return greedy_sampler(models[engine.active_adapter])(prompt_ids, params, k)

    return sample


def install(monkeypatch, tokenizer, *, llm=FakeLLM, version: str = "0.33.0", sampler=None):
    """Make ``import vllm`` return the fakes for this test, with a fresh process state (no engine
    built yet: environment not frozen, no sleep-mode engine); the env vars are restored after."""
    vllm = types.ModuleType("vllm")
    vllm.__version__ = version
    vllm.LLM = llm
    vllm.SamplingParams = FakeSamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # a TypedDict in vLLM
    vllm.inputs = inputs
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    lora.request = request
    vllm.lora = lora
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_ALLOW_INSECURE_SERIALIZATION"):
        monkeypatch.setenv(name, "unset")  # remembers the original value for teardown
        monkeypatch.delenv(name)
    monkeypatch.setattr(vllm_engine, "_FROZEN_ENV", None)
    monkeypatch.setattr(vllm_engine, "_SLEEP_MODE_OWNER", None)
    monkeypatch.setattr(llm, "tokenizer", tokenizer)
    monkeypatch.setattr(llm, "sampler", staticmethod(sampler or random_sampler(len(tokenizer))))
    return vllm
