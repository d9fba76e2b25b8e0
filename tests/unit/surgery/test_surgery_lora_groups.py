"""Surgery groups of a peft (LoRA) policy: peft's prefixes and adapter names are stripped, so the
groups are keyed by the original modules and ``module`` granularity holds a module's lora_A and
lora_B together; only the adapters are laid out."""

from __future__ import annotations

import pytest
import torch

from mgs.surgery import GradientSurgeon
from mgs.surgery.groups import clean_name, layer_key, module_key, partition

peft = pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")

from mgs.models.lora import LoRAConfig, apply_lora  # noqa: E402

TARGETS = ["q_proj", "v_proj", "down_proj"]


@pytest.mark.parametrize(
    ("raw", "clean", "module", "layer"),
    [
        (
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
            "model.layers.0.self_attn.q_proj.lora_A.weight",
            "model.layers.0.self_attn.q_proj",
            "model.layers.0",
        ),
        (  # DDP's prefix outside peft's
            "module.base_model.model.model.layers.3.mlp.down_proj.lora_B.default.weight",
            "model.layers.3.mlp.down_proj.lora_B.weight",
            "model.layers.3.mlp.down_proj",
            "model.layers.3",
        ),
        (  # an embedding's adapter is a parameter itself (no .weight)
            "base_model.model.model.embed_tokens.lora_embedding_A.default",
            "model.embed_tokens.lora_embedding_A",
            "model.embed_tokens",
            "model.embed_tokens",
        ),
        (  # a frozen base weight (never laid out, but named alike)
            "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight",
            "model.layers.0.self_attn.q_proj.base_layer.weight",
            "model.layers.0.self_attn.q_proj.base_layer",
            "model.layers.0",
        ),
        (  # names without peft stay as they were
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.q_proj",
            "model.layers.0",
        ),
    ],
)
def test_peft_names_are_cleaned(raw, clean, module, layer) -> None:
    assert clean_name(raw) == clean
    assert module_key(clean) == module
    assert layer_key(clean) == layer


@pytest.fixture
def lora_policy(tiny_policy):
    return apply_lora(tiny_policy(), LoRAConfig(r=4, alpha=8, target_modules=TARGETS))


def test_module_granularity_groups_a_modules_a_and_b(lora_policy) -> None:
    groups, params = partition(lora_policy, "module")
    expected = [
        f"model.layers.{i}.{part}"
        for i in range(2)
        for part in ("mlp.down_proj", "self_attn.q_proj", "self_attn.v_proj")
    ]
    assert [g.key for g in groups] == sorted(expected)
    for group in groups:
        assert group.param_names == (f"{group.key}.lora_A.weight", f"{group.key}.lora_B.weight")
    # Only the adapters: every laid-out parameter is peft's lora_A / lora_B of its group's module.
    trainable = {n for n, p in lora_policy.named_parameters() if p.requires_grad}
    assert set(params) == {clean_name(n) for n in trainable} and len(params) == 12


def test_tensor_and_layer_granularities(lora_policy) -> None:
    tensor, _ = partition(lora_policy, "tensor")
    assert len(tensor) == 12 and all(
        g.key.endswith((".lora_A.weight", ".lora_B.weight")) for g in tensor
    )
    layer, _ = partition(lora_policy, "layer")
    assert [g.key for g in layer] == ["model.layers.0", "model.layers.1"]


def test_surgeon_buffers_hold_the_adapters_only(lora_policy, tiny_policy) -> None:
    adapters = sum(p.numel() for p in lora_policy.parameters() if p.requires_grad)
    # By hand (hidden 32, 2 KV heads of 8, MLP 64, r 4): q 4 x (32 + 32), v 4 x (32 + 16),
    # down 4 x (64 + 32) per layer, 2 layers.
    assert adapters == 2 * (4 * 64 + 4 * 48 + 4 * 96) == 1664
    surgeon = GradientSurgeon(lora_policy, ["math", "chat", "if"], granularity="module")
    assert surgeon.numel == adapters  # K x adapter size, plus block padding
    assert surgeon.buffers.shape[0] == 3
    padding = surgeon.buffers.shape[1] - adapters
    assert 0 <= padding < 512 * len(surgeon._slots)  # each slice starts at a 512-element block
    full = GradientSurgeon(tiny_policy(), ["math", "chat", "if"])
    assert full.numel == sum(p.numel() for p in tiny_policy().parameters())  # vs K x the model
    assert surgeon.buffers.dtype == torch.float32


def test_module_surgery_on_adapters_equals_an_explicit_per_module_pcgrad(lora_policy) -> None:
    """PCGrad inside each module group on the concatenated (lora_A, lora_B) gradients."""
    from mgs.surgery.aggregators import get_aggregator, random_orders

    surgeon = GradientSurgeon(lora_policy, ["a", "b"], aggregator="pcgrad", granularity="module")
    ids = torch.randint(5, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    grads = {}
    for sign, domain in ((1.0, "a"), (-0.7, "b")):
        lora_policy.zero_grad()
        (sign * lora_policy(input_ids=ids, labels=ids).loss).backward()
        grads[domain] = {
            clean_name(n): p.grad.detach().clone()
            for n, p in lora_policy.named_parameters()
            if p.requires_grad
        }
    lora_policy.zero_grad()
    surgeon.zero_grad()
    for sign, domain in ((1.0, "a"), (-0.7, "b")):
        with surgeon.domain(domain):
            (sign * lora_policy(input_ids=ids, labels=ids).loss).backward()
    orders = random_orders(len(surgeon.groups), 2, torch.Generator().manual_seed(0))
    surgeon.apply()
    names = dict(
        zip((clean_name(n) for n, _ in lora_policy.named_parameters()), lora_policy.parameters())
    )
    pcgrad = get_aggregator("pcgrad")
    for m, group in enumerate(surgeon.groups):
        flat = torch.stack(
            [torch.cat([grads[d][n].flatten() for n in group.param_names]) for d in ("a", "b")]
        ).double()  # [K, n_m]: the module's A and B together
        gram = (flat @ flat.T)[None]  # [1, K, K]
        coef, _ = pcgrad(gram, torch.tensor([True, True]), orders[m : m + 1])
        want = (coef.to(flat.dtype) @ flat)[0]
        got = torch.cat([names[n].grad.flatten() for n in group.param_names]).double()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7, msg=group.key)
