"""Send each sample to its domain's reward and return finite rewards with per-domain statistics.

Per step: split every completion into thought and response (:mod:`mgs.rewards.extraction`); call
each reward once, batched, on the responses of exactly the domains routed to it; turn whatever goes
wrong into counted, finite numbers. A reward call that raises is retried sample by sample, so one
bad sample costs its own fallback, not its neighbours' rewards; a ``ConfigError`` (a wrong model
path, a missing reference column) is not a sample's fault and propagates.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mgs.errors import ConfigError
from mgs.rewards.config import RewardsConfig
from mgs.rewards.extraction import split_completion
from mgs.rewards.registry import Scores, get_reward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardResult:
    """One finite reward per sample, and ``reward/<domain>/<stat>`` numbers for logging."""

    rewards: list[float]
    stats: dict[str, float] = field(default_factory=dict)


class RewardRouter:
    """``router(domains, prompts, completions, columns) -> RewardResult``.

    ``prompts`` are the plain user requests (what a reward model sees as the user turn),
    ``completions`` the full generated texts, ``columns[i]`` sample i's reference columns
    (``answer``, ``instruction_id_list``, ``kwargs``...). ``domains`` given at construction are
    checked against the routes then. Use as a context manager, or call :meth:`close`, to stop
    worker processes.
    """

    def __init__(self, cfg: RewardsConfig, domains: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        for domain in domains or ():
            self._route(domain)
        self.rewards: dict[str, Any] = {
            name: get_reward(name, **cfg.options_for(name))
            for name in sorted(set(cfg.routes.values()))
        }

    def _route(self, domain: str) -> str:
        if domain not in self.cfg.routes:
            raise ConfigError(
                f"domain {domain!r} has no reward; add it to rewards.routes, e.g. "
                f"rewards.routes.{domain}=math (routed now: {', '.join(sorted(self.cfg.routes)) or 'none'})"
            )
        return self.cfg.routes[domain]

    def __call__(
        self,
        domains: list[str],
        prompts: list[str],
        completions: list[str],
        columns: list[dict[str, Any]],
    ) -> RewardResult:
        n = len(domains)
        if not (len(prompts) == len(completions) == len(columns) == n):
            raise ValueError(
                f"RewardRouter got {n} domains, {len(prompts)} prompts, {len(completions)} "
                f"completions and {len(columns)} column rows; they must be equal"
            )
        names = [self._route(d) for d in domains]
        rewards = [0.0] * n
        fallback, timed_out, missing = [False] * n, [False] * n, [False] * n
        by_reward: dict[str, list[int]] = {}
        responses: list[str | None] = [None] * n
        for i, completion in enumerate(completions):
            parsed = split_completion(completion, self.cfg.extraction)
            missing[i] = parsed.missing_tag
            responses[i] = parsed.response
            if parsed.response is not None:  # None: on_missing_response=zero, scores 0
                by_reward.setdefault(names[i], []).append(i)
        stats: dict[str, float] = {}
        failures: list[str] = []
        for name, idx in by_reward.items():
            start = time.perf_counter()
            scores = self._run(name, idx, prompts, responses, columns, failures)
            stats[f"reward/time/{name}_s"] = time.perf_counter() - start
            invalid: list[Any] = []
            for j, i in enumerate(idx):
                value = _as_finite(scores.values[j])
                fallback[i] = value is None
                rewards[i] = self.cfg.fallback if value is None else value
                timed_out[i] = bool(scores.timed_out[j]) if scores.timed_out else False
                if value is None and scores.values[j] is not None:
                    invalid.append(scores.values[j])
            if invalid:  # a reward bug, not a sample's failure: say so every step it happens
                log.warning(
                    "rewards: %d sample(s) of reward %r returned %r, not a finite number of at "
                    "most %g in size, and got the fallback %g",
                    len(invalid),
                    name,
                    invalid[0],
                    MAX_ABS_REWARD,
                    self.cfg.fallback,
                )
        if failures:
            log.warning(
                "rewards: %d sample(s) raised and got the fallback %g, e.g. %s",
                len(failures),
                self.cfg.fallback,
                failures[0],
            )
        stats.update(_domain_stats(domains, rewards, fallback, timed_out, missing))
        return RewardResult(rewards=rewards, stats=stats)

    def _run(
        self,
        name: str,
        idx: list[int],
        prompts: list[str],
        responses: list[str | None],
        columns: list[dict[str, Any]],
        failures: list[str],
    ) -> Scores:
        """Call reward ``name`` on samples ``idx``; on an exception, retry one sample at a time."""
        try:
            return self._call(name, idx, prompts, responses, columns)
        except ConfigError:
            raise
        except Exception:
            pass  # isolate the failing samples below
        values: list[float | None] = []
        timeouts: list[bool] = []
        for i in idx:
            try:
                one = self._call(name, [i], prompts, responses, columns)
                values.append(one.values[0])
                timeouts.append(bool(one.timed_out[0]) if one.timed_out else False)
            except ConfigError:
                raise
            except Exception as exc:
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                values.append(None)
                timeouts.append(False)
        return Scores(values=values, timed_out=timeouts)

    def _call(
        self,
        name: str,
        idx: list[int],
        prompts: list[str],
        responses: list[str | None],
        columns: list[dict[str, Any]],
    ) -> Scores:
        reward = self.rewards[name]
        keys = sorted({k for i in idx for k in columns[i]})
        cols = {k: [columns[i].get(k) for i in idx] for k in keys}
        args = ([prompts[i] for i in idx], [responses[i] or "" for i in idx])
        if hasattr(reward, "score"):
            result = reward.score(*args, **cols)
        else:
            result = Scores(values=list(reward(*args, **cols)))
        if len(result.values) != len(idx):
            raise ValueError(
                f"reward {name!r} returned {len(result.values)} values for {len(idx)} samples"
            )
        return result

    def close(self) -> None:
        """Stop the rewards' worker processes and free their models (idempotent)."""
        for reward in self.rewards.values():
            close = getattr(reward, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> RewardRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Larger values are treated like NaN: the advantages are float32 and the group statistics square
# the rewards, so 1e39 became inf (a crash in the advantage check) and 1e300 an OverflowError.
MAX_ABS_REWARD = 1e15


def _as_finite(value: Any) -> float | None:
    """A reward's value as a finite float, or None (None, NaN, inf, beyond
    :data:`MAX_ABS_REWARD`, a string or anything else that is not a number)."""
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, (str, bytes)):  # "1.0" is a bug in the reward, not a score
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) and abs(out) <= MAX_ABS_REWARD else None


def _domain_stats(
    domains: list[str],
    rewards: list[float],
    fallback: list[bool],
    timed_out: list[bool],
    missing: list[bool],
) -> dict[str, float]:
    stats: dict[str, float] = {}
    for domain in sorted(set(domains)):
        idx = [i for i, d in enumerate(domains) if d == domain]
        k = len(idx)
        values = [rewards[i] for i in idx]
        mean = sum(values) / k
        prefix = f"reward/{domain}"
        stats[f"{prefix}/mean"] = mean
        stats[f"{prefix}/std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / k)
        stats[f"{prefix}/count"] = float(k)
        stats[f"{prefix}/fallback_frac"] = sum(fallback[i] for i in idx) / k
        stats[f"{prefix}/timeout_frac"] = sum(timed_out[i] for i in idx) / k
        stats[f"{prefix}/missing_tag_frac"] = sum(missing[i] for i in idx) / k
    return stats
