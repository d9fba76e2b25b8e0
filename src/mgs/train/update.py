"""One policy update from a rollout batch: domain-grouped micro-batches -> surgeon -> step.

For each mini-batch, the loss normaliser is computed over the whole mini-batch (so per-domain
losses add up to exactly the mixed loss), then each domain's micro-batches are back-propagated
inside ``surgeon.domain(d)``, always in the config's domain order; the surgeon combines the
per-domain gradients (sum for mixed, PCGrad per group for mgs...) with grad-norm clipping folded
in, and the optimizer steps. A mini-batch whose gradient is not finite is skipped and counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from mgs.rl import (
    RolloutBatch,
    grpo_loss,
    loss_normalizer,
    response_logprobs,
    sum_micro_batch_stats,
)
from mgs.surgery import GradientSurgeon, SurgeryStats
from mgs.train.config import GRPOConfig


@dataclass
class UpdateResult:
    """What the update did: loss stats (floats), surgery stats of the last mini-batch, timings."""

    stats: dict[str, float] = field(default_factory=dict)
    surgery: SurgeryStats | None = None
    skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


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
    """Runs :meth:`update` for one rollout batch; holds the policy, reference, optimizer, surgeon."""

    def __init__(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        cfg: GRPOConfig,
        *,
        domains: list[str],
        surgeon: GradientSurgeon | None,
        reference: nn.Module | None,
        temperature: float,
        pad_token_id: int,
        grad_clip: float | None,
        device: torch.device,
        seed: int,
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.cfg = cfg
        self.domains = domains
        self.surgeon = surgeon
        self.reference = reference
        self.temperature = temperature if temperature > 0 else 1.0
        self.pad = pad_token_id
        self.grad_clip = grad_clip
        self.device = device
        self.seed = seed

    def _tensors(self, batch: RolloutBatch, rows: list[int]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.to_tensors(self.pad, rows=rows).items()}

    @torch.no_grad()
    def _logprobs_of(
        self, model: nn.Module, batch: RolloutBatch, rows: list[int]
    ) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for micro in micro_batches(rows, self.cfg.micro_batch_size):
            t = self._tensors(batch, micro)
            logp, _ = response_logprobs(
                model,
                t["input_ids"],
                t["attention_mask"],
                t["response_mask"],
                temperature=self.temperature,
            )
            out.extend(_response_values(logp, t))
        return out

    def update(
        self, batch: RolloutBatch, sample_domains: list[str], advantages: torch.Tensor, step: int
    ) -> UpdateResult:
        result = UpdateResult()
        seconds = result.seconds
        n_rows = len(batch)
        all_rows = list(range(n_rows))
        loss_cfg = self.cfg.loss
        on_policy = self.cfg.mini_batches == 1 and self.cfg.epochs == 1
        tick = time.perf_counter()
        # Old log-probs: with one update per batch they equal the current ones (ratio 1), which
        # saves a forward pass; otherwise computed once, before any update.
        old = None if on_policy else self._logprobs_of(self.policy, batch, all_rows)
        ref = (
            self._logprobs_of(self.reference, batch, all_rows)
            if self.reference is not None and loss_cfg.kl_coef > 0
            else None
        )
        seconds["logprobs"] = time.perf_counter() - tick
        seconds.update(backward=0.0, surgery=0.0, optimizer=0.0)
        gen = torch.Generator().manual_seed(self.seed * 7919 + step)
        collected: list[dict[str, torch.Tensor]] = []
        grad_norms: list[torch.Tensor] = []
        for _epoch in range(self.cfg.epochs):
            order = (
                all_rows
                if self.cfg.mini_batches == 1
                else torch.randperm(n_rows, generator=gen).tolist()
            )
            for mini in (order[i :: self.cfg.mini_batches] for i in range(self.cfg.mini_batches)):
                if not mini:
                    continue
                lengths = torch.tensor([len(batch.completions[r].completion_ids) for r in mini])
                normalizer = loss_normalizer(
                    (torch.arange(int(lengths.max()))[None] < lengths[:, None]).long(),
                    loss_cfg.loss_agg,
                ).to(self.device)
                tick = time.perf_counter()
                self._zero_grad()
                mini_stats = []
                for domain in self.domains:  # fixed order: the same on every rank
                    rows = [r for r in mini if sample_domains[r] == domain]
                    if not rows:
                        continue
                    ctx = self.surgeon.domain(domain) if self.surgeon is not None else nullcontext()
                    with ctx:
                        for micro in micro_batches(rows, self.cfg.micro_batch_size):
                            mini_stats.append(
                                self._backward(batch, micro, advantages, old, ref, normalizer)
                            )
                collected.extend(mini_stats)
                seconds["backward"] += time.perf_counter() - tick
                tick = time.perf_counter()
                finite, grad_norm = self._combine(result)
                grad_norms.append(grad_norm)
                seconds["surgery"] += time.perf_counter() - tick
                tick = time.perf_counter()
                if finite:
                    self.optimizer.step()
                else:
                    result.skipped += 1
                self.optimizer.zero_grad(set_to_none=True)
                seconds["optimizer"] += time.perf_counter() - tick
        self.scheduler.step()
        totals = sum_micro_batch_stats(collected)
        updates = self.cfg.epochs * self.cfg.mini_batches
        for key, value in totals.items():
            result.stats[key] = float(value) if key == "ratio_max" else float(value) / updates
        result.stats["grad_norm"] = float(torch.stack(grad_norms).float().mean())
        return result

    def _zero_grad(self) -> None:
        if self.surgeon is not None:
            self.surgeon.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=True)

    def _backward(self, batch, micro, advantages, old, ref, normalizer) -> dict[str, torch.Tensor]:
        t = self._tensors(batch, micro)
        want_entropy = self.cfg.loss.entropy_coef > 0
        logp, entropy = response_logprobs(
            self.policy,
            t["input_ids"],
            t["attention_mask"],
            t["response_mask"],
            temperature=self.temperature,
            with_entropy=want_entropy,
        )  # [B, T]
        old_logp = logp.detach() if old is None else _place([old[r] for r in micro], t)
        ref_logp = None if ref is None else _place([ref[r] for r in micro], t)
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
        loss.backward()
        return stats

    def _combine(self, result: UpdateResult) -> tuple[bool, torch.Tensor]:
        """Surgery (or plain clipping) into ``param.grad``; returns (finite, grad norm)."""
        if self.surgeon is not None:
            stats = self.surgeon.apply(max_norm=self.grad_clip)
            result.surgery = stats
            finite = stats.all_finite and bool(torch.isfinite(stats.grad_norm))
            return finite, stats.grad_norm
        params = [p for p in self.policy.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(
            params, self.grad_clip if self.grad_clip else float("inf")
        )
        return bool(torch.isfinite(norm)), norm
