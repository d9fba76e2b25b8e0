"""VLLMBackend against a fake vLLM: engine arguments, requests, outputs, parity with HF, errors,
and the process-wide facts of vLLM (environment read once, one sleep-mode engine, RNG reseeded)."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from test_rl_vllm_fakes import (
    ENGINE_ARGS_FIELDS,
    LLM_INIT_PARAMS,
    FakeCompletionOutput,
    FakeLLM,
    greedy_sampler,
    install,
)

from mgs.errors import ConfigError, DataError, MgsError
from mgs.rl import vllm_engine
from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.rollout import RolloutBackend, SamplingConfig
from mgs.rl.vllm_backend import VLLMBackend, VLLMConfig, request_seed

SMALL = dict(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)  # sizes of this file's tiny policies
PROMPTS = ["What is 2+2?", "Hi", "Name a colour:"]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model(tiny_policy):
    policy = tiny_policy(**SMALL)
    policy.name_or_path = "/models/tiny-policy"  # what from_pretrained sets
    return policy


@pytest.fixture
def fake(monkeypatch, tokenizer):
    return install(monkeypatch, tokenizer)


def _backend(model, tokenizer, **options) -> VLLMBackend:
    return VLLMBackend(model, tokenizer, max_prompt_tokens=32, config=VLLMConfig(**options))


def _ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_importing_never_imports_vllm(tmp_path) -> None:
    broken = tmp_path / "vllm"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise RuntimeError('vllm was imported eagerly')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'src'}"}
    code = "import mgs.rl, mgs.rl.backends, mgs.rl.vllm_backend, mgs.rl.vllm_engine"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_missing_or_old_vllm_says_how_to_install(monkeypatch, model, tokenizer, caplog) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MgsError, match=r"pip install 'mgs\[vllm\]'"):
        _backend(model, tokenizer)
    for old in ("0.11.2", "0.32.1"):  # the V0-era API and the last release before 0.33
        install(monkeypatch, tokenizer, version=old)
        with pytest.raises(MgsError, match=r"too old.*0\.33-0\.34.*pip install 'mgs\[vllm\]'"):
            _backend(model, tokenizer)
    install(monkeypatch, tokenizer, version="0.34.2")
    assert isinstance(_backend(model, tokenizer), RolloutBackend)
    install(monkeypatch, tokenizer, version="0.35.0")
    with caplog.at_level(logging.WARNING, logger="mgs.rl.vllm_engine"):
        assert isinstance(_backend(model, tokenizer), RolloutBackend)
    assert "0.35.0 is newer" in caplog.text


def test_engine_arguments(fake, model, tokenizer) -> None:
    backend = _backend(
        model, tokenizer, gpu_memory_utilization=0.3, max_model_len=64, max_num_seqs=32, seed=7
    )
    assert backend.llm is FakeLLM.last
    assert FakeLLM.last.kwargs == {
        "model": "/models/tiny-policy",
        "tokenizer": "/models/tiny-policy",  # the tiny tokenizer has no path of its own
        "dtype": "auto",
        "gpu_memory_utilization": 0.3,
        "tensor_parallel_size": 1,
        "enable_sleep_mode": False,
        "enforce_eager": False,
        "load_format": "auto",
        "seed": 7,
        "enable_prefix_caching": True,
        "max_model_len": 64,
        "max_num_seqs": 32,
    }
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # engine core in this process
    assert "VLLM_ALLOW_INSECURE_SERIALIZATION" not in os.environ
    assert backend.in_process  # weights reach the worker without a copy
    assert backend.pad_id == tokenizer.pad_token_id and backend.eos_ids == [tokenizer.eos_token_id]
    # Every argument is one of LLM's own or an EngineArgs field LLM passes on (recorded copy).
    assert set(FakeLLM.last.kwargs) - {"model"} <= LLM_INIT_PARAMS | ENGINE_ARGS_FIELDS
    _backend(model, tokenizer, model_path="/ckpt")
    assert FakeLLM.last.kwargs["model"] == "/ckpt"


def test_worker_processes_get_the_insecure_serialization_flag(fake, model, tokenizer) -> None:
    backend = _backend(model, tokenizer, engine_in_process=False)
    assert os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] == "1"  # apply_model's callable
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ and not backend.in_process


def test_vllm_reads_its_environment_once_per_process(fake, model, tokenizer) -> None:
    _backend(model, tokenizer)  # in-process engine core: VLLM_ENABLE_V1_MULTIPROCESSING=0
    _backend(model, tokenizer, seed=3)  # same environment: fine
    with pytest.raises(MgsError, match=r"VLLM_ALLOW_INSECURE_SERIALIZATION=1.*new process"):
        _backend(model, tokenizer, engine_in_process=False)


def test_one_sleep_mode_engine_per_process(fake, model, tokenizer) -> None:
    first = _backend(model, tokenizer, enable_sleep_mode=True)
    _backend(model, tokenizer)  # without sleep mode: fine
    with pytest.raises(MgsError, match="one per process"):
        _backend(model, tokenizer, enable_sleep_mode=True)
    first.close()
    assert _backend(model, tokenizer, enable_sleep_mode=True).llm is FakeLLM.last


class BrokenLLM(FakeLLM):
    """An engine that fails to start (no GPU memory left, say)."""

    def __init__(self, model, **kwargs) -> None:
        raise RuntimeError("CUDA out of memory")


def test_an_engine_that_fails_to_start_frees_the_sleep_mode_claim(monkeypatch, model, tokenizer):
    install(monkeypatch, tokenizer, llm=BrokenLLM)
    with pytest.raises(RuntimeError, match="out of memory"):
        _backend(model, tokenizer, enable_sleep_mode=True)
    monkeypatch.setitem(sys.modules["vllm"].__dict__, "LLM", FakeLLM)
    monkeypatch.setattr(FakeLLM, "tokenizer", tokenizer)
    assert _backend(model, tokenizer, enable_sleep_mode=True).llm is FakeLLM.last


def test_building_the_engine_keeps_the_trainers_random_state(fake, model, tokenizer) -> None:
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    _backend(model, tokenizer, seed=5)  # the fake engine reseeds everything with 5, as vLLM does
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


@pytest.mark.parametrize(
    ("options", "engine", "message"),
    [
        ({}, {"engine_dtype": torch.float16}, r"in torch\.float16"),  # auto -> a non-bf16 platform
        ({"dtype": "bfloat16"}, {"quantization": "fp8"}, r"quantized \(fp8\)"),
    ],
)
def test_engines_load_weights_cannot_update_are_refused(
    fake, model, tokenizer, monkeypatch, options, engine, message
) -> None:
    for name, value in engine.items():
        monkeypatch.setattr(FakeLLM, name, value)
    with pytest.raises(MgsError, match=message + r".*rollout\.vllm\.dtype: bfloat16"):
        _backend(model, tokenizer, enable_sleep_mode=True, **options)
    monkeypatch.setattr(FakeLLM, "engine_dtype", torch.bfloat16)
    monkeypatch.setattr(FakeLLM, "quantization", None)
    # The refused engine was closed, which ended its claim on the process's sleep mode.
    assert _backend(model, tokenizer, enable_sleep_mode=True).llm is FakeLLM.last


def test_policy_without_a_checkpoint_directory_is_refused(fake, tokenizer, tiny_policy) -> None:
    with pytest.raises(MgsError, match=r"rollout\.backend: hf"):
        _backend(tiny_policy(**SMALL), tokenizer)


def test_torchrun_runs_one_engine_per_rank(fake, model, tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(vllm_engine, "_world_size", lambda: 4)
    _backend(model, tokenizer)
    assert FakeLLM.last.kwargs["distributed_executor_backend"] == "external_launcher"
    with pytest.raises(MgsError, match="tensor_parallel_size: 1"):
        _backend(model, tokenizer, tensor_parallel_size=2)


@pytest.mark.parametrize(("top_k", "sent"), [(0, -1), (7, 7)])
def test_requests_are_token_ids_with_the_sampling_config(fake, model, tokenizer, top_k, sent):
    cfg = SamplingConfig(
        n=3, temperature=0.7, top_p=0.9, top_k=top_k, max_new_tokens=5, stop=["</response>"]
    )
    batch = _backend(model, tokenizer).generate(PROMPTS[:2], cfg, seed=11)
    ((name, requests, params, use_tqdm),) = FakeLLM.last.calls
    assert name == "generate" and use_tqdm is False
    # one request per rollout: the rollouts of a prompt share its prefix cache, not a random stream
    assert requests == [
        {"prompt_token_ids": _ids(tokenizer, p)} for p in PROMPTS[:2] for _ in "abc"
    ]
    for r, p in enumerate(params):
        assert p.kwargs == {
            "n": 1,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": sent,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "max_tokens": 5,
            "stop": ["</response>"],
            "stop_token_ids": [tokenizer.eos_token_id],
            "include_stop_str_in_output": True,
            "seed": request_seed(11, r),  # prompt i, rollout j: key i * n + j
        }
    assert batch.n == 3 and batch.prompt_index == [0, 0, 0, 1, 1, 1]
    for c in batch.completions:
        assert c.prompt_ids == _ids(tokenizer, PROMPTS[c.prompt_index])


def test_seeds_are_per_rollout_and_follow_the_prompt_keys(fake, model, tokenizer) -> None:
    seeds = [request_seed(3, i) for i in range(256)]
    assert len(set(seeds)) == 256 and all(0 <= s < 2**30 for s in seeds)
    assert seeds == [request_seed(3, i) for i in range(256)]
    assert seeds[:8] != [request_seed(4, i) for i in range(8)]
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=6, stop=[])
    backend = _backend(model, tokenizer)
    first, again = (backend.generate(PROMPTS, cfg, seed=3) for _ in range(2))
    assert first.completions == again.completions
    assert first.completions != backend.generate(PROMPTS, cfg, seed=4).completions
    assert first.completions[0] != first.completions[1]  # the n rollouts of a prompt differ
    # A rollout depends on (seed, key, j), not on the rest of the batch (e.g. a rank's shard).
    whole = backend.generate(PROMPTS, cfg, seed=3, keys=[10, 11, 12])
    alone = backend.generate(PROMPTS[1:2], cfg, seed=3, keys=[11])
    assert [c.completion_ids for c in alone.completions] == [
        c.completion_ids for c in whole.completions[2:4]
    ]
    assert whole.completions[2:4] != first.completions[2:4]  # key 11 is not key 1
    with pytest.raises(ValueError, match="2 keys for 3 prompts"):
        backend.generate(PROMPTS, cfg, seed=3, keys=[1, 2])


def test_greedy_sends_one_request_per_prompt_and_repeats_it(fake, model, tokenizer) -> None:
    cfg = SamplingConfig(n=4, temperature=0.0, top_p=0.5, top_k=3, max_new_tokens=6, stop=[])
    batch = _backend(model, tokenizer).generate(PROMPTS[:2], cfg, seed=0)
    params = FakeLLM.last.calls[0][2]  # one request per prompt, not per rollout
    assert [(p.n, p.temperature, p.top_p, p.top_k) for p in params] == [(1, 0.0, 1.0, -1)] * 2
    assert batch.prompt_index == [0] * 4 + [1] * 4
    assert all(c == batch.completions[0] for c in batch.completions[:4])
    assert batch.completions[4] != batch.completions[0]


def _stop_inside_completions(tokenizer, prompts, rows) -> str:
    """A two-token string the greedy policy writes inside a completion (after its start) that
    occurs in no prompt + completion text before the completion starts: HF's stop-string check
    also scans the prompt, vLLM's only the output."""
    special = set(tokenizer.all_special_ids)
    texts = [(p, p + tokenizer.decode(r)) for p, r in zip(prompts, rows)]
    for row in rows:
        for k in range(1, len(row) - 1):
            if {row[k], row[k + 1]}.isdisjoint(special):
                stop = tokenizer.decode(row[k : k + 2])
                if all(stop not in full or full.index(stop) >= len(p) for p, full in texts):
                    return stop
    raise AssertionError("no usable stop string in the greedy rows")


