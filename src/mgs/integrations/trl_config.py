"""What ``MGSGRPOTrainer`` takes besides TRL's arguments, and which TRL settings it can honour.

No TRL import here: these are plain checks on the values of a ``GRPOConfig`` (read by attribute
name), so they are unit-tested without TRL and run before any step.

Why some settings are refused: the trainer back-propagates each domain's rows of a micro-batch
separately and rescales each part so that the parts add up exactly to TRL's micro-batch loss
(see :data:`LOSS_NORMALISERS`). That holds for every TRL loss whose terms are per row (a row's
loss depends only on that row) once the normaliser is known. It fails for terms that depend on the
whole micro-batch in another way, which are refused with the option to change:

- the entropy bonus (``entropy_coef``, ``use_adaptive_entropy``): TRL normalises it by the
  micro-batch's token count, a normaliser other than the policy term's, so one factor per part
  cannot make both exact;
- ``top_entropy_quantile < 1``: the entropy threshold is a quantile over the whole micro-batch;
- a router auxiliary loss (mixture-of-experts models, ``router_aux_loss_coef``): not per row;
- ``fp16``: TRL's GradScaler unscales the gradients in the clipping that the surgeon replaces;
- DeepSpeed, FSDP, Megatron, XLA: tested only for one process and DDP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from mgs.dataclass_config import option
from mgs.errors import ConfigError, unknown_name
from mgs.strategy import get_strategy, strategy_names

# `mgs train`'s strategy names that are a gradient combination: (aggregator, granularity).
# `sequential` is a schedule of data phases (the dataset's order is the TRL user's), `custom` is a
# SurgeryConfig with both fields given. Kept in line with mgs.train.config.StrategyConfig by a test.
# mgs train's strategies that combine gradients of mixed batches, as (aggregator, granularity),
# taken from the one home of strategies (mgs.strategy): sequential is a data schedule, custom has
# no defaults.
STRATEGIES: dict[str, tuple[str, str]] = {
    s.name: (str(s.aggregator), str(s.granularity))
    for s in map(get_strategy, strategy_names())
    if s.schedule == "mixed"
}

# How TRL 1.16 normalises each loss type over a micro-batch, hence the factor that turns a
# domain's sub-batch loss (computed by TRL on that sub-batch alone) into its exact part of the
# micro-batch loss (trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss):
# - "rows": a mean over the micro-batch's rows (grpo, sapo, luspo; dr_grpo divides by
#   rows x max_completion_length): factor rows_d / rows;
# - "tokens": a mean over the micro-batch's completion tokens (bnpo): factor tokens_d / tokens;
# - "global": a constant for the whole generation batch (num_items_in_batch: dapo, cispo, vespo):
#   factor 1.
LOSS_NORMALISERS: dict[str, str] = {
    "grpo": "rows",
    "sapo": "rows",
    "luspo": "rows",
    "dr_grpo": "rows",
    "bnpo": "tokens",
    "dapo": "global",
    "cispo": "global",
    "vespo": "global",
}

BUFFER_DTYPES = ("auto", "float32", "bfloat16")
_UNSUPPORTED_DISTRIBUTED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")


@dataclass
class SurgeryConfig:
    """How ``MGSGRPOTrainer`` combines the domains' gradients (``surgery=``)."""

    aggregator: str | Callable[..., Any] = option(
        "pcgrad",
        help="sum (= plain TRL), mean, pcgrad, a registered aggregator, or a callable "
        "(gram [M,K,K], active [K], orders [M,K,K-1]) -> (coef [M,K], fired [M,K]).",
    )
    granularity: str | Callable[..., Any] = option(
        "tensor",
        help="Unit of surgery: tensor, module, layer, global, or a callable (name, param) -> key.",
    )
    seed: int = option(0, help="Seed of PCGrad's random domain orders (step t uses seed and t).")
    buffer_dtype: str = option(
        "auto",
        help="dtype of the per-domain gradient buffers: auto (the parameters'), float32, bfloat16.",
    )
    domains: Sequence[str] | None = option(
        None,
        help="Domain names in a fixed order (the same on every rank). None: the sorted distinct "
        "values of the train dataset's domain column (needed for an IterableDataset).",
    )

    def __post_init__(self) -> None:
        from mgs.surgery import GRANULARITIES, available_aggregators

        if isinstance(self.aggregator, str) and self.aggregator not in available_aggregators():
            raise ConfigError(
                f"surgery aggregator {self.aggregator!r} is unknown; write one of: "
                f"{', '.join(available_aggregators())} (or pass a callable)"
            )
        if isinstance(self.granularity, str) and self.granularity not in GRANULARITIES:
            raise ConfigError(
                f"surgery granularity {self.granularity!r} is unknown; write one of: "
                f"{', '.join(GRANULARITIES)} (or pass a callable (name, param) -> key)"
            )
        if self.buffer_dtype not in BUFFER_DTYPES:
            raise ConfigError(
                f"surgery buffer_dtype {self.buffer_dtype!r} is unknown; write one of: "
                f"{', '.join(BUFFER_DTYPES)}"
            )
        if self.domains is not None:
            domains = list(self.domains)
            if not domains or len(set(domains)) != len(domains):
                raise ConfigError(
                    f"surgery domains must be a non-empty list of distinct names, got {domains!r}"
                )
            if not all(isinstance(d, str) for d in domains):
                raise ConfigError(f"surgery domains must be strings, got {domains!r}")
            self.domains = domains

    @classmethod
    def from_strategy(cls, name: str, **overrides: Any) -> SurgeryConfig:
        """``mgs train``'s strategy ``name`` (mgs, pcgrad, mixed) as a surgery config."""
        if name == "sequential":
            raise ConfigError(
                "surgery 'sequential' is a schedule of data phases, not a way to combine "
                "gradients; with TRL, order your dataset by phase and use surgery='mixed'"
            )
        if name == "custom":
            raise ConfigError(
                "surgery 'custom' needs its aggregator and granularity: pass "
                "SurgeryConfig(aggregator='pcgrad', granularity='layer') instead"
            )
        if name not in STRATEGIES:
            raise unknown_name("surgery strategy", name, list(STRATEGIES))
        aggregator, granularity = STRATEGIES[name]
        return cls(**{"aggregator": aggregator, "granularity": granularity, **overrides})


