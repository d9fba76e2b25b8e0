"""A tiny, fast trainer config for tests: small model, short rollouts, cheap in-process rewards."""

from __future__ import annotations

import pytest

from mgs.rewards import register_reward


@register_reward("test_letter_a")
def letter_a_reward(prompts, completions, **columns):
    """Fraction of the letter 'a' in the response: cheap, dense and deterministic."""
    return [c.count("a") / max(1, len(c)) for c in completions]


@register_reward("test_length")
def length_reward(prompts, completions, **columns):
    """Shorter responses score higher: pulls against test_letter_a's wish for more 'a's."""
    return [1.0 / (1.0 + len(c)) for c in completions]


def tiny_overrides(**extra: object) -> list[str]:
    base = {
        "steps": 3,
        "num_threads": 1,
        "model.tiny.hidden_size": 32,
        "model.tiny.num_layers": 2,
        "model.tiny.intermediate_size": 64,
        "data.sources": "[{domain: math, synthetic: tiny_math, size: 64}, {domain: chat, synthetic: tiny_chat, size: 64}]",
        "data.mixture.batch_size": 4,
        "data.mixture.proportions": "{math: 1, chat: 1}",
        "rewards.routes": "{math: test_letter_a, chat: test_length}",
        "rewards.reward_model.path": "unused",
        "rewards.extraction.on_missing_response": "after_think",
        "rollout.sampling.n": 2,
        "rollout.sampling.max_new_tokens": 12,
        "rollout.sampling.temperature": 1.0,
        "grpo.micro_batch_size": 3,
        "optim.lr": 1e-2,
        "warmstart.sft.steps": 0,
        "eval.prompts_per_domain": 0,
        "logging.progress": False,
        "logging.save_model": False,
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def overrides():
    return tiny_overrides