def test_greedy_rollouts_equal_the_hf_backends(monkeypatch, model, tokenizer) -> None:
    install(monkeypatch, tokenizer, sampler=greedy_sampler(model))
    hf = HFGenerateBackend(model, tokenizer, max_prompt_tokens=32, micro_batch_size=4)
    free_cfg = SamplingConfig(n=1, temperature=0.0, max_new_tokens=12, stop=[])
    rows = [c.completion_ids for c in hf.generate(PROMPTS, free_cfg, seed=0).completions]
    stop = _stop_inside_completions(tokenizer, PROMPTS, rows)
    cfg = SamplingConfig(n=2, temperature=0.0, max_new_tokens=12, stop=[stop])
    expected = hf.generate(PROMPTS, cfg, seed=0)
    got = _backend(model, tokenizer).generate(PROMPTS, cfg, seed=0)
    assert [c.finish_reason for c in expected.completions[::2]].count("stop") >= 1
    assert [c.finish_reason for c in expected.completions[::2]].count("length") >= 1
    assert got.completions == expected.completions
    for key, tensor in got.to_tensors(tokenizer.pad_token_id).items():
        assert tensor.equal(expected.to_tensors(tokenizer.pad_token_id)[key]), key


class ScriptedLLM(FakeLLM):
    """Returns SCRIPT[request index] (ids, vLLM's finish reason) for each request."""

    script: ClassVar[list[tuple[list[int], str]]] = []

    def sample(self, ids, params, k, request_index):
        row, reason = self.script[request_index]
        return FakeCompletionOutput(k, "(vLLM's text is not used)", row, reason)


