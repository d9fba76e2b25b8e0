"""Strategies as config: mgs with the sum aggregator equals mixed; skipping non-finite steps."""

from __future__ import annotations

import math

import pytest
import torch

from mgs.errors import ConfigError
from mgs.train.builder import build_trainer
from mgs.train.config import load_config
from mgs.train.trainer import GRPOTrainer, seed_everything


def _train(overrides: list[str], steps: int = 3) -> tuple[GRPOTrainer, list[dict]]:
    cfg = load_config(None, overrides)
    seed_everything(cfg.seed)
    trainer = build_trainer(cfg)
    metrics = [trainer.step(s).metrics for s in range(steps)]
    trainer.close()
    return trainer, metrics


def test_mgs_with_sum_aggregator_equals_mixed(overrides) -> None:
    mixed, m_metrics = _train(overrides(strategy__name="mixed", strategy__track_conflicts="false"))
    summed, s_metrics = _train(
        overrides(
            strategy__name="custom", strategy__aggregator="sum", strategy__granularity="tensor"
        )
    )
    assert mixed.surgeon is None and summed.surgeon is not None
    for (name, a), (_, b) in zip(mixed.policy.named_parameters(), summed.policy.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # Same rollouts and rewards step after step (the parameters agreed at every step).
    for a, b in zip(m_metrics, s_metrics):
        assert a["reward/math/mean"] == pytest.approx(b["reward/math/mean"])
        assert a["reward/chat/mean"] == pytest.approx(b["reward/chat/mean"])


def test_mgs_changes_the_update_when_domains_conflict(overrides) -> None:
    mixed, _ = _train(overrides(strategy__name="mixed"), steps=2)
    mgs, metrics = _train(overrides(strategy__name="mgs"), steps=2)
    differs = any(
        not torch.allclose(a, b) for a, b in zip(mixed.policy.parameters(), mgs.policy.parameters())
    )
    projected = [m["surgery/projected_frac"] for m in metrics]
    assert differs == any(p > 0 for p in projected)
    assert "surgery/cos/math__chat" in metrics[0]


def test_step_metrics_are_logged_per_domain(overrides) -> None:
    _, metrics = _train(overrides(strategy__name="pcgrad"), steps=1)
    m = metrics[0]
    for key in (
        "reward/math/mean",
        "reward/chat/mean",
        "response_length/math/mean",
        "loss/pg_loss",
        "loss/clip_frac_low",
        "loss/grad_norm",
        "lr",
        "surgery/conflict_frac",
        "surgery/num_groups",
        "time/generation",
        "time/rewards",
        "time/backward",
        "time/surgery",
        "time/optimizer",
    ):
        assert key in m, key
        assert math.isfinite(m[key]), key
    assert m["surgery/num_groups"] == 1.0  # pcgrad = global surgery


def test_nonfinite_gradient_skips_the_update(overrides, monkeypatch) -> None:
    cfg = load_config(None, overrides(strategy__name="mgs"))
    seed_everything(cfg.seed)
    trainer = build_trainer(cfg)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    original = trainer.updater._backward

    def poisoned(batch, micro, advantages, old, ref, normalizer):
        stats = original(batch, micro, advantages, old, ref, normalizer)
        trainer.policy.lm_head.weight.grad.fill_(float("nan"))  # a NaN in this domain's buffer
        return stats

    monkeypatch.setattr(trainer.updater, "_backward", poisoned)
    out = trainer.step(0)
    trainer.close()
    assert out.metrics["skipped_updates"] == 1.0
    for a, b in zip(before, trainer.policy.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy.name=mgss", "strategy.name 'mgss' is unknown"),
        ("strategy.granularity=block", "strategy.granularity 'block' is unknown"),
        ("strategy.name=sequential", "needs data.mixture.phases"),
        ("grpo.loss.kl_kind=k9", "kl_kind"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("stepz=3", "did you mean 'steps'"),
        ("rewards.routes={math: math}", "domain 'chat' has no reward"),
    ],
)
def test_invalid_config_is_rejected_with_a_fix(overrides, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*overrides(), override])


@pytest.mark.parametrize("strategy", ["mixed", "mgs", "mixed-domain-norm"])
def test_grpo_learns_what_the_reward_asks(overrides, strategy: str) -> None:
    # Both domains reward the fraction of 'a' in the response: from a random tiny policy (about 1
    # character in 100 is an 'a') GRPO must raise it on both. A sign or credit-assignment error in
    # the advantages, the loss or the surgery would lower it or leave it flat.
    name, _, norm = strategy.partition("-")
    _, metrics = _train(
        overrides(
            strategy__name=name,
            strategy__advantage_norm="domain" if norm else "group",
            rewards__routes="{math: test_letter_a, chat: test_letter_a}",
            rollout__sampling__n=8,
            rollout__sampling__max_new_tokens=8,
            optim__lr=3e-2,
        ),
        steps=12,
    )
    for domain in ("math", "chat"):
        curve = [m[f"reward/{domain}/mean"] for m in metrics]
        first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
        assert first < 0.1 and last > first + 0.2, (domain, curve)
    assert ("advantage/domain_scale/math" in metrics[0]) == bool(norm)
