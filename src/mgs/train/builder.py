"""Assemble a :class:`~mgs.train.trainer.GRPOTrainer` from a run config.

The parts, in the order they are built: this rank's policy (FSDP2: its shards of rank 0's full
model) and frozen KL reference, the module backward runs through (DDP wrapper or the sharded
policy), the domain mixture, the reward router, the rollout backend, the strategy's gradient
combiner (:mod:`mgs.strategy.combiner`), AdamW and its schedule, and the policy updater.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mgs.data.pipeline import build_mixture
from mgs.rewards.router import RewardRouter
from mgs.rl.backends import build_backend
from mgs.strategy.combiner import build_combiner
from mgs.train.config import TrainConfig
from mgs.train.distributed import DistContext, wrap_policy
from mgs.train.modeling import frozen_copy, load_policy_for, resolve_device, shard_from_rank0
from mgs.train.schedule import build_optimizer
from mgs.train.trainer import GRPOTrainer
from mgs.train.update import PolicyUpdater, check_mini_batches


def policy_and_reference(
    cfg: TrainConfig, ctx: DistContext, policy: nn.Module | None, device
) -> tuple[nn.Module, nn.Module | None]:
    """This rank's policy and the frozen KL reference (None without a KL term).

    Under FSDP2 ``policy`` is rank 0's full model (None on the other ranks): each rank keeps only
    its shards of both, built from rank 0's weights by broadcast.
    """
    with_reference = cfg.grpo.loss.kl_coef > 0
    if ctx.strategy == "fsdp2":
        return shard_from_rank0(policy, device, ctx, reference=with_reference)
    if policy is None:
        raise ValueError("build_trainer: pass the policy with its tokenizer (or neither)")
    return policy, frozen_copy(policy) if with_reference else None


def rollout_backend(cfg: TrainConfig, policy: nn.Module, tokenizer: Any):
    """The generation backend of ``rollout`` (Hugging Face generate, or a colocated vLLM)."""
    return build_backend(
        cfg.rollout.backend,
        policy,
        tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens or policy.config.max_position_embeddings,
        micro_batch_size=cfg.rollout.micro_batch_size,
        vllm_options=cfg.rollout.vllm,
        decode=cfg.rollout.decode,
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
    policy, reference = policy_and_reference(cfg, ctx, policy, device)
    train_model = wrap_policy(policy, ctx)  # DDP wrapper, the FSDP2-sharded policy, or itself
    mixture, data_report = build_mixture(cfg.data, tokenizer)
    domains = list(mixture.domains)
    router = router or RewardRouter(cfg.rewards, domains)
    backend = rollout_backend(cfg, policy, tokenizer)
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
