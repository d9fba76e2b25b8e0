"""Training strategies: the ``strategy:`` config -> a schedule and a gradient combiner.

A strategy is data, not a subclass: a *schedule* (``mixed`` batches drawn from
``data.mixture.proportions``, or ``sequential`` phases from ``data.mixture.phases``), an
*aggregator* (how the domains' gradients are combined inside a group: ``sum``, ``pcgrad``, ...)
and a *granularity* (the groups: ``tensor``, ``module``, ``layer``, ``global``). The four of the
paper, plus ``custom``:

=============  ===========  ==========  ===========================================
name           schedule     aggregator  granularity
=============  ===========  ==========  ===========================================
``mixed``      mixed        sum         global (the plain summed gradient)
``sequential`` phases       sum         global
``pcgrad``     mixed        pcgrad      global (the paper's "global surgery")
``mgs``        mixed        pcgrad      tensor (overridable: module, layer, another aggregator)
``custom``     either       yours       yours
=============  ===========  ==========  ===========================================

This module owns every question about strategies: validating the config
(:class:`StrategyConfig`), resolving it (:meth:`StrategyConfig.resolved`), checking it against
the data schedule (:func:`check_schedule`), deriving the variants ``mgs compare`` trains side by
side (:func:`variant_config`), naming a run's strategy in reports (:func:`strategy_key`), and
building the gradient combiner the trainer talks to (:func:`mgs.strategy.combiner.build_combiner`).
A new strategy is one :func:`register_strategy` call. Importing this module is light (no torch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mgs.dataclass_config import option
from mgs.errors import ConfigError

if TYPE_CHECKING:
    from mgs.data.mixture import MixtureConfig, PhaseConfig
    from mgs.train.config import TrainConfig

GRANULARITIES = ("tensor", "module", "layer", "global")  # mirrors mgs.surgery.groups


@dataclass(frozen=True)
class Strategy:
    """One named strategy: its schedule and the aggregator x granularity it fixes or defaults to."""

    name: str
    schedule: Literal["mixed", "sequential", "any"]
    aggregator: str | None  # None: strategy.aggregator must say (custom)
    granularity: str | None  # None: strategy.granularity must say (custom)
    overridable: bool  # whether strategy.aggregator / strategy.granularity may replace them
    about: str


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Make ``strategy.name: <strategy.name>`` available (and comparable in ``mgs compare``)."""
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    if name not in _REGISTRY:
        raise ConfigError(
            f"strategy.name {name!r} is unknown; write one of: {', '.join(_REGISTRY)}"
        )
    return _REGISTRY[name]


register_strategy(
    Strategy("mixed", "mixed", "sum", "global", False, "summed gradient of mixed batches")
)
register_strategy(
    Strategy("sequential", "sequential", "sum", "global", False, "domain phases, summed gradient")
)
register_strategy(
    Strategy("pcgrad", "mixed", "pcgrad", "global", False, "PCGrad on the whole gradient")
)
register_strategy(
    Strategy("mgs", "mixed", "pcgrad", "tensor", True, "PCGrad inside every group (MGS)")
)
register_strategy(Strategy("custom", "any", None, None, True, "any aggregator x granularity"))

# What mgs compare trains by default: the paper's four.
COMPARED = ("sequential", "mixed", "pcgrad", "mgs")


def _available_aggregators() -> list[str]:
    from mgs.surgery.aggregators import available_aggregators  # torch: only when validating

    return available_aggregators()


@dataclass
class StrategyConfig:
    """How the domains' gradients are combined.

    mixed: summed gradient of mixed batches; sequential: domain phases (data.mixture.phases),
    summed gradient; pcgrad: PCGrad on the whole gradient ("global surgery"); mgs: PCGrad inside
    every group (default granularity: tensor, as the paper's code); custom: any aggregator x
    granularity. See docs/method.md.
    """

    name: str = option("mgs", help="mixed, sequential, pcgrad, mgs or custom.")
    aggregator: str | None = option(
        None, help="custom (or override for mgs): sum, mean, pcgrad, or a registered aggregator."
    )
    granularity: str | None = option(
        None, help="custom (or override for mgs): tensor, module, layer or global."
    )
    track_conflicts: bool = option(
        True,
        help="mixed / sequential: still keep per-domain gradients to log their conflicts "
        "(the same update; costs the surgery's memory). false: one plain backward buffer.",
    )
    buffer_dtype: Literal["auto", "float32", "bfloat16"] = option(
        "auto", help="dtype of the per-domain gradient buffers (auto: the parameters' dtype)."
    )
    seed: int = option(0, help="Seed of PCGrad's random domain orders.")
    advantage_norm: Literal["group", "domain"] = option(
        "group",
        help="group: GRPO's advantages as grpo.advantage_scale says (per prompt); domain: centred "
        "per prompt, then divided by the root mean square of its domain's advantages in the batch "
        "(all ranks), so every domain weighs the same whatever its reward's scale: a baseline "
        "that balances domains by scale instead of by gradient surgery.",
    )

    def __post_init__(self) -> None:
        strategy = get_strategy(self.name)
        if self.aggregator is not None and self.aggregator not in _available_aggregators():
            raise ConfigError(
                f"strategy.aggregator {self.aggregator!r} is unknown; write one of: "
                f"{', '.join(_available_aggregators())}"
            )
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise ConfigError(
                f"strategy.granularity {self.granularity!r} is unknown; write one of: "
                f"{', '.join(GRANULARITIES)}"
            )
        if strategy.aggregator is None and (self.aggregator is None or self.granularity is None):
            raise ConfigError(
                f"strategy.name: {self.name} needs strategy.aggregator and strategy.granularity, "
                "e.g. aggregator: pcgrad, granularity: layer"
            )
        if not strategy.overridable and (self.aggregator or self.granularity):
            raise ConfigError(
                f"strategy {self.name!r} fixes its aggregator and granularity; to choose them use "
                "strategy.name: mgs (PCGrad, any granularity) or custom"
            )

    def resolved(self) -> tuple[str, str]:
        """``(aggregator, granularity)`` this strategy uses."""
        strategy = get_strategy(self.name)
        return (
            str(self.aggregator or strategy.aggregator),
            str(self.granularity or strategy.granularity),
        )

    @property
    def schedule(self) -> str:
        return get_strategy(self.name).schedule

    @property
    def needs_surgeon(self) -> bool:
        """Whether the per-domain gradients are kept (else one plain backward buffer)."""
        aggregator, _ = self.resolved()
        return aggregator != "sum" or self.track_conflicts


