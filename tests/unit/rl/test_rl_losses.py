"""Policy loss (clip + dual-clip), KL estimators and entropy: hand-worked values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mgs.errors import UnknownNameError
from mgs.rl.losses import entropy_from_logits, kl_penalty, policy_loss

# Ratios chosen so that every branch of the loss is hit once; old_logp = 0, logp = log(ratio).
# Row 0 has A = +1, row 1 has A = -2 (one advantage per sequence, broadcast over tokens).
RATIOS = torch.tensor([[1.0, 1.1, 1.5, 0.5], [1.0, 0.5, 1.5, 4.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)


def _run(**kwargs):
    logp = RATIOS.log().requires_grad_(True)
    loss, stats = policy_loss(logp, torch.zeros_like(logp), ADV, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    return loss.detach(), stats, grad


def test_policy_loss_hand_worked_values() -> None:
    loss, stats, _ = _run()
    # A=+1: loss = max(-r, -clip(r, 0.8, 1.2))
    #   r=1.0 -> -1.0 ; r=1.1 -> -1.1 ; r=1.5 -> max(-1.5, -1.2) = -1.2 (clipped high)
    #   r=0.5 -> max(-0.5, -0.8) = -0.5 (a positive advantage is never clipped below)
    # A=-2: loss = min(max(2r, 2 clip(r)), 2 * 3)
    #   r=1.0 -> 2.0 ; r=0.5 -> max(1.0, 1.6) = 1.6 (clipped low)
    #   r=1.5 -> max(3.0, 2.4) = 3.0 (< cap 6) ; r=4.0 -> max(8.0, 2.4) = 8 -> capped at 6 (dual)
    expected = torch.tensor([[-1.0, -1.1, -1.2, -0.5], [2.0, 1.6, 3.0, 6.0]], dtype=torch.float64)
    torch.testing.assert_close(loss, expected)
    f, t = False, True
    assert stats["clipped_high"].tolist() == [[f, f, t, f], [f, f, f, f]]
    assert stats["clipped_low"].tolist() == [[f, f, f, f], [f, t, f, f]]
    assert stats["dual_clipped"].tolist() == [[f, f, f, f], [f, f, f, t]]
    torch.testing.assert_close(stats["ratio"], RATIOS)
    assert not stats["ratio"].requires_grad


def test_policy_loss_gradient_is_zero_on_clipped_tokens() -> None:
    _, _, grad = _run()
    # d(-A r)/d logp = -A r on active unclipped tokens; 0 where the clipped or capped branch is
    # active (it does not depend on logp).
    expected = torch.tensor([[-1.0, -1.1, 0.0, -0.5], [2.0, 0.0, 3.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(grad, expected)


def test_asymmetric_clip_and_disabled_dual_clip() -> None:
    loss, stats, _ = _run(clip_eps_high=0.6, dual_clip=None)
    # eps_high 0.6: r=1.5 < 1.6 is no longer clipped -> -1.5; no cap: r=4 with A=-2 -> 8
    assert loss[0, 2].item() == pytest.approx(-1.5)
    assert loss[1, 3].item() == pytest.approx(8.0)
    assert not stats["clipped_high"].any()
    assert not stats["dual_clipped"].any()
    loss, _, _ = _run(clip_eps_low=0.6)  # 1 - 0.6 = 0.4 < 0.5: r=0.5 with A<0 not clipped -> 1.0
    assert loss[1, 1].item() == pytest.approx(1.0)


def test_per_token_advantages_equal_broadcast_sequence_advantages() -> None:
    logp = RATIOS.log()
    a, _ = policy_loss(logp, torch.zeros_like(logp), ADV)
    b, _ = policy_loss(logp, torch.zeros_like(logp), ADV[:, None].expand(2, 4))
    torch.testing.assert_close(a, b)


def test_on_policy_loss_is_minus_advantage_and_gradient_is_advantage() -> None:
    # ratio = 1 everywhere: the surrogate's value is -A and its gradient -A (policy gradient).
    logp = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    loss, _ = policy_loss(logp, logp.detach(), adv)
    torch.testing.assert_close(loss, -adv[:, None].expand(3, 5))
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    torch.testing.assert_close(grad, -adv[:, None].expand(3, 5))


def test_dual_clip_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), dual_clip=1.0)


def test_kl_estimators_hand_worked() -> None:
    # p = 0.5, p_ref = 0.25: log-ratio d = log 2
    logp = torch.tensor([[math.log(0.5)]], dtype=torch.float64)
    ref = torch.tensor([[math.log(0.25)]], dtype=torch.float64)
    d = math.log(2)
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(d)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * d * d)
    assert kl_penalty(logp, ref, "mse").item() == pytest.approx(0.5 * d * d)
    # k3 with x = ref - logp = -log 2: exp(x) - x - 1 = 0.5 + log 2 - 1 = 0.193147
    assert kl_penalty(logp, ref, "low_var_kl").item() == pytest.approx(0.5 + d - 1)


def test_low_var_kl_is_clamped_like_verl() -> None:
    logp = torch.tensor([[-30.0, 0.0]])
    ref = torch.tensor([[0.0, -30.0]])
    # x = 30: exp(20) - 20 - 1 (x clamped to 20) -> clamped to 10; x = -30 -> exp(-20) + 20 - 1 -> 10
    torch.testing.assert_close(kl_penalty(logp, ref, "low_var_kl"), torch.tensor([[10.0, 10.0]]))


def test_k1_and_k3_are_unbiased_kl_estimates() -> None:
    # E_{x~p}[k(x)] = KL(p || q) exactly, for k1 and k3, on random distributions over 7 tokens
    # (scaled so that no k3 value reaches the clamp at 10, which would bias it).
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        log_p = torch.log_softmax(0.5 * torch.randn(7, generator=gen, dtype=torch.float64), -1)
        log_q = torch.log_softmax(0.5 * torch.randn(7, generator=gen, dtype=torch.float64), -1)
        kl = (log_p.exp() * (log_p - log_q)).sum()
        for kind in ("k1", "low_var_kl"):
            expectation = (log_p.exp() * kl_penalty(log_p, log_q, kind)).sum()
            torch.testing.assert_close(expectation, kl)
        assert (kl_penalty(log_p, log_q, "low_var_kl") >= 0).all()


def test_unknown_kl_kind_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="valid names: k1, k2, low_var_kl, mse"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k3+")


def test_entropy_hand_worked_and_oracle() -> None:
    # uniform over V=8: log 8; a near one-hot distribution: ~0
    h = entropy_from_logits(torch.zeros(2, 8))
    torch.testing.assert_close(h, torch.full((2,), math.log(8)))
    assert entropy_from_logits(torch.tensor([100.0, 0.0, 0.0])).item() == pytest.approx(0, abs=1e-6)
    logits = torch.randn(3, 4, 11, generator=torch.Generator().manual_seed(0))
    oracle = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(entropy_from_logits(logits), oracle)
    out = entropy_from_logits(logits.bfloat16())  # low precision in, float32 out
    assert out.dtype == torch.float32
