"""The run config of ``mgs train``: one YAML, one dataclass per concern, every field documented.

``mgs train --help-config`` prints every key with its default and help string (from
:func:`mgs.dataclass_config.describe`). Sections:

- ``model``: the policy (a Hugging Face path / name, or ``tiny``, the built-in demo's model);
- ``data``: prompt sources, template and domain mixture (:mod:`mgs.data`);
- ``rewards``: the reward of each domain (:mod:`mgs.rewards`);
- ``rollout``: sampling (:class:`mgs.rl.SamplingConfig`) and the generation backend;
- ``grpo``: advantages, the loss (:class:`mgs.rl.GRPOLossConfig`), mini- and micro-batches;
- ``strategy``: sequential / mixed / pcgrad / mgs, or any aggregator x granularity
  (:mod:`mgs.strategy`);
- ``optim``: AdamW and the learning-rate schedule;
- ``warmstart``: supervised warm-start and the tiny reward model (the built-in demo,
  :mod:`mgs.tiny`);
- ``eval``: the held-out evaluation before and after RL;
- ``logging``: run directory, metrics files, TensorBoard / W&B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mgs.data.pipeline import DataConfig
from mgs.dataclass_config import apply_overrides, from_dict, load_yaml, option
from mgs.errors import ConfigError
from mgs.models.lora import LoRAConfig
from mgs.models.registry import is_builtin_model
from mgs.rewards.config import RewardsConfig
from mgs.rl.losses import GRPOLossConfig
from mgs.rl.rollout import SamplingConfig
from mgs.rl.vllm_engine import VLLMConfig
from mgs.strategy import StrategyConfig, check_schedule
from mgs.tiny import DEFAULT_CONFIG
from mgs.tiny.config import TinyModelConfig, WarmStartConfig
from mgs.train.config_checks import check_lora, check_positions, check_rollouts
from mgs.train.distributed import DistributedConfig
from mgs.train.precision import MixedPrecisionConfig


@dataclass
class ModelConfig:
    """The policy model."""

    name: str = option(
        help="A Hugging Face model directory / hub name (loaded with AutoModelForCausalLM), or a "
        "model built in-process: tiny (the built-in demo's Qwen2 with a character tokenizer).",
    )
    tiny: TinyModelConfig = option(
        default_factory=TinyModelConfig, help="Size of the built-in tiny model (name: tiny)."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = option(
        "float32", help="Weights dtype of the policy (bfloat16 on GPUs)."
    )
    device: str = option("auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1...")
    attn_implementation: str | None = option(
        None, help="Passed to from_pretrained (e.g. sdpa, flash_attention_2); null: the default."
    )
    gradient_checkpointing: bool = option(
        False, help="Recompute activations in backward to save memory (large models)."
    )
    mixed_precision: MixedPrecisionConfig = option(
        default_factory=MixedPrecisionConfig,
        help="bf16 compute with float32 master weights (docs/lora.md#mixed-precision).",
    )
    lora: LoRAConfig | None = option(
        None,
        help="Train low-rank adapters instead of every weight (through peft: pip install "
        "'mgs[lora]'; docs/lora.md); null: full fine-tuning.",
    )

    def __post_init__(self) -> None:
        self.mixed_precision.check_master_dtype(self.dtype)


@dataclass
class RolloutConfig:
    """How rollouts are generated."""

    sampling: SamplingConfig = option(
        default_factory=SamplingConfig, help="Group size n, temperature, top-p, stop strings..."
    )
    backend: Literal["hf", "vllm"] = option(
        "hf",
        help="hf: model.generate in-process; vllm: a colocated vLLM engine per rank "
        "(pip install 'mgs[vllm]'; docs/vllm.md).",
    )
    micro_batch_size: int = option(64, help="Sequences per generate() call (hf backend).")
    decode: Literal["generate", "fast", "auto"] = option(
        "generate",
        help="Decode loop of the hf backend. generate: model.generate; fast: a lean loop on the "
        "model's own modules with a preallocated KV cache (Qwen2 / Llama only, unsharded; same "
        "tokens as generate, much less per-token overhead for small models); auto: fast where "
        "supported, else generate. fast covers greedy and batch_invariant sampling; "
        "batch_invariant: false sampling always uses generate.",
    )
    vllm: VLLMConfig = option(default_factory=VLLMConfig, help="The vLLM engine (backend: vllm).")

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1:
            raise ConfigError(f"rollout.micro_batch_size must be >= 1, got {self.micro_batch_size}")


@dataclass
class GRPOConfig:
    """Advantages, loss and how a batch is split for the updates."""

    loss: GRPOLossConfig = option(
        default_factory=GRPOLossConfig, help="Clipped PPO loss, KL and entropy terms, aggregation."
    )
    advantage_scale: Literal["std", "none"] = option(
        "std", help="std: (r - mean) / (std + eps) per group (GRPO); none: r - mean (Dr.GRPO)."
    )
    advantage_eps: float = option(1e-6, help="Added to the group std.")
    mini_batches: int = option(
        1, help="Optimizer steps per rollout batch (the paper: 1, i.e. fully on-policy)."
    )
    epochs: int = option(1, help="Passes over the rollout batch (PPO epochs).")
    micro_batch_size: int = option(
        16, help="Sequences per forward/backward pass (memory knob; results do not depend on it)."
    )

    def __post_init__(self) -> None:
        for name in ("mini_batches", "epochs", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"grpo.{name} must be a positive integer, got {getattr(self, name)}"
                )
        if not self.advantage_eps >= 0:
            raise ConfigError(f"grpo.advantage_eps must be >= 0, got {self.advantage_eps}")


@dataclass
class OptimConfig:
    """AdamW and its schedule (the paper: lr 1e-6 constant, weight decay 0.01, clip 1.0)."""

    lr: float = option(1e-6, help="Peak learning rate.")
    weight_decay: float = option(0.01, help="AdamW weight decay.")
    betas: tuple[float, float] = option((0.9, 0.999), help="AdamW betas.")
    eps: float = option(1e-8, help="AdamW epsilon.")
    grad_clip: float | None = option(1.0, help="Max global grad norm; null: no clipping.")
    warmup_steps: int = option(0, help="Linear warm-up steps.")
    schedule: Literal["constant", "cosine", "linear"] = option(
        "constant", help="Learning-rate schedule after warm-up."
    )

    def __post_init__(self) -> None:
        if not 0 < self.lr < math.inf:
            raise ConfigError(
                f"optim.lr must be > 0 and finite, got {self.lr}; write e.g. optim.lr=1e-6"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(
                f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}; write e.g. "
                "optim.betas=[0.9,0.999]"
            )
        if not 0 <= self.eps < math.inf or not 0 <= self.weight_decay < math.inf:
            raise ConfigError(
                f"optim.eps and optim.weight_decay must be finite numbers >= 0, got {self.eps} "
                f"and {self.weight_decay}; write e.g. optim.eps=1e-8 optim.weight_decay=0.01"
            )
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ConfigError(
                f"optim.grad_clip must be a finite number > 0, or null for no clipping; got "
                f"{self.grad_clip}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class HeldOutConfig:
    """Held-out evaluation on every domain, before and after RL (the ``eval`` section).

    Runs on the generated domains' held-out prompts with the training's own rewards, through the
    same engine as ``mgs eval`` (:mod:`mgs.eval.engine`)."""

    prompts_per_domain: int = option(64, help="Held-out prompts per domain; 0 disables it.")
    samples: int = option(1, help="Completions per prompt (reward averaged over them).")
    temperature: float = option(0.0, help="0: greedy decoding.")
    every: int = option(
        0,
        help="Also evaluate every N steps during training, logged as heldout/<domain>/reward in "
        "metrics.jsonl (0: only before / after RL).",
    )

    def __post_init__(self) -> None:
        for name in ("prompts_per_domain", "every"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"eval.{name} must be >= 0 (0 turns it off), got {getattr(self, name)}"
                )
        if self.samples < 1:
            raise ConfigError(f"eval.samples must be >= 1, got {self.samples}; e.g. eval.samples=8")
        if not 0 <= self.temperature < math.inf:
            raise ConfigError(
                f"eval.temperature must be a finite number >= 0 (0: greedy), got {self.temperature}"
            )
        if self.temperature == 0 and self.samples > 1:
            raise ConfigError(
                f"eval.temperature 0 (greedy) gives {self.samples} identical samples per prompt; "
                "set eval.temperature > 0 (e.g. 1.0) or eval.samples=1"
            )


@dataclass
class LoggingConfig:
    """Where the run writes and how often."""

    run_dir: str | None = option(
        None,
        help="Run directory, new or empty (one that holds files is never reused: see `mgs train "
        "--resume` / --overwrite); null: runs/<UTC time>-<strategy>.",
    )
    surgery_stats_every: int = option(
        10, help="Write the full per-group surgery arrays every N steps (0: never)."
    )
    tensorboard: bool = option(
        False, help="Also write TensorBoard event files (needs tensorboard)."
    )
    wandb_project: str | None = option(None, help="Also log to this Weights & Biases project.")
    progress: bool = option(True, help="Show a progress bar.")
    save_model: bool = option(True, help="Save the final policy as a Hugging Face directory.")
    save_merged: bool = option(
        False,
        help="With model.lora: also save the merged policy (base + adapters) as a full Hugging "
        "Face directory in model_merged/ (model/ holds the adapter). Saved anyway when the base "
        "cannot be reloaded by model.name (built in-process or warm-started).",
    )
    checkpoint_every: int = option(
        0, help="Write a resumable checkpoint every N steps (0: never); see `mgs train --resume`."
    )
    keep_checkpoints: int = option(
        2,
        help="How many of the latest checkpoints to keep (with 2 or more, a resume falls back "
        "past a damaged latest one).",
    )

    def __post_init__(self) -> None:
        if self.surgery_stats_every < 0:
            raise ConfigError(
                "logging.surgery_stats_every must be >= 0 (0: never write the arrays), got "
                f"{self.surgery_stats_every}"
            )
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ConfigError(
                "logging.checkpoint_every must be >= 0 and logging.keep_checkpoints >= 1, got "
                f"{self.checkpoint_every} and {self.keep_checkpoints}"
            )


@dataclass
class TrainConfig:
    """Everything ``mgs train`` needs. Only the model and the data sources have no default."""

    model: ModelConfig = option(help="The policy.")
    steps: int = option(100, help="Optimizer steps of RL (rollout batches).")
    seed: int = option(0, help="Global seed (model init, sampling, PCGrad orders).")
    num_threads: int = option(0, help="torch CPU threads (0: torch's default).")
    data: DataConfig = option(default_factory=DataConfig, help="Prompts and mixture.")
    rewards: RewardsConfig = option(default_factory=RewardsConfig, help="Rewards by domain.")
    rollout: RolloutConfig = option(default_factory=RolloutConfig, help="Generation.")
    grpo: GRPOConfig = option(default_factory=GRPOConfig, help="GRPO.")
    strategy: StrategyConfig = option(default_factory=StrategyConfig, help="Gradient strategy.")
    optim: OptimConfig = option(default_factory=OptimConfig, help="Optimizer.")
    warmstart: WarmStartConfig = option(default_factory=WarmStartConfig, help="Warm-start.")
    eval: HeldOutConfig = option(default_factory=HeldOutConfig, help="Held-out evaluation.")
    logging: LoggingConfig = option(default_factory=LoggingConfig, help="Logging.")
    distributed: DistributedConfig = option(
        default_factory=DistributedConfig, help="DDP / FSDP2 under torchrun."
    )

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.num_threads < 0:
            raise ConfigError(
                f"num_threads must be >= 0 (0: torch's default), got {self.num_threads}"
            )
        if not self.data.sources:
            raise ConfigError(
                "data.sources is empty; list at least one source, e.g. "
                "[{domain: math, path: data/math_train.jsonl, preset: math}] (docs/data.md)"
            )
        check_schedule(self.strategy, self.data.mixture)
        if self.rollout.backend == "vllm" and is_builtin_model(self.model.name):
            raise ConfigError(
                f"rollout.backend: vllm needs a Hugging Face model directory in model.name; "
                f"{self.model.name!r} is built in-process: use rollout.backend: hf"
            )
        routed = set(self.rewards.routes)
        for source in self.data.sources:
            if source.domain not in routed:
                raise ConfigError(
                    f"domain {source.domain!r} has no reward; add rewards.routes.{source.domain}: "
                    f"<math | ifeval | reward_model> (routed now: {', '.join(sorted(routed)) or 'none'})"
                )
        check_rollouts(self)
        check_positions(self)
        check_lora(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """The built-in demo's config (``path=None``: ``mgs/tiny/tiny.yaml``) or a YAML file, with
    ``key=value`` overrides applied."""
    data: dict[str, Any] = load_yaml(path if path is not None else DEFAULT_CONFIG)
    data = apply_overrides(data, overrides or [])
    return from_dict(TrainConfig, data)
