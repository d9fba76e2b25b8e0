"""``mgs compare``: the four strategies on one config and several seeds, evaluated and reported.

The toy-scale version of the paper's main table and Figure 1: for every seed, train
``sequential``, ``mixed``, ``pcgrad`` (global surgery) and ``mgs`` from the same warm start on the
same data, evaluate each on the held-out prompts of every domain, then write one report
(``mgs report``) with per-strategy mean ± std.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mgs.data.mixture import PhaseConfig
from mgs.errors import ConfigError
from mgs.train.config import STRATEGIES, TrainConfig

COMPARED = ("sequential", "mixed", "pcgrad", "mgs")


def sequential_phases(cfg: TrainConfig) -> list[PhaseConfig]:
    """One phase per domain, in source order, splitting ``cfg.steps`` evenly (the last runs on)."""
    domains: list[str] = []
    for source in cfg.data.sources:
        if source.domain not in domains:
            domains.append(source.domain)
    if len(domains) < 2:
        raise ConfigError("mgs compare needs at least two domains in data.sources")
    per_phase = max(1, cfg.steps // len(domains))
    phases = [PhaseConfig(proportions={d: 1.0}, steps=per_phase) for d in domains[:-1]]
    phases.append(PhaseConfig(proportions={domains[-1]: 1.0}, steps=None))
    return phases


def strategy_config(base: TrainConfig, strategy: str, seed: int) -> TrainConfig:
    """``base`` with ``strategy`` and ``seed`` (sequential gets one phase per domain)."""
    if strategy not in STRATEGIES or strategy == "custom":
        raise ConfigError(
            f"mgs compare runs the strategies {', '.join(COMPARED)}; got {strategy!r}"
        )
    mixture = base.data.mixture
    if strategy == "sequential":
        mixture = dataclasses.replace(mixture, proportions={}, phases=sequential_phases(base))
    elif mixture.phases:
        raise ConfigError(
            "the base config of mgs compare must be a mixed schedule (data.mixture.proportions); "
            "compare derives the sequential phases itself"
        )
    strat = dataclasses.replace(base.strategy, name=strategy, aggregator=None, granularity=None)
    data = dataclasses.replace(base.data, mixture=mixture)
    return dataclasses.replace(base, strategy=strat, data=data, seed=seed)


def run_comparison(
    base: TrainConfig,
    out_dir: Path,
    *,
    seeds: Sequence[int],
    strategies: Sequence[str] = COMPARED,
    train: Callable[[TrainConfig, Path], object],
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Train every (strategy, seed) into ``out_dir/<strategy>-s<seed>``; finished runs (with a
    ``summary.json``) are kept, so an interrupted comparison continues where it stopped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    total = len(seeds) * len(strategies)
    for i, (seed, strategy) in enumerate((s, n) for s in seeds for n in strategies):
        run_dir = out_dir / f"{strategy}-s{seed}"
        run_dirs.append(run_dir)
        if (run_dir / "summary.json").is_file():
            echo(f"[{i + 1}/{total}] {run_dir.name}: done earlier, kept")
            continue
        echo(f"[{i + 1}/{total}] {run_dir.name}")
        tick = time.perf_counter()
        train(strategy_config(base, strategy, seed), run_dir)
        echo(f"[{i + 1}/{total}] {run_dir.name}: {time.perf_counter() - tick:.0f} s")
    (out_dir / "compare.json").write_text(
        json.dumps(
            {
                "seeds": list(seeds),
                "strategies": list(strategies),
                "runs": [str(p) for p in run_dirs],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return run_dirs
