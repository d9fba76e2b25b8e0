"""The RL core: group advantages, the GRPO loss, response log-probs and rollout backends.

Pure building blocks the trainer calls; see docs/rl.md for the maths and the layouts.
"""

from mgs.rl.advantages import ADVANTAGE_SCALES, group_advantages
from mgs.rl.aggregation import AGGREGATION_MODES, aggregate, loss_normalizer
from mgs.rl.hf_generate import HFGenerateBackend, completion_end
from mgs.rl.logprobs import position_ids_from_mask, response_logprobs
from mgs.rl.losses import (
    KL_PENALTIES,
    MAX_STATS,
    GRPOLossConfig,
    entropy_from_logits,
    grpo_loss,
    kl_penalty,
    policy_loss,
    sum_micro_batch_stats,
)
from mgs.rl.rollout import (
    Completion,
    FinishReason,
    RolloutBackend,
    RolloutBatch,
    SamplingConfig,
)

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATION_MODES",
    "KL_PENALTIES",
    "MAX_STATS",
    "Completion",
    "FinishReason",
    "GRPOLossConfig",
    "HFGenerateBackend",
    "RolloutBackend",
    "RolloutBatch",
    "SamplingConfig",
    "aggregate",
    "completion_end",
    "entropy_from_logits",
    "group_advantages",
    "grpo_loss",
    "kl_penalty",
    "loss_normalizer",
    "policy_loss",
    "position_ids_from_mask",
    "response_logprobs",
    "sum_micro_batch_stats",
]