def check_schedule(cfg: StrategyConfig, mixture: MixtureConfig) -> None:
    """The strategy's schedule agrees with ``data.mixture`` (phases only for a sequential one)."""
    schedule = cfg.schedule
    if schedule == "sequential" and not mixture.phases:
        raise ConfigError(
            f"strategy {cfg.name} needs data.mixture.phases, e.g. "
            "[{proportions: {math: 1}, steps: 50}, {proportions: {chat: 1}}]"
        )
    if schedule == "mixed" and mixture.phases and len(mixture.phases) > 1:
        raise ConfigError(
            f"data.mixture.phases is a sequential schedule but strategy.name is {cfg.name!r}; "
            "use strategy.name: sequential or data.mixture.proportions"
        )


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """A strategy to compare: ``NAME``, ``NAME:AGGREGATOR`` or ``NAME:AGGREGATOR@GRANULARITY``."""

    name: str
    aggregator: str | None = None
    granularity: str | None = None

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition(":")
        aggregator, _, granularity = rest.partition("@")
        variant = cls(name, aggregator or None, granularity or None)
        variant.config()  # validates the names now, before anything trains
        return variant

    @property
    def label(self) -> str:
        """Directory-safe label: ``mgs``, ``mgs-upgrad``, ``custom-mgda-layer``."""
        return "-".join(p for p in (self.name, self.aggregator, self.granularity) if p)

    def config(self, base: StrategyConfig | None = None) -> StrategyConfig:
        """``base`` (its seed, buffers...) with this variant's name, aggregator and granularity."""
        base = base or StrategyConfig()
        try:
            return dataclasses.replace(
                base, name=self.name, aggregator=self.aggregator, granularity=self.granularity
            )
        except ConfigError as exc:
            raise ConfigError(f"strategy variant {self.label!r}: {exc}") from None


def sequential_phases(cfg: TrainConfig) -> list[PhaseConfig]:
    """One phase per domain, in source order, splitting ``cfg.steps`` evenly (the last runs on)."""
    from mgs.data.mixture import PhaseConfig

    domains: list[str] = []
    for source in cfg.data.sources:
        if source.domain not in domains:
            domains.append(source.domain)
    if len(domains) < 2:
        raise ConfigError("a sequential variant needs at least two domains in data.sources")
    per_phase = max(1, cfg.steps // len(domains))
    phases = [PhaseConfig(proportions={d: 1.0}, steps=per_phase) for d in domains[:-1]]
    phases.append(PhaseConfig(proportions={domains[-1]: 1.0}, steps=None))
    return phases


def variant_config(base: TrainConfig, variant: Variant | str, seed: int) -> TrainConfig:
    """``base`` (a mixed schedule) trained as ``variant`` with ``seed``; a sequential variant gets
    one phase per domain (:func:`sequential_phases`)."""
    if isinstance(variant, str):
        variant = Variant.parse(variant)
    strategy = variant.config(base.strategy)
    mixture = base.data.mixture
    if mixture.phases:
        raise ConfigError(
            "the base config of a comparison must be a mixed schedule (data.mixture.proportions); "
            "the sequential phases are derived from it"
        )
    if strategy.schedule == "sequential":
        mixture = dataclasses.replace(mixture, proportions={}, phases=sequential_phases(base))
    data = dataclasses.replace(base.data, mixture=mixture)
    return dataclasses.replace(base, strategy=strategy, data=data, seed=seed)


def strategy_key(strategy: dict[str, Any]) -> tuple[str, str | None]:
    """``(grouping key, resolved granularity)`` of a run's ``strategy`` section as saved in its
    config.yaml: ``"mgs"``, or ``"mgs (upgrad, module)"`` when the config overrides the defaults.
    Unknown names are kept as they are (a run of another version still groups by its name)."""
    name = str(strategy.get("name") or "unknown")
    aggregator, granularity = strategy.get("aggregator"), strategy.get("granularity")
    known = _REGISTRY.get(name)
    resolved = granularity or (known.granularity if known else None)
    key = name
    if aggregator or granularity:
        key += f" ({aggregator or 'pcgrad'}, {granularity or 'tensor'})"
    return key, resolved


def describe_strategy(cfg: StrategyConfig) -> str:
    """One line for the run's header: ``mgs (aggregator pcgrad, granularity tensor)``."""
    aggregator, granularity = cfg.resolved()
    return f"{cfg.name} (aggregator {aggregator}, granularity {granularity})"
