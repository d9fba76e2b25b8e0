"""Rewards: response extraction, the math / IFEval / reward-model rewards, routed by domain.

Importing this package is light (no sympy, NLTK or torch): each reward loads its libraries when
it is built. See ``docs/rewards.md``.
"""

from mgs.rewards.config import (
    IFEvalRewardConfig,
    MathRewardConfig,
    RewardModelConfig,
    RewardsConfig,
)
from mgs.rewards.extraction import ExtractionConfig, Parsed, split_completion
from mgs.rewards.registry import (
    Reward,
    Scores,
    get_reward,
    register_reward,
    reward_names,
    unregister_reward,
)

__all__ = [
    "ExtractionConfig",
    "IFEvalRewardConfig",
    "MathRewardConfig",
    "Parsed",
    "Reward",
    "RewardModelConfig",
    "RewardsConfig",
    "Scores",
    "get_reward",
    "register_reward",
    "reward_names",
    "split_completion",
    "unregister_reward",
]
