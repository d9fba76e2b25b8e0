"""MGS inside TRL: ``MGSGRPOTrainer``, a ``trl.GRPOTrainer`` whose domains' gradients are combined
by gradient surgery. Tested with TRL 1.16 and transformers 5.24 (``pip install 'mgs[trl]'``).

Switching from TRL::

    from mgs.integrations.trl import MGSGRPOTrainer, domain_rewards

    trainer = MGSGRPOTrainer(
        model=model,
        reward_funcs=domain_rewards({"math": "math", "chat": my_chat_reward}),
        args=GRPOConfig(...),
        train_dataset=dataset,          # with a "domain" column
        surgery="mgs",                  # or mixed, pcgrad, SurgeryConfig(...)
    )

What changes in TRL's step (everything else is TRL's own code, run unchanged):

1. ``_generate_and_score_completions``: each completion row also carries its domain's index.
2. ``compute_loss`` (one call per micro-batch): the micro-batch is split by domain; TRL's
   ``_compute_loss`` runs on each domain's rows and the result is rescaled to that domain's exact
   part of TRL's micro-batch loss (one normaliser over the whole micro-batch, see
   :data:`~mgs.integrations.trl_config.LOSS_NORMALISERS`); each part is back-propagated inside
   ``surgeon.domain(d)``. The parts add up to TRL's loss, which is returned for logging.
3. Before the optimizer step, transformers' Trainer clips (``_clip_grad_norm``, or
   ``_get_grad_norm`` without clipping): both run ``surgeon.apply(max_norm=max_grad_norm)``
   instead, so clipping is done once, by the surgeon, on the combined gradient; the surgery
   summary goes into TRL's metrics (``state.log_history``, W&B, TensorBoard).

TRL / transformers internals this depends on (checked at construction; an optimizer pre-step hook
refuses to step on gradients the surgeon did not combine if a future version stops calling them):
``GRPOTrainer._generate_and_score_completions``, ``GRPOTrainer._metrics``,
``GRPOTrainer.compute_loss`` -> ``_compute_loss`` (per micro-batch), ``Trainer._clip_grad_norm``,
``Trainer._get_grad_norm``.

Under DDP every rank back-propagates the same domains, in the same order and with the same number
of rows, in every micro-batch (the domains present on any rank, each padded to its largest row
count over the ranks with rows whose loss mask is zero), so DDP's all-reduces and TRL's metric
collectives (which gather equal shapes) line up, and each domain's accumulated gradient is
all-reduced in the window's last micro-batch.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

try:
    import trl
except ImportError as exc:  # pragma: no cover - exercised only without TRL
    raise ImportError(
        "mgs.integrations.trl needs TRL: pip install 'mgs[trl]' (tested with trl 1.16)"
    ) from exc

import torch
import transformers

from mgs.errors import ConfigError, DataError
from mgs.integrations.trl_config import (
    LOSS_NORMALISERS,
    STRATEGIES,
    SurgeryConfig,
    check_supported,
    resolve_surgery,
)
from mgs.integrations.trl_rewards import domain_rewards
from mgs.integrations.trl_split import DOMAIN_KEY, domain_rows, loss_share
from mgs.surgery import GradientSurgeon

__all__ = ["STRATEGIES", "MGSGRPOTrainer", "SurgeryConfig", "domain_rewards"]

TESTED_TRL = "1.16."
_INTERNALS = (
    (trl.GRPOTrainer, "_generate_and_score_completions"),
    (trl.GRPOTrainer, "_compute_loss"),
    (transformers.Trainer, "_clip_grad_norm"),
    (transformers.Trainer, "_get_grad_norm"),
)


class MGSGRPOTrainer(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` with per-domain gradients combined by a :class:`GradientSurgeon`.

    Takes TRL's arguments unchanged (they are passed through as they are, so this class follows
    TRL's signature), plus:

    Args:
        domain_column: the train dataset's column holding each row's domain.
        surgery: a strategy name (``"mgs"``: PCGrad per tensor, the default; ``"pcgrad"``: PCGrad
            on the whole gradient; ``"mixed"``: the plain sum, i.e. TRL's update), a
            :class:`SurgeryConfig` (aggregator, granularity, seed, buffer dtype, domains) or a
            dict of its fields.

    ``args.max_grad_norm`` is applied by the surgeon to the combined gradient (TRL's own clipping
    does not run). The surgeon is ``self.surgeon`` (built at the first training step).
    """

    def __init__(
        self,
        *args: Any,
        domain_column: str = "domain",
        surgery: SurgeryConfig | str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.mgs_surgery = resolve_surgery(surgery)  # a bad value fails before the model loads
        self.domain_column = domain_column
        _check_versions()
        super().__init__(*args, **kwargs)
        distributed = self.accelerator.distributed_type
        check_supported(
            self.args,
            distributed_type=str(getattr(distributed, "value", distributed)),
            aux_loss=bool(getattr(self, "aux_loss_enabled", False)),
        )
        self.mgs_domains: list[str] = list(
            self.mgs_surgery.domains or dataset_domains(self.train_dataset, domain_column)
        )
        self._mgs_index = {name: k for k, name in enumerate(self.mgs_domains)}
        self.surgeon: GradientSurgeon | None = None
        self._mgs_window: set[int] = set()  # domains back-propagated since the last step
        self._mgs_fresh = True  # the next micro-batch starts an accumulation window
        self._mgs_applied = False  # the surgeon combined the gradients the optimizer will use
        self._mgs_guarded: Any = None
        self.mgs_padding_rows = 0  # zero-mask rows run on this rank so far (DDP only)

    # ------------------------------------------------------------------ rows -> domains

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:  # TRL's rows are the local inputs, in order
            output[DOMAIN_KEY] = self._domain_ids(inputs)
        return output

    def _domain_ids(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        ids = []
        for row in rows:
            if self.domain_column not in row:
                raise DataError(
                    f"a training row has no {self.domain_column!r} column (columns: "
                    f"{', '.join(sorted(row))}); add it, or pass domain_column= the column that "
                    "holds each row's domain"
                )
            value = row[self.domain_column]
            if value not in self._mgs_index:
                raise ConfigError(
                    f"domain {value!r} of a training row is not one of the surgery's domains "
                    f"({', '.join(self.mgs_domains)}); add it to SurgeryConfig(domains=[...])"
                )
            ids.append(self._mgs_index[value])
        return torch.tensor(ids, dtype=torch.long, device=self.accelerator.device)  # [B]

    # ------------------------------------------------------------------ backward by domain

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        domain_ids = inputs.get(DOMAIN_KEY)
        if domain_ids is None or return_outputs or not torch.is_grad_enabled():  # evaluation
            plain = {k: v for k, v in inputs.items() if k != DOMAIN_KEY}
            return super().compute_loss(model, plain, return_outputs, num_items_in_batch)
        total = self._backward_by_domain(model, inputs, domain_ids)
        # Every part was back-propagated above, inside its domain block. transformers'
        # training_step still calls accelerator.backward on what compute_loss returns: return
        # the loss's value as a new leaf tensor, whose backward reaches no parameter.
        return total.detach().requires_grad_(True)

    def _backward_by_domain(self, model, inputs, domain_ids: torch.Tensor) -> torch.Tensor:
        surgeon = self._surgeon()
        if self._mgs_fresh:
            surgeon.zero_grad()
            self._mgs_window.clear()
            self._mgs_fresh = False
        normaliser = LOSS_NORMALISERS[self.args.loss_type]
        counts = torch.bincount(domain_ids, minlength=len(self.mgs_domains))  # [K]
        total = torch.zeros((), device=domain_ids.device)
        for k, size in self._domains_to_run(counts):
            idx = torch.nonzero(domain_ids == k).flatten()
            rows = domain_rows(inputs, idx, size)
            self.mgs_padding_rows += size - idx.numel()
            with surgeon.domain(self.mgs_domains[k]):
                part = super().compute_loss(model, rows) * loss_share(normaliser, inputs, idx, size)
                self.accelerator.backward(part)
            total = total + part.detach()
            self._mgs_window.add(k)
        return total

    def _domains_to_run(self, counts: torch.Tensor) -> list[tuple[int, int]]:
        """``(domain index, rows)`` to back-propagate in this micro-batch, in domain order.

        One process: the domains present, with their rows. Under DDP: the same list on every
        rank, each domain with the largest row count over the ranks (padded where fewer), plus,
        in the window's last micro-batch, every domain run earlier in the window (so that its
        accumulated gradient is all-reduced).
        """
        if self.accelerator.num_processes == 1:
            return [(k, c) for k, c in enumerate(counts.tolist()) if c > 0]
        world = self.accelerator.gather(counts[None]).view(-1, counts.numel())  # [R, K]
        sizes = dict(enumerate(world.max(0).values.tolist()))
        if self.accelerator.sync_gradients:
            for k in self._mgs_window:
                sizes[k] = max(sizes[k], 1)
        return [(k, size) for k, size in sorted(sizes.items()) if size > 0]

    def _surgeon(self) -> GradientSurgeon:
        if self.surgeon is None:
            cfg = self.mgs_surgery
            dtype = None if cfg.buffer_dtype == "auto" else getattr(torch, cfg.buffer_dtype)
            self.surgeon = GradientSurgeon(
                self.accelerator.unwrap_model(self.model),
                self.mgs_domains,
                aggregator=cfg.aggregator,
                granularity=cfg.granularity,
                seed=cfg.seed,
                buffer_dtype=dtype,
            )
        return self.surgeon

    # ------------------------------------------------------------------ surgery, clipping

    def _clip_grad_norm(self, model):
        # transformers.Trainer calls this before optimizer.step() when max_grad_norm > 0.
        return self._apply_surgery(self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        # ... and this one always, with grad_norm None when nothing was clipped.
        if grad_norm is None:
            grad_norm = self._apply_surgery(None)
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def _apply_surgery(self, max_norm: float | None) -> torch.Tensor:
        """Combined, clipped gradient -> ``param.grad``; the summary -> TRL's metrics."""
        if self.surgeon is None or self._mgs_fresh:
            raise RuntimeError(
                "MGSGRPOTrainer: the optimizer step came without a backward pass in this "
                "accumulation window (did a callback skip training_step?)"
            )
        start = time.perf_counter()
        self.surgeon.step = self.state.global_step  # PCGrad's orders follow the optimizer step
        stats = self.surgeon.apply(max_norm=max_norm if max_norm and max_norm > 0 else None)
        summary = stats.summary()
        summary["surgery/time_s"] = time.perf_counter() - start
        for key, value in summary.items():
            self._metrics["train"][key].append(value)
        self._mgs_applied, self._mgs_fresh = True, True
        return stats.grad_norm

    def create_optimizer(self, *args: Any, **kwargs: Any):
        optimizer = super().create_optimizer(*args, **kwargs)
        if optimizer is not None and self._mgs_guarded is not optimizer:
            optimizer.register_step_pre_hook(self._before_optimizer_step)
            self._mgs_guarded = optimizer
        return optimizer

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if not self._mgs_applied:
            raise RuntimeError(
                "MGSGRPOTrainer: the optimizer would step on gradients the surgeon did not "
                "combine: this transformers version no longer calls Trainer._clip_grad_norm / "
                f"_get_grad_norm before optimizer.step() (found transformers "
                f"{transformers.__version__}; tested with 5.24)"
            )
        self._mgs_applied = False


def dataset_domains(dataset: Any, column: str) -> list[str]:
    """The sorted distinct values of ``dataset[column]`` (the surgeon's domain order)."""
    if dataset is None:
        raise ConfigError("MGSGRPOTrainer needs a train_dataset with a domain column")
    names = getattr(dataset, "column_names", None)
    if names is None or not hasattr(dataset, "unique"):
        raise ConfigError(
            f"cannot list the domains of a {type(dataset).__name__} in advance; pass them: "
            "surgery=SurgeryConfig(domains=['math', 'chat'])"
        )
    if column not in names:
        raise DataError(
            f"the train dataset has no {column!r} column (columns: {', '.join(names)}); add one, "
            "or pass domain_column= the column that holds each row's domain"
        )
    values = dataset.unique(column)
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise DataError(f"domain names in column {column!r} must be strings, found {bad[0]!r}")
    return sorted(values)


def _check_versions() -> None:
    missing = [f"{cls.__name__}.{name}" for cls, name in _INTERNALS if not hasattr(cls, name)]
    if missing:
        raise ConfigError(
            f"MGSGRPOTrainer relies on {', '.join(missing)}, which this TRL / transformers does "
            f"not have (trl {trl.__version__}, transformers {transformers.__version__}); "
            "install the tested versions: pip install 'mgs[trl]'"
        )
    if not trl.__version__.startswith(TESTED_TRL):
        warnings.warn(
            f"MGSGRPOTrainer is tested with trl {TESTED_TRL}x, found {trl.__version__}",
            stacklevel=3,
        )
