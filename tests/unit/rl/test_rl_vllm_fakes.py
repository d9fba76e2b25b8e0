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
``vllm/engine/arg_utils.py``: ``EngineArgs`` fields), see docs/vllm.md. A fake drifting from it
fails ``test_fakes_mirror_vllms_signatures``.
"""

from __future__ import annotations

import inspect
import random
import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

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
}
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
}
WAKE_TAGS = ("weights", "kv_cache", "scheduling")


def test_fakes_mirror_vllms_signatures() -> None:
    for name, recorded in VLLM_SIGNATURES.items():
        owner, method = name.split(".")
        fake = {"LLM": FakeLLM, "LLMEngine": FakeEngine}[owner]
        assert str(inspect.signature(getattr(fake, method))) == recorded, name


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
        self.calls.append(("generate", prompts, sampling_params, use_tqdm))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            samples = [self.sample(ids, params, k, len(outputs)) for k in range(params.n)]
            outputs.append(FakeRequestOutput(ids, samples[::-1]))
        return outputs

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
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_ALLOW_INSECURE_SERIALIZATION"):
        monkeypatch.setenv(name, "unset")  # remembers the original value for teardown
        monkeypatch.delenv(name)
    monkeypatch.setattr(vllm_engine, "_FROZEN_ENV", None)
    monkeypatch.setattr(vllm_engine, "_SLEEP_MODE_OWNER", None)
    monkeypatch.setattr(llm, "tokenizer", tokenizer)
    monkeypatch.setattr(llm, "sampler", staticmethod(sampler or random_sampler(len(tokenizer))))
    return vllm
