"""Domain mixtures: which prompts make up the batch of optimizer step ``t``.

A schedule is a list of phases, each a domain or a sub-mixture of domains with proportions, and a
length in steps or in epochs: ``mixed`` is one unbounded phase, ``sequential`` (Math -> Chat) one
phase per domain. Within a phase every batch holds *exactly* ``apportion(proportions,
batch_size)`` prompts per domain (largest-remainder rounding), not a random count as a weighted
sampler would give: per-domain GRPO statistics and the domain-synchronous micro-batch schedule
then see the same shape at every step. ``sampling: iid`` gives the paper's original behaviour
instead: each prompt's domain drawn independently in proportion to the weights.

Each domain is read as an endless stream: epoch ``e`` is a permutation of its examples seeded by
``(seed, domain, e)``, so every example is seen once per epoch and the order never depends on
the other domains. ``batch(t)`` is a pure function of ``t``; iterating the mixture walks
``batch(0), batch(1), ...`` and ``state_dict()`` / ``load_state_dict()`` save and restore that
position (plus a fingerprint check that the data and the schedule did not change), so a resumed
run sees exactly the batches an uninterrupted one would, and every rank of a distributed run
computes the same global batch without communicating.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from mgs.data.example import Example
from mgs.dataclass_config import option, to_dict
from mgs.errors import ConfigError, DataError

SAMPLING = ("exact", "iid")
_IID_STREAM = zlib.crc32(b"iid domain draws")  # keeps iid draws apart from the epoch shuffles


@dataclass
class PhaseConfig:
    """One phase of a schedule: a domain or a sub-mixture, and how long it lasts."""

    proportions: dict[str, float] = option(
        default_factory=dict,
        help="Sub-mixture: domain -> weight in each batch (relative), e.g. {math: 0.7, chat: 0.3}.",
    )
    steps: int | None = option(
        None, help="Optimizer steps in this phase; null (last phase only): until training ends."
    )
    epochs: float | None = option(
        None,
        help="Length in passes over the phase's data instead of steps: ceil(epochs x prompts of "
        "the phase's domains / batch_size) steps.",
    )
    domain: str | None = option(
        None, help="A one-domain phase: domain: math is proportions: {math: 1}."
    )

    def __post_init__(self) -> None:
        if (self.domain is None) == (not self.proportions):
            raise ConfigError(
                "a phase needs exactly one of domain: (one domain, e.g. domain: math) or "
                "proportions: (a sub-mixture, e.g. {math: 1, chat: 1})"
            )
        if self.proportions:
            _check_weights(self.proportions, "phase proportions")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError(
                f"a phase's length is steps: or epochs:, not both (got steps: {self.steps}, "
                f"epochs: {self.epochs})"
            )
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"a phase's steps must be positive, got {self.steps}")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ConfigError(f"a phase's epochs must be a positive number, got {self.epochs}")

    @property
    def weights(self) -> dict[str, float]:
        return {self.domain: 1.0} if self.domain is not None else dict(self.proportions)

    @property
    def bounded(self) -> bool:
        return self.steps is not None or self.epochs is not None


@dataclass
class MixtureConfig:
    """Which domains fill each batch, in what shares, and in what order over training."""

    batch_size: int = option(64, help="Prompts per optimizer step (each is rolled out n times).")
    proportions: dict[str, float] = option(
        default_factory=dict,
        help="Mixed schedule: domain -> weight (relative). Empty: equal shares of every domain.",
    )
    phases: list[PhaseConfig] = option(
        default_factory=list,
        help="Sequential schedule instead: phases run in order, e.g. "
        "[{domain: math, steps: 100}, {domain: chat, epochs: 2}, {proportions: {math: 1, chat: 1}}].",
    )
    sampling: Literal["exact", "iid"] = option(
        "exact",
        help="exact: every batch holds the apportioned count of each domain; iid: each prompt's "
        "domain is drawn independently by weight (the original WeightedRandomSampler), so "
        "counts vary from batch to batch.",
    )
    seed: int = option(0, help="Seed of every domain's per-epoch shuffle (and of iid draws).")

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(
                f"mixture.batch_size must be a positive integer, got {self.batch_size}"
            )
        if self.seed < 0:
            raise ConfigError(f"mixture.seed must be >= 0, got {self.seed}")
        if self.sampling not in SAMPLING:
            raise ConfigError(
                f"mixture.sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}"
            )
        if self.proportions and self.phases:
            raise ConfigError(
                "set mixture.proportions (one mixed phase) or mixture.phases (a sequential "
                "schedule), not both; a mixed phase can be written as a single phase"
            )
        if self.proportions:
            _check_weights(self.proportions, "mixture.proportions")
        for i, phase in enumerate(self.phases[:-1]):
            if not phase.bounded:
                raise ConfigError(
                    f"mixture.phases[{i}] has no steps or epochs, but only the last phase may run "
                    "until the end; give it steps: N or epochs: N"
                )
        for i, phase in enumerate(self.phases):
            apportion(phase.weights, self.batch_size, f"mixture.phases[{i}]")
        if self.proportions:
            apportion(self.proportions, self.batch_size, "mixture.proportions")


def apportion(weights: dict[str, float], total: int, where: str = "proportions") -> dict[str, int]:
    """Split ``total`` prompts by ``weights`` with largest-remainder rounding (exact sum).

    Weights are relative (they need not sum to 1). Ties in the remainders go to the domain listed
    first. A domain whose quota rounds to 0 still gets 1 prompt (the others share the rest by
    largest remainder), so every listed domain is trained at every step; a ``total`` smaller
    than the number of domains cannot do that and is a config error saying how to fix it.
    """
    if total < len(weights):
        raise ConfigError(
            f"{where}: the batch size {total} is smaller than the {len(weights)} domains with a "
            f"share ({', '.join(weights)}), so some batch would miss a domain; raise "
            f"mixture.batch_size to at least {len(weights)} or give fewer domains a share"
        )
    fixed: dict[str, int] = {}  # domains raised to one prompt
    while True:
        free = {d: w for d, w in weights.items() if d not in fixed}
        counts = _largest_remainder(free, total - len(fixed))
        starved = [d for d, c in counts.items() if c == 0]
        if not starved:
            break
        fixed.update(dict.fromkeys(starved, 1))
    return {d: fixed.get(d) or counts[d] for d in weights}


def _largest_remainder(weights: dict[str, float], total: int) -> dict[str, int]:
    norm = sum(weights.values())
    quotas = {d: total * w / norm for d, w in weights.items()}
    counts = {d: math.floor(q) for d, q in quotas.items()}
    order = sorted(weights, key=lambda d: counts[d] - quotas[d])  # stable: ties keep list order
    for d in order[: total - sum(counts.values())]:
        counts[d] += 1
    return counts


@dataclass(frozen=True)
class Phase:
    start: int  # first step of the phase
    stop: int | None  # first step after it; None: unbounded
    counts: dict[str, int]  # prompts per batch, per domain (exact sampling)
    weights: dict[str, float]  # each domain's probability per prompt (iid sampling)


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

    def deal(self, domains: list[str], rank: int, world_size: int) -> RankShare:
        """This rank's share of the batch, padded so that every rank runs the same schedule.

        Each domain's prompts are dealt round-robin over the ranks (rank ``r`` gets prompts
        ``r, r + W, ...`` of that domain); a rank with fewer prompts of a domain than another
        pads with copies of the domain's prompts, flagged invalid (no reward, zero loss weight),
        so every rank runs the same number of prompts, rollouts and micro-batches per domain, in
        the order of ``domains``: the domain-synchronous schedule that keeps DDP / FSDP2 from
        mixing one rank's math gradient with another's chat gradient. A pure function of the
        batch: every rank computes every rank's counts itself, with no collective.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        by_domain: dict[str, list[int]] = {}
        for i, ex in enumerate(self.examples):
            by_domain.setdefault(ex.domain, []).append(i)
        share = RankShare([], [], [])
        for domain in domains:
            pool = by_domain.get(domain, [])
            own = pool[rank::world_size]
            rows = -(-len(pool) // world_size)  # the most any rank has: ceil(len / W)
            for j in range(rows):
                index = (own or pool)[j % len(own or pool)]
                share.examples.append(self.examples[index])
                share.keys.append(index if j < len(own) else PAD_KEY + index)
                share.valid.append(j < len(own))
        return share


# Keys of padding prompts (copies on a rank short of a domain): far from any batch index.
PAD_KEY = 1 << 40


@dataclass
class RankShare:
    """One rank's prompts of a batch: the examples, their sampling keys (index in the batch,
    or ``PAD_KEY + index`` for a padding copy) and whether each is real (False: padding)."""

    examples: list[Example]
    keys: list[int]
    valid: list[bool]


class DomainMixture:
    """Deterministic batches drawn from per-domain example pools.

    ``mixture.batch(step)`` is a pure function of the step, so resuming needs no position: a
    checkpoint stores only the :attr:`fingerprint` of the data and the mixture, and
    ``check_fingerprint`` refuses a resume whose data or mixture changed.
    """

    def __init__(self, domains: dict[str, list[Example]], cfg: MixtureConfig) -> None:
        self.domains = domains
        self.cfg = cfg
        for name, pool in domains.items():
            if not pool:
                raise DataError(f"domain {name!r} has no examples; check its sources")
        phases = cfg.phases or [PhaseConfig(cfg.proportions or dict.fromkeys(domains, 1.0))]
        used: set[str] = set()
        for i, phase in enumerate(phases):
            unknown = [d for d in phase.weights if d not in domains]
            if unknown:
                where = f"phases[{i}]" if cfg.phases else "proportions"
                raise ConfigError(
                    f"mixture {where} names domain {unknown[0]!r}, which no source provides; "
                    f"domains with sources: {', '.join(domains)}"
                )
            used.update(phase.weights)
        unused = [d for d in domains if d not in used]
        if unused:
            raise ConfigError(
                f"domain {unused[0]!r} has sources but no share in the mixture; give it a "
                "weight in mixture.proportions / phases or remove its sources"
            )
        self.phases: list[Phase] = []
        start = 0
        for i, phase in enumerate(phases):
            # Counts in the mixture's domain order, so batches group domains consistently.
            where = f"mixture.phases[{i}]" if cfg.phases else "mixture.proportions"
            if not (cfg.phases or cfg.proportions):
                where = "mixture (equal shares of every domain)"
            counts = apportion(phase.weights, cfg.batch_size, where)
            counts = {d: counts[d] for d in domains if d in counts}
            norm = sum(phase.weights.values())
            weights = {d: phase.weights[d] / norm for d in counts}
            length = phase.steps
            if phase.epochs is not None:
                prompts = sum(len(domains[d]) for d in counts)
                length = math.ceil(phase.epochs * prompts / cfg.batch_size)
            stop = None if length is None else start + length
            self.phases.append(Phase(start, stop, counts, weights))
            if stop is not None:  # only the last phase may be unbounded
                start = stop
        self.fingerprint = self._fingerprint()
        self._names = list(domains)
        self._drawn = [np.zeros(len(domains), dtype=np.int64)]  # iid: drawn before step t

    # ------------------------------------------------------------------------- schedule

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

    def counts(self, step: int) -> dict[str, int]:
        """Prompts of each domain in the batch of ``step`` (every domain of its phase, maybe 0)."""
        phase = self.phases[self.phase_at(step)]
        if self.cfg.sampling == "exact":
            return dict(phase.counts)
        rng = np.random.default_rng([self.cfg.seed, _IID_STREAM, step])
        drawn = rng.multinomial(self.cfg.batch_size, list(phase.weights.values()))
        return dict(zip(phase.weights, (int(n) for n in drawn)))

    def drawn_before(self, domain: str, step: int) -> int:
        """How many prompts of ``domain`` the batches of steps ``0 .. step-1`` hold."""
        if self.cfg.sampling == "iid":
            while len(self._drawn) <= step:
                t = len(self._drawn) - 1
                counts = self.counts(t)
                row = np.array([counts.get(d, 0) for d in self._names], dtype=np.int64)
                self._drawn.append(self._drawn[-1] + row)
            return int(self._drawn[step][self._names.index(domain)])
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

    def draw(self, domain: str, index: int) -> Example:
        """Element ``index`` of ``domain``'s endless stream of shuffled passes over its pool."""
        pool = self.domains[domain]
        order = _permutation(self.cfg.seed, domain, len(pool), index // len(pool))
        return pool[order[index % len(pool)]]

    def batch(self, step: int) -> MixtureBatch:
        """The prompts of optimizer step ``step`` (a pure function of ``step``)."""
        index = self.phase_at(step)
        examples: list[Example] = []
        for domain, count in self.counts(step).items():
            first = self.drawn_before(domain, step)
            examples.extend(self.draw(domain, k) for k in range(first, first + count))
        return MixtureBatch(step, index, examples)

    def check_fingerprint(self, fingerprint: str | None) -> None:
        """A checkpoint's fingerprint must match this mixture's (same data, mixture and seed)."""
        if fingerprint != self.fingerprint:
            raise DataError(
                "the data or the mixture changed since this checkpoint was written (fingerprint "
                f"{fingerprint} != {self.fingerprint}); resume with the same sources, mixture and "
                "seed, or start a new run"
            )

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
