"""The rollout backend registry and the vLLM engine config."""

from __future__ import annotations

import sys

import pytest
from test_rl_vllm_fakes import FakeLLM, install

from mgs.dataclass_config import describe, from_dict
from mgs.errors import ConfigError, MgsError, UnknownNameError
from mgs.rl import backends
from mgs.rl.backends import available_backends, build_backend, register_backend
from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.vllm_backend import VLLMBackend, VLLMConfig

SMALL = dict(
    hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=32
)  # sizes of this file's tiny policies


@pytest.fixture(scope="module")
def model(tiny_policy):
    policy = tiny_policy(**SMALL)
    policy.name_or_path = "/models/tiny-policy"
    return policy


def test_unknown_backend_lists_the_valid_ones(model, tokenizer) -> None:
    assert available_backends() == ["hf", "vllm"]
    with pytest.raises(
        UnknownNameError, match=r"unknown rollout backend 'sglang'; valid names: hf, vllm"
    ):
        build_backend("sglang", model, tokenizer, max_prompt_tokens=8, micro_batch_size=2)


def test_hf_backend(model, tokenizer) -> None:
    backend = build_backend("hf", model, tokenizer, max_prompt_tokens=8, micro_batch_size=3)
    assert isinstance(backend, HFGenerateBackend)
    assert (backend.model, backend.max_prompt_tokens, backend.micro_batch_size) == (model, 8, 3)


def test_vllm_backend_gets_its_options(monkeypatch, model, tokenizer) -> None:
    install(monkeypatch, tokenizer)
    options = VLLMConfig(gpu_memory_utilization=0.25, enforce_eager=True)
    backend = build_backend(
        "vllm", model, tokenizer, max_prompt_tokens=8, micro_batch_size=3, vllm_options=options
    )
    assert isinstance(backend, VLLMBackend) and backend.config is options
    assert backend.max_prompt_tokens == 8
    assert FakeLLM.last.kwargs["gpu_memory_utilization"] == 0.25
    assert FakeLLM.last.kwargs["enforce_eager"] is True
    default = build_backend("vllm", model, tokenizer, max_prompt_tokens=8, micro_batch_size=3)
    assert default.config == VLLMConfig()


def test_vllm_selected_but_missing(monkeypatch, model, tokenizer) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MgsError, match=r"pip install 'mgs\[vllm\]'"):
        build_backend("vllm", model, tokenizer, max_prompt_tokens=8, micro_batch_size=3)


def test_register_a_backend(monkeypatch, model, tokenizer) -> None:
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    seen = {}

    @register_backend("mine")
    def build(
        model,
        tokenizer,
        *,
        max_prompt_tokens,
        micro_batch_size,
        vllm_options,
        decode,
        compute_dtype,
    ):
        seen.update(max_prompt_tokens=max_prompt_tokens, micro_batch_size=micro_batch_size)
        return "engine"

    assert "mine" in available_backends()
    assert (
        build_backend("mine", model, tokenizer, max_prompt_tokens=5, micro_batch_size=7) == "engine"
    )
    assert seen == {"max_prompt_tokens": 5, "micro_batch_size": 7}


def test_vllm_config_from_yaml_and_every_field_documented() -> None:
    cfg = from_dict(
        VLLMConfig,
        {"gpu_memory_utilization": 0.35, "enable_sleep_mode": True, "max_model_len": 4992},
        "rollout.vllm",
    )
    assert (cfg.gpu_memory_utilization, cfg.enable_sleep_mode, cfg.max_model_len) == (
        0.35,
        True,
        4992,
    )
    rows = describe(VLLMConfig)
    assert rows and all(help_text for _, _, help_text in rows)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        from_dict(VLLMConfig, {"dtype": "int8"}, "rollout.vllm")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpu_memory_utilization", 0.0),
        ("gpu_memory_utilization", 1.5),
        ("tensor_parallel_size", 0),
        ("sleep_level", 3),
        ("max_model_len", 1),
        ("max_num_seqs", 0),
        ("sync_chunk_mb", 0),
    ],
)
def test_vllm_config_rejects_bad_values(field, value) -> None:
    with pytest.raises(ConfigError, match=rf"rollout\.vllm\.{field} must be"):
        VLLMConfig(**{field: value})
