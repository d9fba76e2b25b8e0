"""LoRA rollouts on vLLM (a fake engine with vLLM's LoRA API): the engine serves the frozen base
with enable_lora, each sync writes the adapter and names it in a new LoRARequest, and the greedy
rollouts equal the Hugging Face backend's on the merged policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_rl_vllm_fakes import (
    ENGINE_ARGS_FIELDS,
    LLM_INIT_PARAMS,
    MAX_LORA_RANKS,
    FakeLLM,
    FakeLoRARequest,
    install,
    lora_greedy_sampler,
)

from mgs.errors import ConfigError
from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.rollout import SamplingConfig
from mgs.rl.vllm_backend import VLLMBackend, VLLMConfig
from mgs.rl.vllm_engine import full_weight_chunks, hf_name
from mgs.rl.vllm_lora import VLLM_LORA_RANKS

peft = pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")

from mgs.models.lora import LoRAConfig, apply_lora  # noqa: E402

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
PROMPTS = ["What is 2+2?", "Hi", "Name a colour:"]
GREEDY = SamplingConfig(n=2, temperature=0.0, max_new_tokens=8)


def _policy(tiny_policy, r: int = 4, targets=("q_proj", "v_proj", "down_proj")):
    base = tiny_policy(**SMALL)
    base.name_or_path = "/models/tiny-policy"  # what from_pretrained sets: the engine's checkpoint
    return apply_lora(base, LoRAConfig(r=r, alpha=2 * r, target_modules=list(targets)))


def _train_a_little(policy, seed: int) -> None:
    """Move the adapters as training would (lora_B starts at zero: the base model)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)


def _backend(policy, tokenizer, **options) -> VLLMBackend:
    return VLLMBackend(policy, tokenizer, max_prompt_tokens=32, config=VLLMConfig(**options))


def test_lora_request_mirrors_vllm() -> None:
    assert VLLM_LORA_RANKS == MAX_LORA_RANKS  # vllm.config.lora.MaxLoRARanks (recorded copy)
    with pytest.raises(ValueError, match="id must be > 0"):
        FakeLoRARequest("a", 0, "/x")


def test_the_engine_serves_the_base_with_lora_enabled(monkeypatch, tokenizer, tiny_policy):
    install(monkeypatch, tokenizer)
    _backend(_policy(tiny_policy, r=4), tokenizer)
    kwargs = FakeLLM.last.kwargs
    assert kwargs["model"] == "/models/tiny-policy"  # the base model's checkpoint
    assert (kwargs["enable_lora"], kwargs["max_lora_rank"], kwargs["max_loras"]) == (True, 8, 1)
    assert set(kwargs) - {"model"} <= LLM_INIT_PARAMS | ENGINE_ARGS_FIELDS
    _backend(_policy(tiny_policy, r=16), tokenizer)
    assert FakeLLM.last.kwargs["max_lora_rank"] == 16  # the smallest of vLLM's ranks >= r
    plain = tiny_policy(**SMALL)
    plain.name_or_path = "/models/tiny-policy"
    _backend(plain, tokenizer)
    assert "enable_lora" not in FakeLLM.last.kwargs  # a full policy: no LoRA in the engine


def test_adapters_vllm_cannot_serve_are_refused(monkeypatch, tokenizer, tiny_policy) -> None:
    install(monkeypatch, tokenizer)
    with pytest.raises(ConfigError, match=r"linear layers only.*embed_tokens.*backend: hf"):
        _backend(_policy(tiny_policy, targets=("q_proj", "embed_tokens")), tokenizer)
    with pytest.raises(ConfigError, match=r"above vLLM's largest max_lora_rank \(512\)"):
        _backend(_policy(tiny_policy, r=600), tokenizer)


