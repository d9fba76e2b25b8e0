"""Group-normalised advantages: hand-worked values, layout, properties, errors."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from mgs.errors import UnknownNameError
from mgs.rl.advantages import group_advantages, scale_by_domain


def test_hand_worked_std_scaling() -> None:
    # Three prompts x G=4, group-contiguous.
    # group 0: [1, 0, 0, 1]: mean 0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.57735
    #          -> +-0.5 / 0.57735 = +-0.866025
    # group 1: [1, 1, 1, 1]: zero variance -> all 0
    # group 2: [0, 0, 0, 1]: mean 0.25, var = (3 * 0.0625 + 0.5625) / 3 = 0.25, std 0.5
    #          -> [-0.5, -0.5, -0.5, 1.5]
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    adv, stats = group_advantages(rewards, 4, eps=0.0)
    s = math.sqrt(3) / 2
    expected = torch.tensor([s, -s, -s, s, 0, 0, 0, 0, -0.5, -0.5, -0.5, 1.5])
    torch.testing.assert_close(adv, expected)
    assert stats["zero_std_frac"].item() == pytest.approx(1 / 3)
    assert stats["reward_mean"].item() == pytest.approx(7 / 12)
    assert stats["group_std_mean"].item() == pytest.approx((1 / math.sqrt(3) + 0 + 0.5) / 3)


def test_eps_is_added_to_std() -> None:
    # [0, 2]: mean 1, unbiased std sqrt(2); eps = 0.5 -> -+1 / (sqrt(2) + 0.5)
    adv, _ = group_advantages(torch.tensor([0.0, 2.0]), 2, eps=0.5)
    d = 1 / (math.sqrt(2) + 0.5)
    torch.testing.assert_close(adv, torch.tensor([-d, d]))


def test_dr_grpo_no_scaling() -> None:
    # scale="none": r - mean only. [3, 1, 2] mean 2 -> [1, -1, 0]; [5, 5, 8] mean 6 -> [-1, -1, 2]
    adv, _ = group_advantages(torch.tensor([3.0, 1, 2, 5, 5, 8]), 3, scale="none")
    torch.testing.assert_close(adv, torch.tensor([1.0, -1, 0, -1, -1, 2]))


def test_matches_statistics_oracle_on_random_groups() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(5 * 6, generator=gen, dtype=torch.float64)
    adv, _ = group_advantages(rewards, 6)
    for g in range(5):
        group = rewards[g * 6 : g * 6 + 6].tolist()
        mean, std = statistics.fmean(group), statistics.stdev(group)  # stdev is unbiased
        for k in range(6):
            assert adv[g * 6 + k].item() == pytest.approx((group[k] - mean) / (std + 1e-6))


def test_properties_zero_mean_and_affine_invariance() -> None:
    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(4 * 8, generator=gen, dtype=torch.float64)
    adv, _ = group_advantages(rewards, 8, eps=0.0)
    torch.testing.assert_close(adv.view(4, 8).sum(1), torch.zeros(4, dtype=torch.float64))
    # unit unbiased std inside each group
    torch.testing.assert_close(adv.view(4, 8).std(1), torch.ones(4, dtype=torch.float64))
    # a positive affine change of the reward leaves std-scaled advantages unchanged
    adv2, _ = group_advantages(3.0 * rewards - 7.0, 8, eps=0.0)
    torch.testing.assert_close(adv2, adv)
    # permuting rollouts inside a group permutes their advantages (and nothing else)
    perm = torch.randperm(8, generator=gen)
    shuffled = rewards.view(4, 8)[:, perm].reshape(-1)
    adv3, _ = group_advantages(shuffled, 8, eps=0.0)
    torch.testing.assert_close(adv3, adv.view(4, 8)[:, perm].reshape(-1))


def test_group_size_one_gives_zero_advantage() -> None:
    adv, stats = group_advantages(torch.tensor([1.0, 0.0, 0.5]), 1)
    assert torch.equal(adv, torch.zeros(3))
    assert stats["zero_std_frac"].item() == 1.0


def test_integer_rewards_are_accepted() -> None:
    adv, _ = group_advantages(torch.tensor([1, 0]), 2, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([1 / math.sqrt(2), -1 / math.sqrt(2)]))


def test_non_finite_reward_names_its_index() -> None:
    rewards = torch.tensor([0.0, 1.0, 0.0, float("nan")])
    with pytest.raises(ValueError, match=r"index 3 \(prompt 1, rollout 1\)"):
        group_advantages(rewards, 2)
    with pytest.raises(ValueError, match="index 0"):
        group_advantages(torch.tensor([float("inf"), 1.0]), 2)


def test_bad_layout_and_names() -> None:
    with pytest.raises(ValueError, match="G=4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match=r"\[B \* G\]"):
        group_advantages(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="positive integer"):
        group_advantages(torch.zeros(2), 0)
    with pytest.raises(UnknownNameError, match="valid names: none, std"):
        group_advantages(torch.zeros(2), 2, scale="mad")


def test_per_domain_scaling_by_hand():
    # Centred rewards (group size 2): math groups (+1, -1) and (+3, -3); chat (+0.5, -0.5), then a
    # padding pair. RMS: math sqrt((1+1+9+9)/4) = sqrt(5); chat 0.5 (padding left out).
    centred = torch.tensor([1.0, -1.0, 3.0, -3.0, 0.5, -0.5, 7.0, -7.0])
    rows = ["math"] * 4 + ["chat"] * 4
    valid = torch.tensor([True] * 6 + [False] * 2)
    adv, stats = scale_by_domain(centred, rows, ["math", "chat"], valid, eps=0.0)
    root5 = 5**0.5
    expected = [1 / root5, -1 / root5, 3 / root5, -3 / root5, 1.0, -1.0, 0.0, 0.0]
    assert adv.tolist() == pytest.approx(expected)
    assert stats == pytest.approx({"domain_scale/math": root5, "domain_scale/chat": 0.5})


def test_per_domain_scaling_reduces_over_ranks_and_zero_spread_stays_zero():
    centred = torch.tensor([2.0, -2.0, 0.0, 0.0])
    rows = ["math", "math", "chat", "chat"]
    valid = torch.ones(4, dtype=torch.bool)
    # Another rank holds math sums of squares 8 over 2 rows: global math RMS sqrt((8+8)/4) = 2.
    other = torch.tensor([[8.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    adv, stats = scale_by_domain(
        centred, rows, ["math", "chat"], valid, eps=0.0, reduce=lambda t: t + other
    )
    assert adv.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])  # chat: all ties, scale 0 -> 0
    assert stats["domain_scale/chat"] == 0.0