def test_outputs_are_recut_like_hf(monkeypatch, model, tokenizer) -> None:
    install(monkeypatch, tokenizer, llm=ScriptedLLM)
    eos = tokenizer.eos_token_id
    abc, tail = _ids(tokenizer, "ab</response>"), _ids(tokenizer, "xyz")
    script = [
        (abc + tail, "stop"),  # an engine that ran past the stop string
        ([*_ids(tokenizer, "hi"), eos, *tail], "stop"),  # ... and past EOS
        (_ids(tokenizer, "hello"), "length"),
        (_ids(tokenizer, "odd"), "stop"),  # vLLM stopped on something we cannot see
    ]
    monkeypatch.setattr(ScriptedLLM, "script", script)
    cfg = SamplingConfig(n=1, temperature=1.0, max_new_tokens=5, stop=["</response>"])
    batch = _backend(model, tokenizer).generate(["p1", "p2", "p3", "p4"], cfg, seed=0)
    firsts = batch.completions
    assert [c.completion_ids for c in firsts] == [
        abc,
        [*_ids(tokenizer, "hi"), eos],
        _ids(tokenizer, "hello"),
        _ids(tokenizer, "odd"),
    ]
    assert [c.finish_reason for c in firsts] == ["stop", "stop", "length", "stop"]
    assert [c.text for c in firsts] == ["ab</response>", "hi", "hello", "odd"]
    for c in batch.completions:
        assert c.text == tokenizer.decode(c.completion_ids, skip_special_tokens=True)
    monkeypatch.setattr(ScriptedLLM, "script", [(abc, "abort")])
    with pytest.raises(RuntimeError, match="abort"):
        _backend(model, tokenizer).generate(["p1"], cfg, seed=0)


def test_prompt_and_length_errors(fake, model, tokenizer) -> None:
    backend = _backend(model, tokenizer, max_model_len=40)
    cfg = SamplingConfig(n=1, max_new_tokens=8, stop=[])
    with pytest.raises(DataError, match="max_prompt_tokens=32"):
        backend.generate(["x" * 33], cfg, seed=0)
    with pytest.raises(ValueError, match="at least one prompt"):
        backend.generate([], cfg, seed=0)
    with pytest.raises(ConfigError, match="raise it to 41"):
        backend.generate(["Hi"], SamplingConfig(n=1, max_new_tokens=9, stop=[]), seed=0)
    assert backend.generate(["Hi"], cfg, seed=0).num_prompts == 1  # 32 + 8 fits in 40
