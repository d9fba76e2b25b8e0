"""The property gradient surgery rests on, end to end on the tiny Qwen2: rollouts -> advantages ->
log-probs -> GRPO loss per domain micro-batch; the per-domain gradients sum to the mixed gradient."""

from __future__ import annotations

import pytest
import torch

from mgs.rl import (
    GRPOLossConfig,
    HFGenerateBackend,
    SamplingConfig,
    group_advantages,
    grpo_loss,
    loss_normalizer,
    response_logprobs,
)
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

SMALL = TinyModelConfig(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_policy(tokenizer, SMALL)
    ref = build_tiny_policy(tokenizer, TinyModelConfig(**{**vars(SMALL), "seed": 1}))
    old = build_tiny_policy(tokenizer, SMALL)  # the policy one update ago: slightly different
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in old.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    backend = HFGenerateBackend(policy, tokenizer, max_prompt_tokens=32, micro_batch_size=6)
    cfg = SamplingConfig(n=2, temperature=TEMPERATURE, max_new_tokens=10, stop=[])
    batch = backend.generate(["2+2=", "Say hi:", "A colour:"], cfg, seed=0)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 0.2])
    advantages, _ = group_advantages(rewards, 2)
    return tokenizer, policy, ref, old, batch, advantages


def _loss(setup, rows: list[int], cfg: GRPOLossConfig, normalizer) -> torch.Tensor:
    tokenizer, policy, ref, old, batch, advantages = setup
    t = batch.to_tensors(tokenizer.pad_token_id, rows=rows)
    with torch.no_grad():
        old_logp, _ = response_logprobs(old, **t, temperature=TEMPERATURE)
        ref_logp, _ = response_logprobs(ref, **t, temperature=TEMPERATURE)
    logp, entropy = response_logprobs(policy, **t, temperature=TEMPERATURE, with_entropy=True)
    loss, _ = grpo_loss(
        logp,
        old_logp,
        advantages[rows],
        t["response_mask"],
        ref_logp=ref_logp,
        entropy=entropy,
        cfg=cfg,
        normalizer=normalizer,
    )
    return loss


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_per_domain_gradients_sum_to_the_mixed_gradient(setup, mode: str) -> None:
    tokenizer, policy, _, _, batch, _ = setup
    cfg = GRPOLossConfig(loss_agg=mode, kl_coef=0.1, entropy_coef=0.01)
    params = [p for p in policy.parameters() if p.requires_grad]
    everything = list(range(len(batch)))
    norm = loss_normalizer(batch.to_tensors(tokenizer.pad_token_id)["response_mask"], mode)

    mixed = torch.autograd.grad(_loss(setup, everything, cfg, norm), params)
    domains = {"math": [0, 1, 4, 5], "chat": [2, 3]}  # each domain padded to its own widths
    per_domain = [torch.autograd.grad(_loss(setup, r, cfg, norm), params) for r in domains.values()]
    summed = [sum(gs) for gs in zip(*per_domain)]

    assert sum(g.abs().sum() for g in mixed) > 0
    for a, b in zip(summed, mixed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    # control: normalising each domain by its own count gives a different gradient
    local = [
        torch.autograd.grad(
            _loss(
                setup, r, cfg, loss_normalizer(batch.to_tensors(0, rows=r)["response_mask"], mode)
            ),
            params,
        )
        for r in domains.values()
    ]
    local_sum = [sum(gs) for gs in zip(*local)]
    assert not all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(local_sum, mixed))
