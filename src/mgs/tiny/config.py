"""Configs of the built-in demo: the tiny model's size and the warm start before RL.

Light on purpose (no torch, no transformers): :class:`~mgs.train.config.TrainConfig` holds them as
its ``model.tiny`` and ``warmstart`` sections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mgs.dataclass_config import option
from mgs.errors import ConfigError


@dataclass
class TinyModelConfig:
    """Size of the built-in tiny Qwen2 (the embedded default's policy and reward model)."""

    hidden_size: int = option(128, help="Width of the residual stream.")
    num_layers: int = option(4, help="Number of transformer blocks.")
    num_heads: int = option(4, help="Attention heads (hidden_size must divide by it).")
    num_kv_heads: int = option(2, help="Key/value heads (grouped-query attention).")
    intermediate_size: int = option(256, help="Width of the MLP.")
    max_positions: int = option(1024, help="Longest prompt + response, in tokens (characters).")
    seed: int = option(0, help="Seed of the random initialisation.")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.tiny.{name} must be a positive integer")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.tiny.hidden_size ({self.hidden_size}) must be divisible by "
                f"model.tiny.num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"model.tiny.num_heads ({self.num_heads}) must be divisible by "
                f"model.tiny.num_kv_heads ({self.num_kv_heads})"
            )


@dataclass
class SFTConfig:
    """Supervised warm-start on the built-in domains' demonstrations."""

    steps: int = option(0, help="Optimizer steps of supervised fine-tuning; 0 skips it.")
    batch_size: int = option(32, help="Demonstrations per step.")
    lr: float = option(3e-3, help="AdamW learning rate (constant after a short warm-up).")
    demonstrations: int = option(2000, help="Demonstrations generated per built-in domain.")
    careless_fraction: float = option(
        0.0,
        help="Fraction of each built-in domain's demonstrations written carelessly, with one "
        "flaw the domain's reward catches (math: answer not boxed; if: first instruction "
        "forgotten; chat: 'I do not know.'): the warm start then slips at about this rate, "
        "and RL has something to fix on every domain.",
    )

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(
                f"warmstart.sft.steps must be >= 0 (0 skips the warm start), got {self.steps}"
            )
        if self.batch_size < 1 or self.demonstrations < 1:
            raise ConfigError(
                "warmstart.sft.batch_size and warmstart.sft.demonstrations must be positive "
                f"integers, got {self.batch_size} and {self.demonstrations}"
            )
        if not 0 < self.lr < math.inf:
            raise ConfigError(
                f"warmstart.sft.lr must be > 0 and finite, got {self.lr}; write e.g. 2e-3"
            )
        if not 0.0 <= self.careless_fraction <= 1.0:
            raise ConfigError(
                f"warmstart.sft.careless_fraction must lie in [0, 1], got {self.careless_fraction}"
            )


@dataclass
class WarmStartConfig:
    """What happens before RL: supervised warm-start and the tiny reward model, both cached."""

    sft: SFTConfig = option(default_factory=SFTConfig, help="Supervised warm-start.")
    reward_model_pairs: int = option(
        3000,
        help="Preference pairs for the tiny chat reward model (reward_model.path: builtin:tiny).",
    )
    cache_dir: str = option(
        ".mgs_cache", help="Where warm-start artefacts are cached (keyed by their config)."
    )

    def __post_init__(self) -> None:
        if self.reward_model_pairs < 4:
            raise ConfigError(
                "warmstart.reward_model_pairs must be at least 4 (some are held out to measure "
                f"the reward model's accuracy), got {self.reward_model_pairs}; e.g. 3000"
            )
