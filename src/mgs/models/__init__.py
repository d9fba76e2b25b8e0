"""Models: the built-in tiny architecture and loading Hugging Face models by path or name."""

from mgs.models.tiny import (
    TINY_SPECIAL_TOKENS,
    TinyModelConfig,
    build_tiny_policy,
    build_tiny_reward_model,
    build_tiny_tokenizer,
)

__all__ = [
    "TINY_SPECIAL_TOKENS",
    "TinyModelConfig",
    "build_tiny_policy",
    "build_tiny_reward_model",
    "build_tiny_tokenizer",
]
