"""The aggregator contract, the registry of aggregators by name, and helpers they share.

An aggregator maps the per-group Gram matrices of the domain gradients to combination coefficients,
vectorised over all groups at once (docs/method.md):

    gram   [M, K, K]   Gram[m, a, b] = <g_a^m, g_b^m>   (float64 from the surgeon)
    active [K]         bool, domains that had a backward pass this step (and finite gradients)
    orders [M, K, K-1] long, for each group and domain a random order of the other domains
-> coef   [M, K]      the combined gradient of group m is ``sum_k coef[m, k] * g_k^m``
   fired  [M, K]      bool telemetry: whether the method modified domain k in group m (each
                      method defines it; docs/aggregators.md lists the definitions)

Two kinds are registered under a name:

- a plain function ``fn(gram, active, orders) -> (coef, fired)`` (stateless; the function itself is
  what :func:`get_aggregator` returns, as before);
- a class deriving from :class:`Aggregator` (a factory: :func:`get_aggregator` returns a fresh
  instance built with its default parameters, so every surgeon owns its own state). Such a class
  may keep state across steps (GradVac's cosine targets, Nash-MTL's last weights) and exposes it
  with ``state_dict()`` / ``load_state_dict()`` as tensors and plain Python values, so that a
  checkpoint loads with ``torch.load(weights_only=True)``.

Inactive domains (``active[k]`` False) are *absent*: every method behaves as its reference
implementation would on the matrix of the active domains only. A domain whose gradient is zero in a
group is *present* (it counts, e.g. in a mean over domains) but always gets coefficient 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from mgs.errors import ConfigError, unknown_name

AggregatorFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


class Aggregator:
    """Base class of aggregators with parameters or state (subclasses are dataclasses).

    Subclasses implement ``__call__(gram, active, orders) -> (coef, fired)``. Stateful ones
    override :meth:`state_dict` / :meth:`load_state_dict`; the defaults say "no state".
    """

    def __call__(
        self, gram: torch.Tensor, active: torch.Tensor, orders: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The aggregator's state as tensors and plain values (empty for stateless methods)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (a stateless aggregator accepts only ``{}``)."""
        if state:
            raise ConfigError(
                f"{type(self).__name__} keeps no state, but the checkpoint holds aggregator state "
                f"{sorted(state)}: resume with the aggregator the run was started with"
            )


AggregatorLike = Aggregator | AggregatorFn
_REGISTRY: dict[str, AggregatorFn | type[Aggregator]] = {}


def register_aggregator(name: str) -> Callable[[Any], Any]:
    """Decorator: make a function ``fn(gram, active, orders) -> (coef, fired)`` or an
    :class:`Aggregator` subclass (instantiated with its defaults for every surgeon) available by
    ``name``."""

    def wrap(obj: Any) -> Any:
        if inspect.isclass(obj) and not issubclass(obj, Aggregator):
            raise TypeError(f"register_aggregator: {obj.__name__} must derive from Aggregator")
        _REGISTRY[name] = obj
        return obj

    return wrap


def get_aggregator(name: str | AggregatorLike | type[Aggregator]) -> AggregatorLike:
    """The aggregator called ``name``: a registered function as is, a registered class as a fresh
    instance. An aggregator object or function is returned unchanged, a class instantiated."""
    if inspect.isclass(name):
        return name()
    if callable(name):
        return name
    if name not in _REGISTRY:
        raise unknown_name("aggregator", name, list(_REGISTRY))
    entry = _REGISTRY[name]
    return entry() if inspect.isclass(entry) else entry


def available_aggregators() -> list[str]:
    return sorted(_REGISTRY)


# ---------------------------------------------------------------------------------------- helpers


def no_fire(gram: torch.Tensor) -> torch.Tensor:
    return torch.zeros(gram.shape[:2], dtype=torch.bool, device=gram.device)  # [M, K]


def masked_gram(gram: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``gram`` with the rows and columns of inactive domains set to zero: ``[M, K, K]``."""
    pair = active[:, None] & active[None, :]  # [K, K]
    return torch.where(pair[None], gram, 0.0)


def mean_weights(gram: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``1 / K_active`` on the active domains, 0 elsewhere: ``[K]``."""
    act = active.to(gram.dtype)
    return act / act.sum().clamp(min=1)


def zero_gradient(gram: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``[M, K]`` active domains whose gradient is zero in the group (they get coefficient 0)."""
    return active[None, :] & ~(torch.diagonal(gram, dim1=1, dim2=2) > 0)


def trace_normalized(gram: torch.Tensor, norm_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``gram / trace`` per group, and ``[M]`` whether the group counts as zero.

    torchjd's ``normalize``: a Gram whose trace is below ``norm_eps`` is replaced by zeros. mgs also
    treats a trace of exactly 0 as zero when ``norm_eps`` is 0, its default (see docs/aggregators.md:
    torchjd's absolute ``1e-4`` would switch most per-tensor groups of an LLM off).
    """
    trace = torch.diagonal(gram, dim1=1, dim2=2).sum(-1)  # [M]
    is_zero = (trace < norm_eps) | ~(trace > 0)
    safe = torch.where(is_zero, 1.0, trace)
    normalized = torch.where(is_zero[:, None, None], 0.0, gram / safe[:, None, None])
    return normalized, is_zero


def reweighted(coef: torch.Tensor, active: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """``fired`` of the weighting methods: domain k's coefficient differs from the mean of the
    active domains' coefficients by more than ``rtol`` times the largest one: ``[M, K]``."""
    act = active.to(coef.dtype)
    mean = (coef * act).sum(-1, keepdim=True) / act.sum().clamp(min=1)  # [M, 1]
    scale = (coef.abs() * act).amax(-1, keepdim=True)  # [M, 1]
    return active[None, :] & ((coef - mean).abs() > rtol * scale)


def finish(
    coef: torch.Tensor, fired: torch.Tensor, gram: torch.Tensor, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the coefficients of inactive and zero-gradient domains (never reported as fired)."""
    keep = active[None, :] & ~zero_gradient(gram, active)  # [M, K]
    return torch.where(keep, coef, 0.0), fired & keep


def check_param(ok: bool, message: str) -> None:
    """Raise a ConfigError with ``message`` (which names the fix) unless ``ok``."""
    if not ok:
        raise ConfigError(message)
