"""The combined GRPO loss and its config: hand-worked totals, stats, micro-batch additivity."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mgs.dataclass_config import from_dict
from mgs.errors import ConfigError
from mgs.rl.aggregation import loss_normalizer
from mgs.rl.losses import GRPOLossConfig, grpo_loss, sum_micro_batch_stats

# Two sequences, 3 positions; row 0's last position is padding (its ratio 10 must be ignored).
RATIOS = torch.tensor([[1.0, 1.5, 10.0], [1.0, 0.5, 4.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)
ENTROPY = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 5.0]], dtype=torch.float64)
CFG = GRPOLossConfig(kl_coef=0.1, kl_kind="k1", entropy_coef=0.01)


def _loss(cfg: GRPOLossConfig, normalizer: float, **kwargs):
    logp = RATIOS.log()
    return grpo_loss(
        logp,
        torch.zeros_like(logp),
        ADV,
        MASK,
        ref_logp=torch.zeros_like(logp),  # k1 = logp - ref = log(ratio)
        entropy=ENTROPY,
        cfg=cfg,
        normalizer=normalizer,
        **kwargs,
    )


def test_paper_defaults() -> None:
    cfg = GRPOLossConfig()
    assert (cfg.clip_eps_low, cfg.clip_eps_high, cfg.dual_clip) == (0.2, 0.2, 3.0)
    assert (cfg.kl_coef, cfg.kl_kind, cfg.entropy_coef) == (0.001, "low_var_kl", 0.001)
    assert cfg.loss_agg == "token-mean"
    assert all(f.metadata.get("help") for f in dataclasses.fields(GRPOLossConfig))


def test_hand_worked_token_mean() -> None:
    # per-token pg (eps 0.2, dual-clip 3):
    #   row 0, A=+1: r=1 -> -1 ; r=1.5 -> -1.2 (clipped high)
    #   row 1, A=-1: r=1 -> 1 ; r=0.5 -> 0.8 (clipped low) ; r=4 -> min(4, 3) = 3 (dual-clipped)
    # token-mean over 5 tokens: pg = (-1 - 1.2 + 1 + 0.8 + 3) / 5 = 0.52
    # k1 = log r: (0 + ln 1.5 + 0 + ln 0.5 + ln 4) / 5 = ln 3 / 5
    # entropy = (1 + 2 + 3 + 4 + 5) / 5 = 3
    # loss = 0.52 + 0.1 * ln3 / 5 - 0.01 * 3
    loss, stats = _loss(CFG, normalizer=5)
    assert loss.item() == pytest.approx(0.52 + 0.1 * math.log(3) / 5 - 0.03)
    assert stats["loss"].item() == pytest.approx(loss.item())
    assert stats["pg_loss"].item() == pytest.approx(0.52)
    assert stats["kl"].item() == pytest.approx(math.log(3) / 5)
    assert stats["entropy"].item() == pytest.approx(3.0)
    assert stats["clip_frac_low"].item() == pytest.approx(1 / 5)
    assert stats["clip_frac_high"].item() == pytest.approx(1 / 5)
    assert stats["dual_clip_frac"].item() == pytest.approx(1 / 5)
    assert stats["ratio_mean"].item() == pytest.approx((1 + 1.5 + 1 + 0.5 + 4) / 5)
    assert stats["ratio_max"].item() == pytest.approx(4.0)  # the padded ratio 10 is ignored
    assert all(not v.requires_grad and v.ndim == 0 for v in stats.values())


def test_hand_worked_seq_mean_token_mean() -> None:
    # pg: row 0 mean (-1 - 1.2) / 2 = -1.1 ; row 1 mean (1 + 0.8 + 3) / 3 = 1.6 ; / 2 seqs = 0.25
    # entropy: row 0 (1 + 2) / 2 = 1.5 ; row 1 (3 + 4 + 5) / 3 = 4 ; -> 2.75
    # k1: row 0 ln 1.5 / 2 ; row 1 (ln 0.5 + ln 4) / 3 = ln 2 / 3 ; -> (ln1.5/2 + ln2/3) / 2
    cfg = dataclasses.replace(CFG, loss_agg="seq-mean-token-mean")
    loss, stats = _loss(cfg, normalizer=2)
    kl = (math.log(1.5) / 2 + math.log(2) / 3) / 2
    assert stats["pg_loss"].item() == pytest.approx(0.25)
    assert stats["entropy"].item() == pytest.approx(2.75)
    assert loss.item() == pytest.approx(0.25 + 0.1 * kl - 0.01 * 2.75)


def test_zero_coefficients_leave_the_policy_loss_but_still_report() -> None:
    cfg = dataclasses.replace(CFG, kl_coef=0.0, entropy_coef=0.0)
    loss, stats = _loss(cfg, normalizer=5)
    assert loss.item() == pytest.approx(0.52)
    assert stats["kl"].item() == pytest.approx(math.log(3) / 5)  # monitored, not optimised
    logp = RATIOS.log()
    loss2, stats2 = grpo_loss(logp, logp, ADV, MASK, cfg=cfg, normalizer=5)
    assert "kl" not in stats2 and "entropy" not in stats2
    # on-policy: pg = mean(-A) over tokens = (-1 - 1 + 1 + 1 + 1) / 5
    assert loss2.item() == pytest.approx(0.2)


def test_configured_terms_need_their_inputs() -> None:
    logp = RATIOS.log()
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp, ADV, MASK, entropy=ENTROPY, cfg=CFG, normalizer=5)
    with pytest.raises(ValueError, match="with_entropy=True"):
        grpo_loss(logp, logp, ADV, MASK, ref_logp=logp, cfg=CFG, normalizer=5)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_micro_batches_sum_to_mini_batch_loss_gradient_and_stats(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    batch, length = 12, 9
    theta = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 0.3
    theta.requires_grad_(True)
    old = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 0.3 - 2.0
    ref = old + 0.1 * torch.randn(batch, length, generator=gen, dtype=torch.float64)
    adv = torch.randn(batch, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    cfg = GRPOLossConfig(loss_agg=mode, kl_coef=0.05, entropy_coef=0.01, clip_eps_high=0.28)
    norm = loss_normalizer(mask, mode)

    def loss_of(rows: torch.Tensor):
        logp = old[rows] + theta[rows]  # ratios exp(theta): some clipped, some not
        entropy = theta[rows].sin() + 2.0  # any differentiable per-token quantity
        return grpo_loss(
            logp,
            old[rows],
            adv[rows],
            mask[rows],
            ref_logp=ref[rows],
            entropy=entropy,
            cfg=cfg,
            normalizer=norm,
        )

    whole, whole_stats = loss_of(torch.arange(batch))
    (grad_whole,) = torch.autograd.grad(whole, theta)
    assert whole_stats["clip_frac_high"] > 0 and whole_stats["clip_frac_low"] > 0

    # a domain-like split: three micro-batches of different sizes, in a shuffled order
    parts = torch.tensor_split(torch.randperm(batch, generator=gen), [2, 7])
    results = [loss_of(p) for p in parts]
    (grad_split,) = torch.autograd.grad(sum(r[0] for r in results), theta)
    torch.testing.assert_close(sum(r[0] for r in results), whole)
    torch.testing.assert_close(grad_split, grad_whole)
    combined = sum_micro_batch_stats(r[1] for r in results)
    assert combined.keys() == whole_stats.keys()
    for key in whole_stats:
        torch.testing.assert_close(combined[key], whole_stats[key], msg=key)


def test_config_validation_says_what_to_write() -> None:
    with pytest.raises(ConfigError, match=r"clip_eps_low must be in \(0, 1\).*clip_eps_low: 0.2"):
        GRPOLossConfig(clip_eps_low=1.5)
    with pytest.raises(ConfigError, match="clip_eps_high must be a positive number"):
        GRPOLossConfig(clip_eps_high=0.0)
    with pytest.raises(ConfigError, match="dual_clip: null"):
        GRPOLossConfig(dual_clip=1.0)
    with pytest.raises(ConfigError, match="kl_coef must be a number >= 0"):
        GRPOLossConfig(kl_coef=-0.1)
    with pytest.raises(ConfigError, match="entropy_coef"):
        GRPOLossConfig(entropy_coef=float("nan"))
    with pytest.raises(ConfigError, match="write one of: k1, k2, mse, low_var_kl"):
        GRPOLossConfig(kl_kind="k3")
    with pytest.raises(ConfigError, match="token-mean, seq-mean-token-mean"):
        GRPOLossConfig(loss_agg="mean")
    assert GRPOLossConfig(dual_clip=None).dual_clip is None


def test_config_from_yaml_mapping() -> None:
    cfg = from_dict(GRPOLossConfig, {"kl_coef": "1e-3", "loss_agg": "seq-mean-token-mean"}, "grpo")
    assert cfg.kl_coef == 0.001 and cfg.loss_agg == "seq-mean-token-mean"
    with pytest.raises(ConfigError, match=r"^grpo: kl_kind 'kl'"):
        from_dict(GRPOLossConfig, {"kl_kind": "kl"}, "grpo")