def test_rollouts_equal_the_merged_policys_on_the_hf_backend(
    monkeypatch, tokenizer, tiny_policy
) -> None:
    policy = _policy(tiny_policy)
    base = policy.get_base_model()
    install(monkeypatch, tokenizer, sampler=lora_greedy_sampler(_plain_copy(base)))
    backend = _backend(policy, tokenizer)
    hf = HFGenerateBackend(policy, tokenizer, max_prompt_tokens=32, micro_batch_size=8)
    for step in range(2):
        _train_a_little(policy, seed=step)
        stale = backend.generate(PROMPTS, GREEDY, seed=0)  # before the sync: the old adapter
        backend.sync_weights(policy)
        got = backend.generate(PROMPTS, GREEDY, seed=0)
        want = hf.generate(PROMPTS, GREEDY, seed=0)
        assert [c.completion_ids for c in got.completions] == [
            c.completion_ids for c in want.completions
        ]
        assert [c.text for c in got.completions] == [c.text for c in want.completions]
        assert [c.completion_ids for c in stale.completions] != [
            c.completion_ids for c in got.completions
        ]
    # No base weight was ever pushed: the engine reads the base from its checkpoint.
    assert FakeLLM.last.model.loads == []


def _plain_copy(base: torch.nn.Module) -> torch.nn.Module:
    """The base model as the engine loads it from its checkpoint: no peft layers."""
    state = {hf_name(f"base_model.model.{k}"): v for k, v in base.state_dict().items()}
    fresh = type(base)(base.config)
    missing, unexpected = fresh.load_state_dict(
        {k: v for k, v in state.items() if ".lora_" not in k}, strict=False
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embedding
    return fresh.eval()


def test_each_sync_names_a_new_adapter_and_old_ones_are_deleted(
    monkeypatch, tokenizer, tiny_policy
) -> None:
    policy = _policy(tiny_policy)
    install(monkeypatch, tokenizer)
    backend = _backend(policy, tokenizer)
    first = backend.adapters.request
    assert (first.lora_int_id, first.lora_name) == (1, "mgs-policy-1")
    config = json.loads((Path(first.lora_path) / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == [
        "down_proj",
        "q_proj",
        "v_proj",
    ]
    backend.generate(PROMPTS, GREEDY, seed=0)
    assert FakeLLM.last.lora_requests == [first]
    backend.sync_weights(policy)
    second = backend.adapters.request
    assert second.lora_int_id == 2 and second.lora_path != first.lora_path
    assert Path(first.lora_path).is_dir()  # still there until a generation has read the new one
    backend.generate(PROMPTS, GREEDY, seed=0)
    assert FakeLLM.last.lora_requests[-1] == second
    assert not Path(first.lora_path).exists() and Path(second.lora_path).is_dir()
    root = backend.adapters.root
    backend.close()
    assert not root.exists()


def test_saved_adapter_holds_the_policys_adapter_weights(monkeypatch, tokenizer, tiny_policy):
    from safetensors.torch import load_file

    policy = _policy(tiny_policy)
    _train_a_little(policy, seed=3)
    install(monkeypatch, tokenizer)
    backend = _backend(policy, tokenizer)
    saved = load_file(str(Path(backend.adapters.request.lora_path) / "adapter_model.safetensors"))
    mine = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert len(saved) == len(mine) == 12  # q, v, down x A, B x 2 layers
    for name, tensor in mine.items():
        assert torch.equal(saved[name.replace(".default.", ".")], tensor.detach()), name


def test_dropped_engine_weights_push_the_base_and_reload_the_adapter(
    monkeypatch, tokenizer, tiny_policy
) -> None:
    policy = _policy(tiny_policy)
    install(monkeypatch, tokenizer)
    backend = _backend(policy, tokenizer, load_format="dummy")
    backend.generate(PROMPTS, GREEDY, seed=0)
    received = FakeLLM.last.model.received()
    base = policy.get_base_model().state_dict()
    expected = {hf_name(f"base_model.model.{k}") for k in base if ".lora_" not in k}
    assert set(received) == expected - {"lm_head.weight"}  # tied: pushed once, as the embedding
    assert "model.layers.0.self_attn.q_proj.weight" in received  # base_layer removed
    # The adapter was named again under a new id, so the engine reloads it with its new weights.
    assert FakeLLM.last.lora_requests[-1].lora_int_id == 2


def test_peft_names_map_to_the_checkpoints(tiny_policy) -> None:
    assert hf_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight") == (
        "model.layers.0.self_attn.q_proj.weight"
    )
    assert hf_name("base_model.model.model.norm.weight") == "model.norm.weight"
    policy = _policy(tiny_policy)
    names = [n for chunk in full_weight_chunks(policy, 2**30) for n, _ in chunk]
    assert names and not any("lora_" in n or "base_layer" in n for n in names)
