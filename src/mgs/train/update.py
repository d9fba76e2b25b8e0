"""One policy update from a rollout batch: domain-grouped micro-batches -> surgeon -> step.

For each mini-batch, the loss normaliser is computed over the whole mini-batch (so per-domain
losses add up to exactly the mixed loss), then each domain's micro-batches are back-propagated
inside ``combiner.domain(d)``, always in the config's domain order; the strategy's gradient
combiner (:mod:`mgs.strategy.combiner`: the surgeon, or a plain sum) combines the per-domain
gradients (sum for mixed, PCGrad per group for mgs...) with grad-norm clipping, and the optimizer
steps. A mini-batch whose gradient is not finite is skipped and counted.

With bf16 mixed precision on one process / DDP (``compute_dtype``), every forward pass (the
policy's, the old and the reference log-probs) runs under ``torch.autocast``; the backward and the
loss stay outside it, and the gradients land in the float32 parameters' (the surgeon's) buffers.
Under FSDP2 the sharded policy's ``MixedPrecisionPolicy`` does the casting (``compute_dtype`` None).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from mgs.errors import ConfigError
from mgs.rl import (
    RolloutBatch,
    grpo_loss,
    loss_normalizer,
    response_logprobs,
    sum_micro_batch_stats,
)
from mgs.strategy.combiner import GradientCombiner
from mgs.surgery import SurgeryStats
from mgs.train.config import GRPOConfig
from mgs.train.distributed import DistContext, all_reduce, fsdp_root
from mgs.train.precision import autocast


@dataclass
class UpdateResult:
    """What the update did: loss stats (floats), surgery stats of the last mini-batch, timings."""

    stats: dict[str, float] = field(default_factory=dict)
    surgery: SurgeryStats | None = None
    skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def check_mini_batches(cfg: GRPOConfig, batch_size: int, n: int, world_size: int) -> None:
    """Every mini-batch of every rank must get rollouts: ``grpo.mini_batches`` at most the fewest
    rollouts a rank holds in a step (each domain's prompts are dealt round-robin over the ranks,
    so a rank holds at least ceil(batch_size / world_size) prompts, n rollouts each)."""
    rows = math.ceil(batch_size / world_size) * n
    if cfg.mini_batches > rows:
        raise ConfigError(
            f"grpo.mini_batches ({cfg.mini_batches}) is more than the rollouts a rank holds in a "
            f"step ({rows}: data.mixture.batch_size {batch_size} over {world_size} rank(s) x "
            f"rollout.sampling.n {n}), so some mini-batches would be empty; set "
            f"grpo.mini_batches to at most {rows}, or use fewer ranks"
        )


def micro_batches(rows: Sequence[int], size: int) -> list[list[int]]:
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def _response_values(values: torch.Tensor, tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per-row response slices of a ``[B, T]`` tensor (to reuse across micro-batch layouts)."""
    mask = tensors["response_mask"].bool()
    return [values[i][mask[i]] for i in range(values.shape[0])]


