"""``mgs compare``: strategy variants on one config and several seeds, evaluated and reported.

The toy-scale version of the paper's main table and Figure 1: for every seed, train each variant
(default: ``sequential``, ``mixed``, ``pcgrad`` (global surgery) and ``mgs``; any
``NAME[:AGGREGATOR[@GRANULARITY]]`` of :mod:`mgs.strategy`) from the same warm start on the same
data, evaluate each on the held-out prompts of every domain, then write one report
(``mgs report``) with per-strategy mean ± std.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mgs.run_dir import CompareDir
from mgs.strategy import COMPARED, Variant, variant_config
from mgs.train.config import TrainConfig

__all__ = ["COMPARED", "run_comparison"]


def run_comparison(
    base: TrainConfig,
    out_dir: Path,
    *,
    seeds: Sequence[int],
    strategies: Sequence[str] = COMPARED,
    train: Callable[[TrainConfig, Path], object],
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Train every (variant, seed) into ``out_dir/<variant>-s<seed>``; finished runs (with a
    ``summary.json``) are kept, so an interrupted comparison continues where it stopped.

    Every variant's config is derived (and so validated) before the first run trains.
    """
    variants = [Variant.parse(text) for text in strategies]
    plan = [(v, seed, variant_config(base, v, seed)) for seed in seeds for v in variants]
    out = CompareDir(out_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    run_dirs = []
    for i, (variant, seed, cfg) in enumerate(plan):
        run = out.run(variant.label, seed)
        run_dirs.append(run.path)
        tag = f"[{i + 1}/{len(plan)}] {run.path.name}"
        if run.summary.is_file():
            echo(f"{tag}: done earlier, kept")
            continue
        echo(tag)
        tick = time.perf_counter()
        train(cfg, run.path)
        echo(f"{tag}: {time.perf_counter() - tick:.0f} s")
    index = {
        "seeds": list(seeds),
        "strategies": [v.label for v in variants],
        "runs": [str(p) for p in run_dirs],
    }
    out.index.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return run_dirs
