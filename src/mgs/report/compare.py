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

from mgs.report.compare_plan import check_compare_out, plan_comparison
from mgs.strategy import COMPARED
from mgs.train.config import TrainConfig
from mgs.train.new_run import clear_run_dir

__all__ = ["COMPARED", "run_comparison"]

# ``train(cfg, run_dir, resume=False)``: train ``cfg`` into ``run_dir`` (new or empty), or with
# ``resume`` continue the unfinished run there (mgs.train.run.run_training does both).
Train = Callable[..., object]


def run_comparison(
    base: TrainConfig,
    out_dir: Path,
    *,
    seeds: Sequence[int],
    strategies: Sequence[str] = COMPARED,
    train: Train,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Train every (variant, seed) into ``out_dir/<variant>-s<seed>``.

    Before the first run trains, every variant's config is derived (and so validated) and every
    existing run is checked (:func:`~mgs.report.compare_plan.plan_comparison`): a finished run
    trained with the same config is kept, an unfinished one continued, so an interrupted
    comparison continues where it stopped; a run trained with another config is an error
    (``overwrite``: it is deleted and retrained).
    """
    out = check_compare_out(out_dir)
    plan = plan_comparison(base, out, seeds=seeds, strategies=strategies, overwrite=overwrite)
    out.path.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(plan):
        tag = f"[{i + 1}/{len(plan)}] {item.run.path.name}"
        if item.action == "kept":
            echo(f"{tag}: done earlier with the same config, kept")
            continue
        if item.action == "retrain":
            clear_run_dir(item.run)
            echo(f"{tag}: trained earlier with another config; deleted, retraining (--overwrite)")
        elif item.action == "resume":
            echo(f"{tag}: unfinished, continuing it")
        else:
            echo(tag)
        tick = time.perf_counter()
        train(item.cfg, item.run.path, resume=item.action == "resume")
        echo(f"{tag}: {time.perf_counter() - tick:.0f} s")
    index = {
        "seeds": list(seeds),
        "strategies": list(dict.fromkeys(item.variant.label for item in plan)),
        "runs": [str(item.run.path) for item in plan],
    }
    out.index.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return [item.run.path for item in plan]