def _place(rows_values: list[torch.Tensor], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`_response_values` for a new micro-batch layout: ``[B, T]``."""
    mask = tensors["response_mask"].bool()
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for i, vals in enumerate(rows_values):
        out[i][mask[i]] = vals
    return out


class PolicyUpdater:
    """Runs :meth:`update` for one rollout batch; holds the policy, reference, optimizer and
    the gradient combiner."""

    def __init__(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        cfg: GRPOConfig,
        *,
        domains: list[str],
        combiner: GradientCombiner,
        reference: nn.Module | None,
        temperature: float,
        pad_token_id: int,
        grad_clip: float | None,
        device: torch.device,
        seed: int,
        ctx: DistContext | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        """``reference``: the frozen KL reference (a model, or any callable taking the model's
        keyword arguments, e.g. :class:`mgs.models.lora.AdaptersDisabled`); ``compute_dtype``: the
        autocast dtype of the forward passes (None: the parameters' own)."""
        self.policy = policy
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.cfg = cfg
        self.domains = domains
        self.combiner = combiner
        self.reference = reference
        self.temperature = temperature if temperature > 0 else 1.0
        self.pad = pad_token_id
        self.grad_clip = grad_clip
        self.device = device
        self.seed = seed
        self.ctx = ctx or DistContext()
        self.compute_dtype = compute_dtype

    def _tensors(self, batch: RolloutBatch, rows: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.to_tensors(self.pad, rows=rows).items()}

    @torch.no_grad()
    def _logprobs_of(
        self, model: nn.Module, batch: RolloutBatch, rows: list[int]
    ) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for micro in micro_batches(rows, self.cfg.micro_batch_size):
            t = self._tensors(batch, micro)
            with autocast(self.device, self.compute_dtype):
                logp, _ = response_logprobs(
                    model,
                    t["input_ids"],
                    t["attention_mask"],
                    t["response_mask"],
                    temperature=self.temperature,
                )
            out.extend(_response_values(logp, t))
        return out

    def _mini_batches(
        self, sample_domains: list[str], n_rows: int, gen: torch.Generator
    ) -> list[list[int]]:
        """Split the rows into mini-batches, each domain dealt evenly (same counts on every rank).

        The deal continues across domains (domain 2 starts where domain 1 stopped), so no
        mini-batch is empty while there are at least as many rows as mini-batches.
        """
        k = self.cfg.mini_batches
        if k == 1:
            return [list(range(n_rows))]
        if n_rows < k:
            raise ConfigError(
                f"grpo.mini_batches ({k}) is more than this step's {n_rows} rollouts; set "
                f"grpo.mini_batches to at most {n_rows}"
            )
        minis: list[list[int]] = [[] for _ in range(k)]
        dealt = 0
        for domain in self.domains:
            rows = [r for r in range(n_rows) if sample_domains[r] == domain]
            order = torch.randperm(len(rows), generator=gen).tolist()
            for i in order:
                minis[dealt % k].append(rows[i])
                dealt += 1
        return [sorted(m) for m in minis]

    def update(
        self,
        batch: RolloutBatch,
        sample_domains: list[str],
        advantages: torch.Tensor,
        step: int,
        *,
        valid: list[bool] | None = None,
    ) -> UpdateResult:
        """``valid[r]`` False: a padding row (zero loss weight) that only keeps ranks in step."""
        result = UpdateResult()
        seconds = result.seconds
        self._valid = valid if valid is not None else [True] * len(batch)
        tick = time.perf_counter()
        old, ref = self._fixed_logprobs(batch)
        seconds["logprobs"] = time.perf_counter() - tick
        seconds.update(backward=0.0, surgery=0.0, optimizer=0.0)
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        collected: list[dict[str, torch.Tensor]] = []
        grad_norms: list[torch.Tensor] = []
        for _epoch in range(self.cfg.epochs):
            for mini in self._mini_batches(sample_domains, len(batch), gen):
                normalizer = self._normalizer(batch, mini)
                tick = time.perf_counter()
                self.combiner.zero_grad()
                for domain in self.domains:  # fixed order: the same on every rank
                    rows = [r for r in mini if sample_domains[r] == domain]
                    if rows:
                        losses = (advantages, old, ref, normalizer)
                        collected.extend(self._backward_domain(domain, batch, rows, losses))
                seconds["backward"] += time.perf_counter() - tick
                grad_norms.append(self._combine_and_step(result))
        self.scheduler.step()
        result.stats = self._reduce_stats(collected, grad_norms)
        return result

    def _fixed_logprobs(self, batch: RolloutBatch):
        """Old and reference log-probs of every row (None when not needed), before any update.

        With one update per batch the old log-probs equal the current ones (ratio 1), which saves
        a forward pass; the reference ones only exist with a KL term.
        """
        rows = list(range(len(batch)))
        on_policy = self.cfg.mini_batches == 1 and self.cfg.epochs == 1
        old = None if on_policy else self._logprobs_of(self.policy, batch, rows)
        ref = None
        if self.reference is not None and self.cfg.loss.kl_coef > 0:
            ref = self._logprobs_of(self.reference, batch, rows)
        return old, ref

    def _backward_domain(self, domain: str, batch: RolloutBatch, rows: list[int], losses):
        """Back-propagate ``domain``'s rows of a mini-batch into its gradient (micro-batched);
        returns the micro-batches' loss statistics."""
        advantages, old, ref, normalizer = losses
        micros = micro_batches(rows, self.cfg.micro_batch_size)
        stats = []
        with self.combiner.domain(domain):
            for j, micro in enumerate(micros):
                # Gradients are reduced across ranks once per domain: at its last micro-batch
                # (every rank has the same count).
                with self._sync(j == len(micros) - 1):
                    stats.append(self._backward(batch, micro, advantages, old, ref, normalizer))
        return stats

    def _combine_and_step(self, result: UpdateResult) -> torch.Tensor:
        """Combine the domains' gradients (surgery + clipping) and step, unless a gradient is not
        finite (then the mini-batch is skipped and counted); returns the gradient norm."""
        seconds = result.seconds
        tick = time.perf_counter()
        combined = self.combiner.combine(self.grad_clip)
        result.surgery = combined.surgery or result.surgery
        seconds["surgery"] += time.perf_counter() - tick
        tick = time.perf_counter()
        if combined.finite:
            self.optimizer.step()
        else:
            result.skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        seconds["optimizer"] += time.perf_counter() - tick
        return combined.grad_norm

    def _normalizer(self, batch: RolloutBatch, rows: list[int]) -> torch.Tensor:
        """The loss normaliser of a mini-batch over all ranks (padding rows excluded)."""
        lengths = torch.tensor(
            [len(batch.completions[r].completion_ids) if self._valid[r] else 0 for r in rows]
        )
        mask = (torch.arange(max(1, int(lengths.max())))[None] < lengths[:, None]).long()
        normalizer = loss_normalizer(mask, self.cfg.loss.loss_agg).double()
        all_reduce(normalizer)
        return normalizer.clamp(min=1).float().to(self.device)

    def _sync(self, last: bool):
        """DDP's no_sync / FSDP2's gradient sync switch for a non-final micro-batch."""
        root = fsdp_root(self.policy)  # a LoRA policy's FSDP2 root is its base model
        model = self.policy if root is None else root
        if self.ctx.world_size == 1 or last:
            if hasattr(model, "set_requires_gradient_sync"):
                model.set_requires_gradient_sync(True)
            return nullcontext()
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return model.no_sync()
        if hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(False)
        return nullcontext()

    def _reduce_stats(self, collected, grad_norms) -> dict[str, float]:
        totals = sum_micro_batch_stats(collected)
        keys = sorted(totals)
        summed = (
            torch.stack([totals[k].double().cpu() for k in keys if k != "ratio_max"])
            if keys
            else None
        )
        if summed is not None:
            all_reduce(summed)  # each rank's share was divided by the global normaliser
        out: dict[str, float] = {}
        updates = self.cfg.epochs * self.cfg.mini_batches
        plain = [k for k in keys if k != "ratio_max"]
        for key, value in zip(plain, summed.tolist() if summed is not None else []):
            out[key] = value / updates
        if "ratio_max" in totals:
            out["ratio_max"] = float(all_reduce(totals["ratio_max"].double().cpu().clone(), "max"))
        out["grad_norm"] = float(torch.stack([g.double().cpu() for g in grad_norms]).mean())
        return out

    def _backward(self, batch, micro, advantages, old, ref, normalizer) -> dict[str, torch.Tensor]:
        t = self._tensors(batch, micro)
        want_entropy = self.cfg.loss.entropy_coef > 0
        with autocast(self.device, self.compute_dtype):
            logp, entropy = response_logprobs(
                self.policy,
                t["input_ids"],
                t["attention_mask"],
                t["response_mask"],
                temperature=self.temperature,
                with_entropy=want_entropy,
            )  # [B, T] float32
        old_logp = logp.detach() if old is None else _place([old[r] for r in micro], t)
        ref_logp = None if ref is None else _place([ref[r] for r in micro], t)
        invalid = [i for i, r in enumerate(micro) if not self._valid[r]]
        if invalid:  # padding rows keep the ranks in step; they weigh nothing
            t["response_mask"][invalid] = 0
        adv = advantages[micro].to(self.device)  # [B]
        loss, stats = grpo_loss(
            logp,
            old_logp,
            adv,
            t["response_mask"],
            ref_logp=ref_logp,
            entropy=entropy,
            cfg=self.cfg.loss,
            normalizer=normalizer,
        )
        # DDP / FSDP2 average gradients over ranks; the normaliser already spans every rank.
        (loss * self.ctx.world_size).backward()
        return stats
