"""Fakes of vLLM's offline API, shared by the vLLM backend tests (this module holds no tests).

``FakeLLM`` stands in for ``vllm.LLM`` as far as the backend uses it: it records its constructor
arguments and every call (generate, sleep, wake_up, reset_prefix_cache), exposes its model where
vLLM's in-process engines do (``llm_engine.model_executor.driver_worker.worker.model_runner.model``)
and produces outputs with ``sampler(prompt_ids, params, sample_index) -> token ids``, cut by
:func:`vllm_like` with vLLM's stop rules.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch


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


def in_process_engine(model: Any) -> SimpleNamespace:
    """``llm_engine`` of a V1 in-process engine (the V0-compatible ``model_executor`` alias)."""
    runner = SimpleNamespace(model=model)
    return SimpleNamespace(
        model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(worker=SimpleNamespace(model_runner=runner))
        )
    )


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

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.model = RecordingModel()
        self.llm_engine = in_process_engine(self.model)
        FakeLLM.last = self

    def generate(self, prompts, sampling_params=None, *, use_tqdm: bool = True):
        self.calls.append(("generate", prompts, sampling_params, use_tqdm))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            samples = [self.sample(ids, params, k, len(outputs)) for k in range(params.n)]
            outputs.append(FakeRequestOutput(ids, samples[::-1]))
        return outputs

    def sample(self, ids, params, k: int, request_index: int) -> FakeCompletionOutput:
        return vllm_like(type(self).sampler(ids, params, k), params, type(self).tokenizer, k)

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", level))

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.calls.append(("wake_up", tags))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache",))


def install(monkeypatch, tokenizer, *, llm=FakeLLM, version: str = "0.10.1", sampler=None):
    """Make ``import vllm`` return the fakes for this test; the engine env vars are restored."""
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
    monkeypatch.setattr(llm, "tokenizer", tokenizer)
    monkeypatch.setattr(llm, "sampler", staticmethod(sampler or random_sampler(len(tokenizer))))
    return vllm
