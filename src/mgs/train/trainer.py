"""The GRPO training loop, top to bottom (DESIGN.md section 4):

mixture -> prompts -> rollouts -> rewards by domain -> group advantages -> domain-grouped
micro-batches -> per-domain backward into the surgeon -> surgery + clipping -> optimizer step ->
metrics. :func:`run_training` wraps it with the warm-start, the held-out evaluation before and after
RL, and the run directory.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mgs.data.example import Example
from mgs.data.mixture import MixtureBatch
from mgs.data.pipeline import build_mixture
from mgs.dataclass_config import to_dict
from mgs.errors import ConfigError
from mgs.rewards.router import RewardRouter
from mgs.rl import group_advantages
from mgs.rl.backends import build_backend
from mgs.surgery import GradientSurgeon
from mgs.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from mgs.train.config import TrainConfig
from mgs.train.distributed import (
    DistContext,
    all_reduce,
    barrier,
    gather_objects,
    init_distributed,
    wrap_policy,
)
from mgs.train.metrics import MetricsWriter
from mgs.train.modeling import (
    frozen_copy,
    load_policy_for,
    resolve_device,
    shard_from_rank0,
    unsharded_class,
)
from mgs.train.schedule import build_optimizer
from mgs.train.update import PolicyUpdater, check_mini_batches

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class StepOutput:
    metrics: dict[str, float]
    domain_rewards: dict[str, float]


# Keys of padding prompts (copies on a rank short of a domain): far from any batch index.
_PAD_KEY = 1 << 40


def _mean_over_ranks(values: dict[str, float], world_size: int) -> dict[str, float]:
    if world_size == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    all_reduce(stacked)
    return {k: float(v) / world_size for k, v in zip(keys, stacked)}


class GRPOTrainer:
    """Holds the policy and everything around it; :meth:`step` runs one RL step."""

    def __init__(
        self, cfg: TrainConfig, *, policy=None, tokenizer=None, router: RewardRouter | None = None
    ) -> None:
        """``policy``/``tokenizer``: as :func:`load_policy_for` returns them (loaded when both are
        None). Under FSDP2 ``policy`` is rank 0's full model (None on the other ranks); the trainer
        keeps only this rank's shards of it, so the caller should drop its own reference."""
        self.cfg = cfg
        self.device = resolve_device(cfg.model.device)
        self.ctx: DistContext = init_distributed(cfg.distributed, self.device)
        check_mini_batches(
            cfg.grpo, cfg.data.mixture.batch_size, cfg.rollout.sampling.n, self.ctx.world_size
        )
        if tokenizer is None:
            policy, tokenizer = load_policy_for(cfg.model, self.device, self.ctx)
        with_reference = cfg.grpo.loss.kl_coef > 0
        if self.ctx.strategy == "fsdp2":
            # Rank 0's full weights -> this rank's shards of the policy and of the reference.
            policy, reference = shard_from_rank0(
                policy, self.device, self.ctx, reference=with_reference
            )
        elif policy is None:
            raise ValueError("GRPOTrainer: pass the policy with its tokenizer (or neither)")
        else:
            reference = frozen_copy(policy) if with_reference else None
        self.policy, self.tokenizer = policy, tokenizer
        # The module forward/backward runs through: DDP wrapper, FSDP2-sharded policy, or itself.
        self.train_model = wrap_policy(policy, self.ctx)
        self.mixture, self.data_report = build_mixture(cfg.data, tokenizer)
        self.domains = list(self.mixture.domains)
        self.router = router or RewardRouter(cfg.rewards, self.domains)
        sampling = cfg.rollout.sampling
        self.backend = build_backend(
            cfg.rollout.backend,
            policy,
            tokenizer,
            max_prompt_tokens=cfg.data.max_prompt_tokens or policy.config.max_position_embeddings,
            micro_batch_size=cfg.rollout.micro_batch_size,
            vllm_options=cfg.rollout.vllm,
            decode=cfg.rollout.decode,
        )
        surgeon = None
        if cfg.strategy.needs_surgeon:
            aggregator, granularity = cfg.strategy.resolved()
            dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[
                cfg.strategy.buffer_dtype
            ]
            surgeon = GradientSurgeon(
                self.train_model,
                self.domains,
                aggregator=aggregator,
                granularity=granularity,
                seed=cfg.strategy.seed + cfg.seed,
                buffer_dtype=dtype,
            )
        self.surgeon = surgeon
        self.optimizer, self.scheduler = build_optimizer(policy, cfg.optim, cfg.steps)
        self.updater = PolicyUpdater(
            self.train_model,
            self.optimizer,
            self.scheduler,
            cfg.grpo,
            domains=self.domains,
            surgeon=surgeon,
            reference=reference,
            temperature=sampling.temperature,
            pad_token_id=self.backend.pad_id,
            grad_clip=cfg.optim.grad_clip,
            device=self.device,
            seed=cfg.seed,
            ctx=self.ctx,
        )

    def local_prompts(self, batch: MixtureBatch) -> tuple[list[Example], list[int], list[bool]]:
        """This rank's prompts, their keys (global index in the batch) and validity flags.

        Each domain's prompts are dealt round-robin over the ranks; a rank with fewer prompts of a
        domain than another pads with copies (flagged invalid: no reward, zero loss weight), so
        every rank runs the same number of rollouts and micro-batches per domain.
        """
        ctx = self.ctx
        by_domain: dict[str, list[int]] = {}
        for i, ex in enumerate(batch.examples):
            by_domain.setdefault(ex.domain, []).append(i)
        mine = {d: by_domain.get(d, [])[ctx.rank :: ctx.world_size] for d in self.domains}
        counts = torch.tensor([float(len(mine[d])) for d in self.domains])
        all_reduce(counts, "max")
        chosen: list[Example] = []
        keys: list[int] = []
        valid: list[bool] = []
        for k, domain in enumerate(self.domains):
            own = mine[domain]
            pool = own or by_domain.get(domain, [])
            for j in range(int(counts[k])):
                index = pool[j % len(pool)]
                chosen.append(batch.examples[index])
                keys.append(index if j < len(own) else _PAD_KEY + index)
                valid.append(j < len(own))
        return chosen, keys, valid

    def step(self, step: int) -> StepOutput:
        cfg = self.cfg
        sampling = cfg.rollout.sampling
        seconds: dict[str, float] = {}
        start = tick = time.perf_counter()
        batch = self.mixture.batch(step)
        examples, keys, valid_prompts = self.local_prompts(batch)
        rollouts = self.backend.generate(
            [ex.prompt for ex in examples],
            sampling,
            seed=sampling.step_seed(step + cfg.seed * 100_003),
            keys=keys,
        )
        seconds["generation"] = time.perf_counter() - tick
        tick = time.perf_counter()
        owners = [examples[c.prompt_index] for c in rollouts.completions]
        valid = [valid_prompts[c.prompt_index] for c in rollouts.completions]
        domains = [ex.domain for ex in owners]
        scored = [i for i, ok in enumerate(valid) if ok]
        rewarded = self.router(
            [domains[i] for i in scored],
            [owners[i].question for i in scored],
            [rollouts.completions[i].text for i in scored],
            [dict(owners[i].reference) for i in scored],
        )
        seconds["rewards"] = time.perf_counter() - tick
        rewards = torch.zeros(len(owners), dtype=torch.float32)  # [B * n]; padding rows: 0
        rewards[scored] = torch.tensor(rewarded.rewards, dtype=torch.float32)
        advantages, adv_stats = group_advantages(
            rewards, sampling.n, eps=cfg.grpo.advantage_eps, scale=cfg.grpo.advantage_scale
        )
        advantages = advantages * torch.tensor(valid, dtype=advantages.dtype)
        update = self.updater.update(rollouts, domains, advantages, step, valid=valid)
        seconds.update(update.seconds)
        self.backend.sync_weights(self.policy)
        seconds["step"] = time.perf_counter() - start
        metrics, domain_rewards = self._metrics(
            batch, rollouts, domains, valid, rewards, rewarded.stats, adv_stats, update, seconds
        )
        self.last_surgery = update.surgery
        return StepOutput(metrics, domain_rewards)

    def _metrics(
        self, batch, rollouts, domains, valid, rewards, reward_stats, adv_stats, update, seconds
    ):
        """Per-step scalars, reduced over ranks (sums and counts; fractions averaged)."""
        table = torch.zeros(
            len(self.domains), 4, dtype=torch.float64
        )  # reward, length, truncated, n
        for i, completion in enumerate(rollouts.completions):
            if valid[i]:
                row = table[self.domains.index(domains[i])]
                row += torch.tensor(
                    [
                        float(rewards[i]),
                        len(completion.completion_ids),
                        completion.finish_reason == "length",
                        1.0,
                    ],
                    dtype=torch.float64,
                )
        all_reduce(table)
        metrics: dict[str, float] = {
            "phase": float(batch.phase),
            "lr": self.scheduler.get_last_lr()[0],
        }
        domain_rewards: dict[str, float] = {}
        for k, domain in enumerate(self.domains):
            total, length, truncated, count = table[k].tolist()
            if count == 0:
                continue
            domain_rewards[domain] = total / count
            metrics[f"reward/{domain}/mean"] = total / count
            metrics[f"response_length/{domain}/mean"] = length / count
            metrics[f"truncated/{domain}/frac"] = truncated / count
        count = float(table[:, 3].sum())
        metrics["reward/mean"] = float(table[:, 0].sum()) / max(count, 1.0)
        averaged = {k: v for k, v in reward_stats.items() if not k.endswith("/mean")}
        averaged.update({f"advantage/{k}": float(v) for k, v in adv_stats.items()})
        metrics.update(_mean_over_ranks(averaged, self.ctx.world_size))
        metrics.update({f"loss/{k}": v for k, v in update.stats.items()})
        metrics["skipped_updates"] = float(update.skipped)
        if update.surgery is not None:
            metrics.update(update.surgery.summary())
        metrics.update({f"time/{k}": v for k, v in seconds.items()})
        return metrics, domain_rewards

    def _full_states(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Unsharded (model, optimizer) state dicts; a collective under FSDP2 (rank 0 gets them)."""
        if self.ctx.strategy == "fsdp2":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_state_dict(self.policy, self.optimizer, options=options)
        return self.policy.state_dict(), self.optimizer.state_dict()

    def state_dict(
        self, next_step: int, optimizer_state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs (see :mod:`mgs.train.checkpoint`).

        Every rank must call it (the RNG states of all ranks are gathered).
        """
        self.mixture.next_step = next_step  # batches are a pure function of the step
        return {
            "next_step": next_step,
            "world_size": self.ctx.world_size,
            "optimizer": optimizer_state
            if optimizer_state is not None
            else self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "surgeon_step": self.surgeon.step if self.surgeon is not None else None,
            "mixture": self.mixture.state_dict(),
            "rng": gather_objects(rng_state()),  # one per rank
        }

    def load_state_dict(self, state: dict[str, Any], model_dir: Path) -> int:
        """Restore weights from ``model_dir`` and the rest from ``state``; returns the next step."""
        if state.get("world_size", 1) != self.ctx.world_size:
            raise ConfigError(
                f"the checkpoint was written by {state.get('world_size', 1)} ranks and this run has "
                f"{self.ctx.world_size}; resume with the same number of ranks"
            )
        if self.ctx.strategy == "fsdp2":
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            # As at start-up: rank 0 reads the weights, every rank receives its shards.
            full = self._saved_weights(model_dir) if self.ctx.is_main else {}
            set_model_state_dict(
                self.policy,
                full,
                options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
            )
            del full
            set_optimizer_state_dict(
                self.policy,
                self.optimizer,
                state["optimizer"],
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            self.policy.load_state_dict(self._saved_weights(model_dir))
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.surgeon is not None and state["surgeon_step"] is not None:
            self.surgeon.step = state["surgeon_step"]
        self.mixture.load_state_dict(state["mixture"])  # checks the data did not change
        set_rng_state(state["rng"][self.ctx.rank])
        self.backend.sync_weights(self.policy)
        return int(state["next_step"])

    def _saved_weights(self, model_dir: Path) -> dict[str, torch.Tensor]:
        """The full state dict of a policy saved in ``model_dir`` (read into host memory)."""
        loaded = unsharded_class(self.policy).from_pretrained(
            model_dir, dtype=next(self.policy.parameters()).dtype
        )
        return loaded.state_dict()

    def save_policy(self, path: Path, model_state: dict[str, Any] | None = None) -> None:
        """The policy as a Hugging Face directory (safetensors) on rank 0; every rank calls it."""
        if model_state is None:
            model_state, _ = self._full_states()
        if self.ctx.is_main:
            self._write_model(path, model_state)
        barrier()

    def save_checkpoint(self, run_dir: Path, next_step: int) -> Path | None:
        """Write a checkpoint (rank 0 writes; every rank must call it). None on other ranks."""
        model_state, optimizer_state = self._full_states()
        state = self.state_dict(next_step, optimizer_state)
        path = None
        if self.ctx.is_main:
            path = save_checkpoint(
                run_dir,
                next_step,
                state,
                lambda d: self._write_model(d, model_state),
                self.cfg.logging.keep_checkpoints,
            )
        barrier()
        return path

    def maybe_checkpoint(self, run_dir: Path | None, step: int) -> None:
        """After step ``step``: checkpoint if ``logging.checkpoint_every`` says so (all ranks)."""
        every = self.cfg.logging.checkpoint_every
        if run_dir is not None and every and (step + 1) % every == 0 and step + 1 < self.cfg.steps:
            self.save_checkpoint(run_dir, step + 1)

    def _write_model(self, path: Path, model_state: dict[str, Any]) -> None:
        self.policy.save_pretrained(path, state_dict=model_state, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def close(self) -> None:
        self.router.close()
        self.backend.close()


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{stamp}-{cfg.strategy.name}"


def prepare_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8"
    )


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    (run_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def train_loop(
    trainer: GRPOTrainer,
    writer: MetricsWriter,
    *,
    progress: bool = True,
    start_step: int = 0,
    run_dir: Path | None = None,
) -> None:
    """Run RL steps ``start_step .. cfg.steps - 1`` with a progress bar of per-domain rewards,
    checkpointing every ``logging.checkpoint_every`` steps into ``run_dir``."""
    from tqdm.auto import tqdm

    cfg = trainer.cfg
    bar = tqdm(range(start_step, cfg.steps), desc="GRPO", disable=not progress, dynamic_ncols=True)
    for step in bar:
        out = trainer.step(step)
        if not trainer.ctx.is_main:
            trainer.maybe_checkpoint(run_dir, step)
            continue
        writer.log(step, out.metrics)
        every = cfg.logging.surgery_stats_every
        if (
            every
            and trainer.last_surgery is not None
            and (step % every == 0 or step == cfg.steps - 1)
        ):
            writer.save_arrays(step, trainer.last_surgery.arrays())
        postfix = {d: f"{r:.2f}" for d, r in out.domain_rewards.items()}
        if "surgery/conflict_frac" in out.metrics:
            postfix["conflict"] = f"{out.metrics['surgery/conflict_frac']:.2f}"
        bar.set_postfix(postfix)
        trainer.maybe_checkpoint(run_dir, step)
