"""Domain mixtures: which prompts make up the batch of optimizer step ``t``.

A schedule is a list of phases, each with domain proportions and a length in steps: ``mixed`` is
one unbounded phase, ``sequential`` (Math -> Chat) is one phase per domain. Within a phase every
batch holds *exactly* ``apportion(proportions, batch_size)`` prompts per domain (largest-remainder
rounding), not a random count as a weighted sampler would give: per-domain GRPO statistics and
the domain-synchronous micro-batch schedule then see the same shape at every step.

Each domain is read as an endless stream: epoch ``e`` is a permutation of its examples seeded by
``(seed, domain, e)``, so every example is seen once per epoch and the order never depends on
the other domains. ``batch(t)`` is a pure function of ``t``: resuming at step ``t`` needs only
``t`` (plus a fingerprint check that the data and the schedule did not change), and every rank
of a distributed run computes the same global batch without communicating.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mgs.data.example import Example
from mgs.dataclass_config import option, to_dict
from mgs.errors import ConfigError, DataError


@dataclass
class PhaseConfig:
    """One phase of a schedule: its domain proportions and how many steps it lasts."""

    proportions: dict[str, float] = option(  # noqa: RUF009 - option() returns a dataclasses.field
        help="Domain -> weight in each batch (relative; normalised), e.g. {math: 0.7, chat: 0.3}."
    )
    steps: int | None = option(
        None, help="Optimizer steps in this phase; null (last phase only): until training ends."
    )

    def __post_init__(self) -> None:
        _check_weights(self.proportions, "phase proportions")
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"a phase's steps must be positive, got {self.steps}")


@dataclass
class MixtureConfig:
    """Which domains fill each batch, in what shares, and in what order over training."""

    batch_size: int = option(64, help="Prompts per optimizer step (each is rolled out n times).")
    proportions: dict[str, float] = option(  # noqa: RUF009 - option() returns a dataclasses.field
        default_factory=dict,
        help="Mixed schedule: domain -> weight (relative). Empty: equal shares of every domain.",
    )
    phases: list[PhaseConfig] = option(  # noqa: RUF009 - option() returns a dataclasses.field
        default_factory=list,
        help="Sequential schedule instead: phases run in order, e.g. "
        "[{proportions: {math: 1}, steps: 100}, {proportions: {chat: 1}}].",
    )
    seed: int = option(0, help="Seed of every domain's per-epoch shuffle.")

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(
                f"mixture.batch_size must be a positive integer, got {self.batch_size}"
            )
        if self.seed < 0:
            raise ConfigError(f"mixture.seed must be >= 0, got {self.seed}")
        if self.proportions and self.phases:
            raise ConfigError(
                "set mixture.proportions (one mixed phase) or mixture.phases (a sequential "
                "schedule), not both; a mixed phase can be written as a single phase"
            )
        if self.proportions:
            _check_weights(self.proportions, "mixture.proportions")
        for i, phase in enumerate(self.phases[:-1]):
            if phase.steps is None:
                raise ConfigError(
                    f"mixture.phases[{i}] has no steps, but only the last phase may run until "
                    "the end; give it steps: N"
                )
        for i, phase in enumerate(self.phases):
            apportion(phase.proportions, self.batch_size, f"mixture.phases[{i}]")
        if self.proportions:
            apportion(self.proportions, self.batch_size, "mixture.proportions")


def apportion(weights: dict[str, float], total: int, where: str = "proportions") -> dict[str, int]:
    """Split ``total`` prompts by ``weights`` with largest-remainder rounding (exact sum).

    Ties in the remainders go to the domain listed first. Every listed domain must get at least
    one prompt; otherwise the config error says how to fix it.
    """
    norm = sum(weights.values())
    quotas = {d: total * w / norm for d, w in weights.items()}
    counts = {d: math.floor(q) for d, q in quotas.items()}
    order = sorted(weights, key=lambda d: counts[d] - quotas[d])  # stable: ties keep list order
    for d in order[: total - sum(counts.values())]:
        counts[d] += 1
    starved = [d for d, c in counts.items() if c == 0]
    if starved:
        raise ConfigError(
            f"{where}: domain {starved[0]!r} gets 0 of the {total} prompts in a batch; "
            "raise mixture.batch_size or its weight, or leave the domain out"
        )
    return counts


@dataclass(frozen=True)
class Phase:
    start: int  # first step of the phase
    stop: int | None  # first step after it; None: unbounded
    counts: dict[str, int]  # prompts per batch, per domain


@dataclass(frozen=True)
class MixtureBatch:
    """The prompts of one optimizer step, grouped by domain in the mixture's domain order."""

    step: int
    phase: int
    examples: list[Example]

    @property
    def by_domain(self) -> dict[str, list[Example]]:
        out: dict[str, list[Example]] = {}
        for ex in self.examples:
            out.setdefault(ex.domain, []).append(ex)
        return out

    def shard(self, rank: int, world_size: int) -> list[Example]:
        """This rank's share: every ``world_size``-th prompt of each domain, starting at ``rank``.

        Every rank gets the same domains and per-domain counts within one, which keeps the
        domain-synchronous micro-batch schedule short (the trainer pads the remainder).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        return [ex for group in self.by_domain.values() for ex in group[rank::world_size]]


class DomainMixture:
    """Deterministic, resumable batches drawn from per-domain example pools."""

    def __init__(self, domains: dict[str, list[Example]], cfg: MixtureConfig) -> None:
        self.domains = domains
        self.cfg = cfg
        for name, pool in domains.items():
            if not pool:
                raise DataError(f"domain {name!r} has no examples; check its sources")
        phases = cfg.phases or [PhaseConfig(cfg.proportions or dict.fromkeys(domains, 1.0))]
        used: set[str] = set()
        for i, phase in enumerate(phases):
            unknown = [d for d in phase.proportions if d not in domains]
            if unknown:
                where = f"phases[{i}]" if cfg.phases else "proportions"
                raise ConfigError(
                    f"mixture {where} names "
                    f"domain {unknown[0]!r}, which no source provides; "
                    f"domains with sources: {', '.join(domains)}"
                )
            used.update(phase.proportions)
        unused = [d for d in domains if d not in used]
        if unused:
            raise ConfigError(
                f"domain {unused[0]!r} has sources but no share in the mixture; give it a "
                "weight in mixture.proportions / phases or remove its sources"
            )
        self.phases: list[Phase] = []
        start = 0
        for phase in phases:
            # Counts in the mixture's domain order, so batches group domains consistently.
            counts = apportion(phase.proportions, cfg.batch_size)
            counts = {d: counts[d] for d in domains if d in counts}
            stop = None if phase.steps is None else start + phase.steps
            self.phases.append(Phase(start, stop, counts))
            if stop is not None:  # only the last phase may be unbounded
                start = stop
        self.fingerprint = self._fingerprint()

    @property
    def num_steps(self) -> int | None:
        """Length of a bounded (sequential) schedule; None when the last phase never ends."""
        return self.phases[-1].stop

    def phase_at(self, step: int) -> int:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        for i, phase in enumerate(self.phases):
            if phase.stop is None or step < phase.stop:
                return i
        raise DataError(
            f"step {step} is past the end of the schedule ({self.num_steps} steps); lower the "
            "number of training steps or give the last phase steps: null to run it until the end"
        )

    def drawn_before(self, domain: str, step: int) -> int:
        """How many prompts of ``domain`` the batches of steps ``0 .. step-1`` hold."""
        total = 0
        for phase in self.phases:
            if step <= phase.start:
                break
            end = step if phase.stop is None else min(step, phase.stop)
            total += (end - phase.start) * phase.counts.get(domain, 0)
        return total

    def epoch(self, domain: str, step: int) -> float:
        """Passes over ``domain``'s pool completed before ``step`` (fractional)."""
        return self.drawn_before(domain, step) / len(self.domains[domain])

    def batch(self, step: int) -> MixtureBatch:
        """The prompts of optimizer step ``step`` (a pure function of ``step``)."""
        index = self.phase_at(step)
        examples: list[Example] = []
        for domain, count in self.phases[index].counts.items():
            pool = self.domains[domain]
            first = self.drawn_before(domain, step)
            for k in range(first, first + count):
                order = _permutation(self.cfg.seed, domain, len(pool), k // len(pool))
                examples.append(pool[order[k % len(pool)]])
        return MixtureBatch(step, index, examples)

    def state_dict(self, next_step: int) -> dict[str, Any]:
        """What a checkpoint stores to resume at ``next_step``."""
        return {"next_step": next_step, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Check a checkpoint's state against this mixture; return the step to resume at."""
        if state.get("fingerprint") != self.fingerprint:
            raise DataError(
                "the data or the mixture changed since this checkpoint was written (fingerprint "
                f"{state.get('fingerprint')} != {self.fingerprint}); resume with the same sources, "
                "mixture and seed, or start a new run"
            )
        return int(state["next_step"])

    def _fingerprint(self) -> str:
        content = {
            "mixture": to_dict(self.cfg),
            "domains": {d: [ex.uid for ex in pool] for d, pool in self.domains.items()},
        }
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@lru_cache(maxsize=64)
def _permutation(seed: int, domain: str, size: int, epoch: int) -> np.ndarray:
    """Order of ``domain``'s pool in ``epoch``: stable across runs, processes and Python versions
    (crc32, not ``hash()``, which is salted per process)."""
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode()), epoch])
    return rng.permutation(size)


def _check_weights(weights: dict[str, float], where: str) -> None:
    if not weights:
        raise ConfigError(f"{where} is empty; write e.g. {{math: 0.5, chat: 0.5}}")
    for domain, w in weights.items():
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
            raise ConfigError(
                f"{where}: the weight of {domain!r} must be a positive number, got {w!r}; "
                "leave a domain out instead of giving it 0"
            )
