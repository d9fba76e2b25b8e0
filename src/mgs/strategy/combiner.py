"""The gradient combiner the policy updater talks to: per-domain backward passes in, one step's
gradient out.

Two implementations of one interface:

- :class:`SurgeonCombiner` keeps every domain's gradient apart (a
  :class:`~mgs.surgery.GradientSurgeon`) and combines them group by group with the strategy's
  aggregator, clipping folded in; it reports the surgery statistics;
- :class:`PlainSumCombiner` is ordinary training: every backward accumulates into ``param.grad``
  (the sum), then ``clip_grad_norm_``. Used when the aggregator is ``sum`` and no conflicts are
  tracked (``strategy.track_conflicts: false``), at the cost of no per-domain telemetry.

Both give the same update for the ``sum`` aggregator (a test checks it parameter for parameter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from mgs.errors import ConfigError
from mgs.strategy import StrategyConfig
from mgs.surgery import GradientSurgeon, SurgeryStats

_BUFFER_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Combined:
    """What one combination did."""

    finite: bool  # False: some gradient was NaN / inf, the optimizer step must be skipped
    grad_norm: torch.Tensor  # global L2 norm of the combined gradient, before clipping
    surgery: SurgeryStats | None = None  # per-group statistics (surgeon only)


class GradientCombiner(Protocol):
    """Start a step, route each domain's backward passes, combine them into ``param.grad``."""

    def zero_grad(self) -> None: ...

    def domain(self, name: str) -> contextlib.AbstractContextManager[None]: ...

    def combine(self, max_norm: float | None) -> Combined: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SurgeonCombiner:
    """Per-domain gradients combined by the surgeon's aggregator, group by group."""

    def __init__(self, surgeon: GradientSurgeon) -> None:
        self.surgeon = surgeon

    def zero_grad(self) -> None:
        self.surgeon.zero_grad()

    def domain(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.surgeon.domain(name)

    def combine(self, max_norm: float | None) -> Combined:
        stats = self.surgeon.apply(max_norm=max_norm)
        finite = stats.all_finite and bool(torch.isfinite(stats.grad_norm))
        return Combined(finite, stats.grad_norm, stats)

    def state_dict(self) -> dict[str, Any]:
        """The surgeon's step (PCGrad's random orders derive from it) and its aggregator's state
        (GradVac's cosine targets, Nash-MTL's last weights), as tensors and plain values."""
        return {"surgeon": self.surgeon.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("surgeon") is None:
            raise ConfigError(
                "the checkpoint holds no gradient-surgeon state (it was written by a strategy "
                "without per-domain gradients); resume with the run's own strategy"
            )
        self.surgeon.load_state_dict(state["surgeon"])


class PlainSumCombiner:
    """One gradient buffer for every domain (ordinary training), then ``clip_grad_norm_``."""

    def __init__(self, model: nn.Module, domains: Sequence[str]) -> None:
        self.model = model
        self.domains = list(domains)

    def zero_grad(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    @contextlib.contextmanager
    def domain(self, name: str) -> Iterator[None]:
        yield

    def combine(self, max_norm: float | None) -> Combined:
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
        return Combined(bool(torch.isfinite(norm)), norm)

    def state_dict(self) -> dict[str, Any]:
        return {"surgeon": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("surgeon") is not None:
            raise ConfigError(
                "the checkpoint holds gradient-surgeon state but this run keeps no per-domain "
                "gradients (strategy.track_conflicts: false); resume with the run's own strategy"
            )


def build_combiner(
    model: nn.Module, domains: Sequence[str], cfg: StrategyConfig, seed: int
) -> GradientCombiner:
    """The combiner of strategy ``cfg`` over ``model``'s trainable parameters (the module the
    backward passes run through: DDP wrapper, FSDP2-sharded policy or the policy itself).

    ``seed``: the run's seed; PCGrad's random orders use ``cfg.seed + seed``.
    """
    if not cfg.needs_surgeon:
        return PlainSumCombiner(model, domains)
    aggregator, granularity = cfg.resolved()
    surgeon = GradientSurgeon(
        model,
        domains,
        aggregator=aggregator,
        granularity=granularity,
        seed=cfg.seed + seed,
        buffer_dtype=_BUFFER_DTYPES[cfg.buffer_dtype],
    )
    return SurgeonCombiner(surgeon)
