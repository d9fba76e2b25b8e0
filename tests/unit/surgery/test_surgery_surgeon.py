"""GradientSurgeon on real modules: equivalences, layout invariance, granularity, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from mgs.errors import UnknownNameError
from mgs.surgery import GradientSurgeon, partition
from mgs.surgery.aggregators import random_orders
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

DOMAINS = ["math", "chat", "if"]


def _tiny_qwen(seed: int = 0) -> nn.Module:
    return build_tiny_policy(
        build_tiny_tokenizer(),
        TinyModelConfig(
            hidden_size=32,
            num_layers=2,
            intermediate_size=64,
            num_heads=4,
            num_kv_heads=2,
            seed=seed,
        ),
    )


def _batches(k: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 100, (2, 12), generator=gen) for _ in range(k)]


def _domain_loss(model: nn.Module, ids: torch.Tensor, k: int) -> torch.Tensor:
    # Different signs/scales per domain so that gradients conflict in some groups.
    loss = model(input_ids=ids, labels=ids).loss
    return loss * (1.0 if k % 2 == 0 else -0.7)


def _surgeon_grads(model, aggregator, granularity, k=3, seed=0, max_norm=None, **kw):
    surgeon = GradientSurgeon(
        model, DOMAINS[:k], aggregator=aggregator, granularity=granularity, seed=seed, **kw
    )
    surgeon.zero_grad()
    for d, ids in enumerate(_batches(k)):
        with surgeon.domain(DOMAINS[d]):
            _domain_loss(model, ids, d).backward()
    stats = surgeon.apply(max_norm=max_norm)
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}, stats


def _per_domain_grads(model, k=3) -> list[dict[str, torch.Tensor]]:
    out = []
    for d, ids in enumerate(_batches(k)):
        model.zero_grad(set_to_none=True)
        _domain_loss(model, ids, d).backward()
        out.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
    model.zero_grad(set_to_none=True)
    return out


def test_sum_aggregator_equals_one_backward_of_the_summed_loss() -> None:
    model = _tiny_qwen()
    grads, _ = _surgeon_grads(model, "sum", "tensor")
    model.zero_grad(set_to_none=True)
    sum(_domain_loss(model, ids, d) for d, ids in enumerate(_batches(3))).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-6)


def test_several_backward_calls_accumulate_within_a_domain() -> None:
    model = _tiny_qwen()
    surgeon = GradientSurgeon(model, ["math"], aggregator="sum")
    ids_a, ids_b = _batches(2)
    surgeon.zero_grad()
    with surgeon.domain("math"):
        model(input_ids=ids_a, labels=ids_a).loss.backward()
        model(input_ids=ids_b, labels=ids_b).loss.backward()
    with surgeon.domain("math"):  # re-entering the same domain keeps accumulating
        model(input_ids=ids_a, labels=ids_a).loss.backward()
    surgeon.apply()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    (
        2 * model(input_ids=ids_a, labels=ids_a).loss + model(input_ids=ids_b, labels=ids_b).loss
    ).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-6)


def _reference(per_domain, groups, seed, step=0):
    """Independent per-group PCGrad on explicit flattened vectors with the same random orders."""
    k = len(per_domain)
    orders = random_orders(len(groups), k, torch.Generator().manual_seed(seed * 1_000_003 + step))
    out = {}
    for m, group in enumerate(groups):
        names = list(group.param_names)
        vecs = torch.stack(
            [torch.cat([g[n].flatten() for n in names]).double() for g in per_domain]
        )
        total = torch.zeros(vecs.shape[1], dtype=torch.float64)
        for i in range(k):
            gi = vecs[i].clone()
            for j in orders[m, i].tolist():
                dot = gi @ vecs[j]
                if dot < 0 and vecs[j] @ vecs[j] > 0:
                    gi = gi - dot / (vecs[j] @ vecs[j]) * vecs[j]
            total += gi
        offset = 0
        for n in names:
            size = per_domain[0][n].numel()
            out[n] = total[offset : offset + size].view_as(per_domain[0][n]).float()
            offset += size
    return out


@pytest.mark.parametrize("granularity", ["tensor", "module", "layer", "global"])
def test_pcgrad_per_group_matches_an_explicit_reference(granularity: str) -> None:
    model = _tiny_qwen()
    per_domain = _per_domain_grads(model)
    groups, _ = partition(model, granularity)
    expected = _reference(per_domain, groups, seed=5)
    grads, stats = _surgeon_grads(model, "pcgrad", granularity, seed=5)
    for n in expected:
        torch.testing.assert_close(grads[n], expected[n], rtol=1e-4, atol=1e-6)
    assert stats.fired.any(), "the domains were built to conflict somewhere"


def test_global_granularity_is_whole_model_pcgrad() -> None:
    model = _tiny_qwen()
    per_domain = _per_domain_grads(model, k=2)
    names = [n for n, _ in model.named_parameters()]
    vecs = torch.stack([torch.cat([g[n].flatten() for n in names]) for g in per_domain])
    from torchjd.aggregation import PCGrad

    expected = PCGrad()(vecs.double()).float()
    grads, stats = _surgeon_grads(model, "pcgrad", "global", k=2)
    got = torch.cat([grads[n].flatten() for n in names])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert stats.gram.shape == (1, 2, 2)


def test_result_does_not_depend_on_the_order_of_tensors() -> None:
    torch.manual_seed(0)
    layers = {f"l{i}": nn.Linear(6, 6) for i in range(5)}
    forward_order = list(layers)

    def build(order):
        mod = nn.Module()
        for name in order:
            mod.add_module(name, layers[name])
        return mod

    def run(mod):
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
        surgeon = GradientSurgeon(mod, DOMAINS, aggregator="pcgrad", seed=3)
        surgeon.zero_grad()
        for d in range(3):
            with surgeon.domain(DOMAINS[d]):
                h = x
                for name in forward_order:
                    h = torch.tanh(getattr(mod, name)(h))
                (h.sum() * (d - 1.2)).backward()
        surgeon.apply()
        out = {n: p.grad.clone() for n, p in mod.named_parameters()}
        mod.zero_grad(set_to_none=True)
        return out

    a = run(build(forward_order))
    b = run(build(list(reversed(forward_order))))
    for n in a:
        torch.testing.assert_close(a[n], b[n])


def test_domain_without_backward_contributes_nothing() -> None:
    model = _tiny_qwen()
    two, _ = _surgeon_grads(model, "pcgrad", "module", k=2)
    surgeon = GradientSurgeon(model, DOMAINS, aggregator="pcgrad", granularity="module")
    surgeon.zero_grad()
    for d, ids in enumerate(_batches(2)):
        with surgeon.domain(DOMAINS[d]):
            _domain_loss(model, ids, d).backward()
    stats = surgeon.apply()
    assert stats.active.tolist() == [True, True, False]
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, two[n])


def test_frozen_parameters_are_ignored() -> None:
    model = _tiny_qwen()
    model.model.embed_tokens.weight.requires_grad_(False)
    surgeon = GradientSurgeon(model, ["math"], aggregator="sum")
    assert "model.embed_tokens.weight" not in {n for g in surgeon.groups for n in g.param_names}
    surgeon.zero_grad()
    ids = _batches(1)[0]
    with surgeon.domain("math"):
        model(input_ids=ids, labels=ids).loss.backward()
    surgeon.apply()
    assert model.model.embed_tokens.weight.grad is None
    assert surgeon.numel == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_nonfinite_domain_is_reported_and_excluded() -> None:
    model = nn.Linear(3, 2)
    surgeon = GradientSurgeon(model, ["math", "chat"], aggregator="sum")
    x = torch.ones(1, 3)
    surgeon.zero_grad()
    with surgeon.domain("math"):
        model(x).sum().backward()
    with surgeon.domain("chat"):
        (model(x).sum() * float("nan")).backward()
    stats = surgeon.apply()
    assert not stats.all_finite
    assert stats.nonfinite.tolist() == [False, True]
    assert stats.summary()["surgery/nonfinite/chat"] == 1.0
    torch.testing.assert_close(model.weight.grad, torch.ones(2, 3))  # math alone, no NaN mixed in
    assert torch.isfinite(model.bias.grad).all()


def test_clipping_matches_clip_grad_norm() -> None:
    model = _tiny_qwen()
    grads, stats = _surgeon_grads(model, "pcgrad", "module", max_norm=0.05)
    unclipped, stats2 = _surgeon_grads(model, "pcgrad", "module")
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in unclipped.values()))
    assert float(stats2.grad_norm) == pytest.approx(norm, rel=1e-5)
    for n, p in model.named_parameters():
        p.grad = unclipped[n].clone()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-5, atol=1e-8)
    assert float(stats.clip_coef) < 1


def test_granularities_on_hf_decoders() -> None:
    qwen = _tiny_qwen()
    groups = {g.key: g for g in partition(qwen, "layer")[0]}
    assert {"model.layers.0", "model.layers.1", "model.embed_tokens", "model.norm"} <= set(groups)
    assert "model.layers.0.self_attn.q_proj.bias" in groups["model.layers.0"].param_names
    modules = {g.key for g in partition(qwen, "module")[0]}
    assert (
        "model.layers.1.mlp.down_proj" in modules and "model.layers.0.self_attn.q_proj" in modules
    )
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    lgroups = {g.key for g in partition(llama, "layer")[0]}
    assert {
        "model.layers.0",
        "model.layers.1",
        "lm_head",
        "model.embed_tokens",
        "model.norm",
    } == lgroups
    assert len(partition(llama, "global")[0]) == 1
    assert len(partition(llama, "tensor")[0]) == len(list(llama.parameters()))


def test_callable_granularity_and_wrapper_prefixes() -> None:
    model = _tiny_qwen()
    by_kind = partition(model, lambda name, p: "attn" if "self_attn" in name else "other")[0]
    assert [g.key for g in by_kind] == ["attn", "other"]

    class Wrapper(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    wrapped = {g.key for g in partition(Wrapper(model), "layer")[0]}
    assert "model.layers.0" in wrapped


def test_lower_precision_buffers_are_close_to_float32() -> None:
    model = _tiny_qwen()
    exact, _ = _surgeon_grads(model, "pcgrad", "module")
    low, _ = _surgeon_grads(model, "pcgrad", "module", buffer_dtype=torch.bfloat16)
    for n in exact:
        torch.testing.assert_close(low[n], exact[n], rtol=0.05, atol=2e-3)


def test_summary_scalars() -> None:
    model = nn.Linear(2, 1, bias=False)
    surgeon = GradientSurgeon(model, ["a", "b"], aggregator="pcgrad")
    surgeon.zero_grad()
    with surgeon.domain("a"):
        model(torch.tensor([[1.0, 0.0]])).sum().backward()  # grad (1, 0)
    with surgeon.domain("b"):
        model(torch.tensor([[-1.0, 1.0]])).sum().backward()  # grad (-1, 1)
    stats = surgeon.apply()
    summary = stats.summary()
    assert summary["surgery/cos/a__b"] == pytest.approx(-1 / math.sqrt(2))
    assert summary["surgery/conflict_frac/a__b"] == 1.0
    assert summary["surgery/projected_frac"] == 1.0
    assert summary["surgery/grad_norm"] == pytest.approx(math.sqrt(0.5**2 + 1.5**2))
    torch.testing.assert_close(model.weight.grad, torch.tensor([[0.5, 1.5]]))
    arrays = stats.arrays()
    assert arrays["cosine"].shape == (1, 2, 2) and arrays["group_names"].tolist() == ["weight"]


def test_random_orders_are_reproducible_from_the_seed_and_vary_with_it() -> None:
    """Same seed -> identical gradients step after step; the orders matter for K=3 conflicts."""

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Linear(4, 8)
        surgeon = GradientSurgeon(model, DOMAINS, seed=seed)
        gen = torch.Generator().manual_seed(2)
        v = torch.randn(8, generator=gen)  # domains 1 and 2 both conflict with domain 0
        dirs = [
            v,
            -v + 0.5 * torch.randn(8, generator=gen),
            -v + 0.5 * torch.randn(8, generator=gen),
        ]
        out = []
        for _ in range(4):
            surgeon.zero_grad()
            for d in range(3):
                with surgeon.domain(DOMAINS[d]):
                    (model(torch.ones(1, 4)) @ dirs[d]).sum().backward()
            surgeon.apply()
            out.append(model.bias.grad.clone())
        return out

    a, b = run(1), run(1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    others = [run(s) for s in range(2, 8)]
    assert any(not torch.allclose(x, y) for o in others for x, y in zip(a, o)), (
        "order never mattered"
    )


def test_misuse_gives_clear_errors() -> None:
    model = nn.Linear(2, 2)
    surgeon = GradientSurgeon(model, ["math", "chat"])
    with pytest.raises(UnknownNameError, match="valid names: chat, math"), surgeon.domain("code"):
        pass
    with (
        pytest.raises(RuntimeError, match="cannot be nested"),
        surgeon.domain("math"),
        surgeon.domain("chat"),
    ):
        pass
    surgeon.zero_grad()
    model(torch.ones(1, 2)).sum().backward()  # outside any domain block
    with (
        pytest.raises(RuntimeError, match=r"outside `with surgeon\.domain"),
        surgeon.domain("math"),
    ):
        pass
    with pytest.raises(ValueError, match="distinct"):
        GradientSurgeon(model, ["math", "math"])
    with pytest.raises(UnknownNameError, match="granularity"):
        GradientSurgeon(model, ["math"], granularity="block")
