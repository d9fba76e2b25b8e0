"""Typed configs of the rewards layer: one dataclass per reward plus the routing table.

YAML section ``rewards``::

    rewards:
      routes: {math: math, ifeval: ifeval, chat: reward_model}   # domain -> reward name
      fallback: 0.0
      extraction: {template: zero_think, on_missing_response: zero}
      math: {timeout_s: 5.0, num_workers: 2}
      ifeval: {mode: fraction, variant: strict}
      reward_model: {path: /models/Skywork-Reward-V2-Llama-3.1-8B, device: cuda, dtype: bfloat16}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mgs.dataclass_config import option
from mgs.errors import ConfigError
from mgs.rewards.extraction import ExtractionConfig
from mgs.rewards.registry import reward_names


@dataclass
class MathRewardConfig:
    """Math: math-verify on the last boxed answer, in worker processes with a hard deadline."""

    timeout_s: float = option(
        5.0, help="Hard deadline per sample in seconds; a sample past it scores 0 (counted)."
    )
    num_workers: int = option(2, help="Worker processes verifying answers in parallel.")
    memory_limit_mb: int = option(
        4096, help="Address-space limit of each worker in MiB (0: none); a sample over it scores 0."
    )
    max_answer_chars: int = option(
        1000, help="A boxed answer longer than this scores 0 without being parsed."
    )

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ConfigError(
                f"rewards.math.timeout_s must be > 0 seconds, e.g. 5.0; got {self.timeout_s}"
            )
        if self.num_workers < 1:
            raise ConfigError(
                f"rewards.math.num_workers must be >= 1, e.g. 2; got {self.num_workers}"
            )
        if self.memory_limit_mb < 0:
            raise ConfigError("rewards.math.memory_limit_mb must be >= 0 (0 turns the limit off)")
        if self.max_answer_chars < 1:
            raise ConfigError("rewards.math.max_answer_chars must be >= 1, e.g. 1000")


@dataclass
class IFEvalRewardConfig:
    """Instruction following: the IFEval checkers on the response."""

    mode: Literal["fraction", "all"] = option(
        "fraction",
        help="fraction: share of the prompt's instructions followed (the paper); "
        "all: 1 only when every instruction is followed.",
    )
    variant: Literal["strict", "loose"] = option(
        "strict",
        help="strict: the response as is; loose: IFEval's loose check (also without the first "
        "and/or last line, and without '*').",
    )


@dataclass
class RewardModelConfig:
    """A Hugging Face sequence-classification reward model scoring (prompt, response)."""

    path: str | None = option(
        None, help="Directory (or hub id, if reachable) of the reward model; required when routed."
    )
    device: str = option(
        "auto", help="Torch device: auto (cuda when available), cpu, cuda, cuda:1..."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="Weights dtype: auto (bfloat16 on GPU, float32 on CPU) or an explicit one."
    )
    batch_size: int = option(8, help="Samples per forward pass.")
    max_length: int = option(
        4096, help="Longest rendered conversation in tokens; longer ones lose their beginning."
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(
                f"rewards.reward_model.batch_size must be >= 1; got {self.batch_size}"
            )
        if self.max_length < 8:
            raise ConfigError(
                f"rewards.reward_model.max_length must be >= 8; got {self.max_length}"
            )


@dataclass
class RewardsConfig:
    """Which reward scores each domain, and how failures are scored."""

    routes: dict[str, str] = option(
        default_factory=dict,
        help="Domain -> reward name, e.g. {math: math, ifeval: ifeval, chat: reward_model}.",
    )
    fallback: float = option(
        0.0, help="Reward of a sample whose reward raised or returned None (counted in the stats)."
    )
    extraction: ExtractionConfig = option(
        default_factory=ExtractionConfig, help="Where the response is in a completion."
    )
    math: MathRewardConfig = option(default_factory=MathRewardConfig, help="The math reward.")
    ifeval: IFEvalRewardConfig = option(
        default_factory=IFEvalRewardConfig, help="The instruction-following reward."
    )
    reward_model: RewardModelConfig = option(
        default_factory=RewardModelConfig, help="The reward-model reward."
    )

    def __post_init__(self) -> None:
        if not math.isfinite(self.fallback):
            raise ConfigError(
                f"rewards.fallback must be a finite number, e.g. 0.0; got {self.fallback}"
            )
        known = reward_names()
        for domain, name in self.routes.items():
            if name not in known:
                raise ConfigError(
                    f"rewards.routes.{domain}: unknown reward {name!r}; valid names: "
                    f"{', '.join(known)} (register your own with @mgs.rewards.register_reward)"
                )
            if name == "reward_model" and not self.reward_model.path:
                raise ConfigError(
                    f"rewards.routes.{domain} uses the reward model but no model is set; set "
                    "rewards.reward_model.path to a Hugging Face sequence-classification model "
                    "directory (train the tiny one with `mgs rm-train`)"
                )

    def options_for(self, name: str) -> dict[str, object]:
        """The options :func:`~mgs.rewards.get_reward` gets for reward ``name`` (built-ins only)."""
        from mgs.dataclass_config import to_dict

        section = {
            "math": self.math,
            "ifeval": self.ifeval,
            "ifbench": self.ifeval,  # the same checks and options under IFBench's name
            "reward_model": self.reward_model,
        }
        return to_dict(section[name]) if name in section else {}
