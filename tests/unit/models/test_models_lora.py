"""mgs.models.lora against peft itself: the merged state dict equals peft's merge_and_unload,
generation sees the merged weights while training's stay untouched, the KL reference is the base
model, adapters save and load by name, and every misuse is one clear error."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from mgs.errors import ConfigError
from mgs.models.lora import (
    AdaptersDisabled,
    LoRAConfig,
    adapter_state,
    apply_lora,
    is_adapter_name,
    load_adapter_state,
    merge_lora_state,
    merged_for_generation,
    save_adapter,
)

peft = pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def _moved(policy, seed: int = 0):
    """``policy`` with its adapters moved off their initialisation (lora_B starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return policy


@pytest.fixture
def policy(tiny_policy):
    return _moved(apply_lora(tiny_policy(), LoRAConfig(r=4, alpha=8, target_modules=TARGETS)))


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.randint(5, 60, (3, 11), generator=torch.Generator().manual_seed(1))


def test_only_the_adapters_train(policy) -> None:
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * len(TARGETS)  # A and B x targets x 2 layers
    assert all(is_adapter_name(n) for n in trainable)
    assert not any(is_adapter_name(n) for n, p in policy.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("targets", [TARGETS, ["q_proj", "embed_tokens"]])
def test_merged_state_equals_peft_merge_and_unload(tiny_policy, targets) -> None:
    policy = _moved(apply_lora(tiny_policy(), LoRAConfig(r=2, alpha=6, target_modules=targets)))
    oracle = copy.deepcopy(policy).merge_and_unload().state_dict()
    merged = merge_lora_state(policy.state_dict(), scaling=6 / 2)
    assert set(merged) == set(oracle)
    for name, tensor in oracle.items():
        torch.testing.assert_close(merged[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(merged[n], t) for n, t in tiny_policy().state_dict().items())


def test_generation_sees_merged_weights_and_training_keeps_its_own(policy) -> None:
    oracle = copy.deepcopy(policy).merge_and_unload()
    params = dict(policy.named_parameters())
    values = {n: p.detach().clone() for n, p in params.items()}
    with merged_for_generation(policy) as model:
        assert model is policy.get_base_model()
        torch.testing.assert_close(_logits(model, IDS), _logits(oracle, IDS), rtol=0, atol=1e-5)
    for name, param in policy.named_parameters():  # the very tensors, bit for bit
        assert param is params[name] and torch.equal(param, values[name]), name
    assert not any(getattr(m, "merged", False) for m in policy.modules())
    # Unmerged, the peft forward computes the same function.
    torch.testing.assert_close(_logits(policy, IDS), _logits(oracle, IDS), rtol=0, atol=1e-5)


def test_a_plain_model_generates_as_it_is(tiny_policy) -> None:
    model = tiny_policy()
    with merged_for_generation(model) as generating:
        assert generating is model


def test_kl_reference_is_the_base_model_with_adapters_disabled(tiny_policy) -> None:
    base = tiny_policy()
    untouched = copy.deepcopy(base)
    policy = _moved(apply_lora(base, LoRAConfig(r=4, alpha=8, target_modules=TARGETS)))
    reference = AdaptersDisabled(policy)
    torch.testing.assert_close(_logits(reference, IDS), _logits(untouched, IDS), rtol=0, atol=1e-6)
    assert not torch.allclose(_logits(policy, IDS), _logits(untouched, IDS), atol=1e-3)
    # The adapters are enabled and trainable again afterwards.
    assert all(p.requires_grad for n, p in policy.named_parameters() if is_adapter_name(n))
    with pytest.raises(ValueError, match="peft"):
        AdaptersDisabled(untouched)


def test_adapter_saves_and_loads_by_name(policy, tiny_policy, tmp_path) -> None:
    state = adapter_state(policy)
    assert set(state) == {n for n, p in policy.named_parameters() if p.requires_grad}
    save_adapter(policy, tmp_path, state)
    assert (tmp_path / "adapter_config.json").is_file()
    fresh = apply_lora(tiny_policy(), LoRAConfig(r=4, alpha=8, target_modules=TARGETS))
    loaded = load_adapter_state(tmp_path, fresh)
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor), name
    # peft reads it back as its own adapter, on the same base: the same model.
    oracle = peft.PeftModel.from_pretrained(tiny_policy(), str(tmp_path))
    torch.testing.assert_close(_logits(oracle, IDS), _logits(policy, IDS), rtol=0, atol=1e-6)
    other = apply_lora(tiny_policy(), LoRAConfig(r=4, alpha=8, target_modules=["k_proj"]))
    with pytest.raises(ConfigError, match=r"another model\.lora"):
        load_adapter_state(tmp_path, other)
    with pytest.raises(ConfigError, match="not a LoRA adapter"):
        load_adapter_state(tmp_path / "nowhere", fresh)


def test_unknown_target_modules_name_the_models_linear_layers(tiny_policy) -> None:
    with pytest.raises(ConfigError, match=r"do not fit this model.*down_proj, gate_proj"):
        apply_lora(tiny_policy(), LoRAConfig(target_modules=["c_attn"]))


def test_missing_peft_says_which_extra_to_install(monkeypatch, tiny_policy) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'mgs\[lora\]'"):
        apply_lora(tiny_policy(), LoRAConfig())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"r": 0}, "model.lora.r must be a positive integer"),
        ({"alpha": 0}, "model.lora.alpha must be > 0"),
        ({"dropout": 1.0}, r"model.lora.dropout must be in \[0, 1\)"),
        ({"target_modules": []}, "model.lora.target_modules must list module names"),
    ],
)
def test_config_errors_name_the_key(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        LoRAConfig(**changes)
