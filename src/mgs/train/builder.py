"""Assemble a :class:`~mgs.train.trainer.GRPOTrainer` from a run config.

The parts, in the order they are built: this rank's policy (with ``model.lora``: its adapters;
FSDP2: its shards of rank 0's full model) and frozen KL reference (LoRA: the policy with its
adapters disabled), the module backward runs through (DDP wrapper or the sharded policy), the
domain mixture, the reward router, the rollout backend, the strategy's gradient combiner
(:mod:`mgs.strategy.combiner`), AdamW and its schedule, and the policy updater. With
``model.mixed_precision`` the forward passes compute in bfloat16 (:mod:`mgs.train.precision`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mgs.data.pipeline import build_mixture
from mgs.rewards.router import RewardRouter
from mgs.rl.backends import build_backend
from mgs.strategy.combiner import build_combiner
from mgs.train.config import TrainConfig
from mgs.train.distributed import DistContext, wrap_policy
from mgs.train.modeling import frozen_copy, load_policy_for, resolve_device, shard_from_rank0
from mgs.train.precision import compute_dtype, enable_tf32, fsdp_mixed_precision
from mgs.train.schedule import build_optimizer
from mgs.train.trainer import GRPOTrainer
from mgs.train.update import PolicyUpdater, check_mini_batches


def policy_and_reference(
    cfg: TrainConfig, ctx: DistContext, policy: nn.Module | None, device
) -> tuple[nn.Module, Any]:
    """This rank's policy and the frozen KL reference (None without a KL term).

    Under FSDP2 ``policy`` is rank 0's full model (None on the other ranks): each rank keeps only
    its shards of both, built from rank 0's weights by broadcast. With ``model.lora`` the adapters
    are added here (after any warm start, which trains the base) and the reference is the policy
    with its adapters disabled.
    """
    lora = cfg.model.lora
    with_reference = cfg.grpo.loss.kl_coef > 0
    if policy is not None and lora is not None:
        from mgs.models.lora import apply_lora

        policy = apply_lora(policy, lora)
    if ctx.strategy == "fsdp2":
        mp_policy = fsdp_mixed_precision(cfg.model.mixed_precision)
        policy, reference = shard_from_rank0(
            policy, device, ctx, reference=with_reference and lora is None, mp_policy=mp_policy
        )
    elif policy is None:
        raise ValueError("build_trainer: pass the policy with its tokenizer (or neither)")
    else:
        reference = frozen_copy(policy) if with_reference and lora is None else None
    if with_reference and lora is not None:
        from mgs.models.lora import AdaptersDisabled

        reference = AdaptersDisabled(policy)
    return policy, reference


def forward_dtype(cfg: TrainConfig, ctx: DistContext) -> torch.dtype | None:
    """The autocast dtype of forward passes: bf16 with mixed precision on one process / DDP;
    None under FSDP2 (its MixedPrecisionPolicy casts the parameters) or without it."""
    return None if ctx.strategy == "fsdp2" else compute_dtype(cfg.model.mixed_precision)


def rollout_backend(
    cfg: TrainConfig, policy: nn.Module, tokenizer: Any, dtype: torch.dtype | None = None
):
    """The generation backend of ``rollout`` (Hugging Face generate, or a colocated vLLM);
    ``dtype``: the hf backend's autocast dtype (bf16 mixed precision)."""
    return build_backend(
        cfg.rollout.backend,
        policy,
        tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens or policy.config.max_position_embeddings,
        micro_batch_size=cfg.rollout.micro_batch_size,
        vllm_options=cfg.rollout.vllm,
        decode=cfg.rollout.decode,
        compute_dtype=dtype,
    )


def build_trainer(
    cfg: TrainConfig,
    ctx: DistContext | None = None,
    *,
    policy: nn.Module | None = None,
    tokenizer: Any = None,
    router: RewardRouter | None = None,
) -> GRPOTrainer:
    """The trainer of ``cfg`` inside the run's process group ``ctx`` (None: one process).

    ``policy``/``tokenizer``: as :func:`~mgs.train.modeling.load_policy_for` returns them (loaded
    here when both are None). Under FSDP2 the trainer keeps only this rank's shards of ``policy``,
    so the caller should drop its own reference to it.
    """
    ctx = ctx or DistContext()
    device = resolve_device(cfg.model.device)
    check_mini_batches(
        cfg.grpo, cfg.data.mixture.batch_size, cfg.rollout.sampling.n, ctx.world_size
    )
    if tokenizer is None:
        policy, tokenizer = load_policy_for(cfg.model, device, ctx)
    enable_tf32(cfg.model.mixed_precision, device)
    policy, reference = policy_and_reference(cfg, ctx, policy, device)
    train_model = wrap_policy(policy, ctx)  # DDP wrapper, the FSDP2-sharded policy, or itself
    mixture, data_report = build_mixture(cfg.data, tokenizer)
    domains = list(mixture.domains)
    router = router or RewardRouter(cfg.rewards, domains)
    backend = rollout_backend(cfg, policy, tokenizer, dtype := forward_dtype(cfg, ctx))
    combiner = build_combiner(train_model, domains, cfg.strategy, cfg.seed)
    optimizer, scheduler = build_optimizer(policy, cfg.optim, cfg.steps)
    updater = PolicyUpdater(
        train_model,
        optimizer,
        scheduler,
        cfg.grpo,
        domains=domains,
        combiner=combiner,
        reference=reference,
        temperature=cfg.rollout.sampling.temperature,
        pad_token_id=backend.pad_id,
        grad_clip=cfg.optim.grad_clip,
        device=device,
        seed=cfg.seed,
        ctx=ctx,
        compute_dtype=dtype,
    )
    return GRPOTrainer(
        cfg=cfg,
        ctx=ctx,
        policy=policy,
        tokenizer=tokenizer,
        mixture=mixture,
        data_report=data_report,
        router=router,
        backend=backend,
        combiner=combiner,
        optimizer=optimizer,
        scheduler=scheduler,
        updater=updater,
    )
