"""The RL core: group advantages, the GRPO loss, response log-probs and rollout backends.

Pure building blocks the trainer calls; see docs/rl.md for the maths and the layouts. Names are
imported lazily, so that importing a submodule (or ``mgs --help``) does not load torch and
transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ADVANTAGE_SCALES": "mgs.rl.advantages",
    "group_advantages": "mgs.rl.advantages",
    "AGGREGATION_MODES": "mgs.rl.aggregation",
    "aggregate": "mgs.rl.aggregation",
    "loss_normalizer": "mgs.rl.aggregation",
    "HFGenerateBackend": "mgs.rl.hf_generate",
    "completion_end": "mgs.rl.hf_generate",
    "position_ids_from_mask": "mgs.rl.logprobs",
    "response_logprobs": "mgs.rl.logprobs",
    "KL_PENALTIES": "mgs.rl.losses",
    "MAX_STATS": "mgs.rl.losses",
    "GRPOLossConfig": "mgs.rl.losses",
    "entropy_from_logits": "mgs.rl.losses",
    "grpo_loss": "mgs.rl.losses",
    "kl_penalty": "mgs.rl.losses",
    "policy_loss": "mgs.rl.losses",
    "sum_micro_batch_stats": "mgs.rl.losses",
    "Completion": "mgs.rl.rollout",
    "FinishReason": "mgs.rl.rollout",
    "RolloutBackend": "mgs.rl.rollout",
    "RolloutBatch": "mgs.rl.rollout",
    "SamplingConfig": "mgs.rl.rollout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mgs.rl' has no attribute {name!r}")