def resolve_surgery(surgery: SurgeryConfig | str | Mapping[str, Any] | None) -> SurgeryConfig:
    """``surgery=`` as given to the trainer -> a :class:`SurgeryConfig` (None: strategy mgs)."""
    if surgery is None:
        return SurgeryConfig.from_strategy("mgs")
    if isinstance(surgery, SurgeryConfig):
        return surgery
    if isinstance(surgery, str):
        return SurgeryConfig.from_strategy(surgery)
    if isinstance(surgery, Mapping):
        valid = [f.name for f in fields(SurgeryConfig)]
        bad = [k for k in surgery if k not in valid]
        if bad:
            raise ConfigError(
                f"surgery has no option {bad[0]!r}; valid options: {', '.join(valid)}"
            )
        return SurgeryConfig(**surgery)
    raise ConfigError(
        f"surgery must be a strategy name ({', '.join(STRATEGIES)}), a SurgeryConfig or a dict "
        f"of its fields, got {type(surgery).__name__}"
    )


def check_supported(args: Any, *, distributed_type: str, aux_loss: bool) -> None:
    """Refuse, with the option to change, any TRL setting whose loss cannot be split by domain.

    ``args`` is a ``trl.GRPOConfig`` (read by attribute), ``distributed_type`` the name of
    accelerate's ``DistributedType``, ``aux_loss`` whether TRL adds a router auxiliary loss.
    """
    loss_type = args.loss_type
    if loss_type not in LOSS_NORMALISERS:
        raise ConfigError(
            f"MGSGRPOTrainer cannot split loss_type={loss_type!r} by domain; use one of: "
            f"{', '.join(LOSS_NORMALISERS)}"
        )
    if getattr(args, "use_adaptive_entropy", False) or getattr(args, "entropy_coef", 0.0) != 0.0:
        raise ConfigError(
            "MGSGRPOTrainer does not support TRL's entropy bonus (it is normalised over the whole "
            "micro-batch, so it cannot be split by domain exactly); set entropy_coef=0.0 and "
            "use_adaptive_entropy=False"
        )
    if getattr(args, "top_entropy_quantile", 1.0) < 1.0:
        raise ConfigError(
            "MGSGRPOTrainer does not support top_entropy_quantile < 1.0 (the entropy threshold is "
            "a quantile over the whole micro-batch); set top_entropy_quantile=1.0"
        )
    if aux_loss:
        raise ConfigError(
            "MGSGRPOTrainer does not support a router auxiliary loss (mixture-of-experts models): "
            "it is not a sum over samples; set router_aux_loss_coef=0.0 in the model config"
        )
    if getattr(args, "fp16", False):
        raise ConfigError(
            "MGSGRPOTrainer does not support fp16 (TRL's GradScaler unscales gradients in the "
            "clipping step the surgeon replaces); use bf16=True or float32"
        )
    if getattr(args, "remove_unused_columns", False):
        raise ConfigError(
            "remove_unused_columns=True drops the domain column before it reaches the trainer; "
            "set remove_unused_columns=False (GRPOConfig's default)"
        )
    if "lomo" in str(getattr(args, "optim", "")).lower():
        raise ConfigError(
            f"MGSGRPOTrainer does not support optim={args.optim!r} (LOMO steps inside the "
            "backward pass, before the surgeon combines the domains); use adamw_torch"
        )
    if distributed_type in _UNSUPPORTED_DISTRIBUTED:
        raise ConfigError(
            f"MGSGRPOTrainer supports one process and DDP (accelerate MULTI_GPU / MULTI_CPU), not "
            f"{distributed_type}; launch with plain `accelerate launch` / torchrun without a "
            "DeepSpeed or FSDP config"
        )
