"""What ``mgs compare`` does with each (variant, seed) before it trains any: every variant's config
is derived (and so validated) and every existing run directory is checked first.

An existing run is reused only when the config it was trained with (its ``config.yaml``) equals
the config the comparison would train now: a finished run (``summary.json``) is kept, an
unfinished one is continued (``--resume`` semantics: from its latest intact checkpoint, or from
step 0). A run trained with another config stops the comparison with one error naming the
differing keys (``--overwrite`` retrains those runs instead); a directory holding anything but a
run of ``mgs train`` is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mgs.errors import ConfigError
from mgs.output_paths import check_output_dir
from mgs.run_dir import CompareDir, RunDir
from mgs.strategy import Variant, variant_config
from mgs.train.config import TrainConfig
from mgs.train.config_diff import config_differences
from mgs.train.new_run import shown

Action = Literal["train", "kept", "resume", "retrain"]


@dataclass
class PlannedRun:
    """One run of a comparison and what to do with it."""

    variant: Variant
    seed: int
    cfg: TrainConfig
    run: RunDir
    action: Action  # train: new; kept: finished earlier; resume: unfinished; retrain: --overwrite


def check_compare_out(path: str | Path) -> CompareDir:
    """``--out`` can hold a comparison: a directory (or creatable), not a run of ``mgs train``."""
    check_output_dir(path, "--out")
    out = CompareDir(path)
    if RunDir(out.path).config.is_file():
        raise ConfigError(
            f"--out {str(out.path)!r} is a run directory of `mgs train`; pass a directory for the "
            "comparison (it gets one run directory per variant and seed)"
        )
    return out


def plan_comparison(
    base: TrainConfig,
    out: CompareDir,
    *,
    seeds: Sequence[int],
    strategies: Sequence[str],
    overwrite: bool = False,
) -> list[PlannedRun]:
    """Every (variant, seed) in training order with its action; one ConfigError naming every
    run in the way (another config, or files that are not a run) before anything trains."""
    variants = [Variant.parse(text) for text in strategies]
    for what, labels in (("--strategies", [v.label for v in variants]), ("--seeds", seeds)):
        twice = sorted({str(x) for x in labels if list(labels).count(x) > 1})
        if twice:
            raise ConfigError(f"{what} names {', '.join(twice)} more than once; name each once")
    plan, differing, foreign = [], [], []
    for seed in seeds:
        for variant in variants:
            cfg = variant_config(base, variant, seed)
            run = out.run(variant.label, seed)
            blocked = _not_a_run(run)
            if blocked:
                foreign.append(f"{run.path.name} ({blocked})")
                continue
            action, differences = _action(run, cfg)
            if differences and not overwrite:
                differing.append(f"{run.path.name} ({differences})")
            plan.append(PlannedRun(variant, seed, cfg, run, action))
    if foreign:
        raise ConfigError(
            f"--out {out.path}: {'; '.join(foreign)}; these are not runs of `mgs compare`, so they "
            "are left alone: move them away or pass another --out"
        )
    if differing:
        raise ConfigError(
            f"--out {out.path} holds runs trained with another config than this comparison's: "
            f"{'; '.join(differing)}; pass another --out, or --overwrite to retrain those runs"
        )
    return plan


def _not_a_run(run: RunDir) -> str | None:
    """Why ``run``'s path holds something other than nothing or a run of ``mgs train``."""
    if run.path.exists() and not run.path.is_dir():
        return "a file, not a run directory"
    if run.entries() and not run.is_train_run():
        return f"it holds {shown(run.foreign_entries() or run.entries())}"
    return None


def _action(run: RunDir, cfg: TrainConfig) -> tuple[Action, str | None]:
    """What to do with ``run`` (empty, or a run of ``mgs train``) and, for ``retrain``, how its
    config differs from ``cfg``."""
    if not run.entries():
        return "train", None
    differences = config_differences(run.config, cfg)
    if differences:
        more = f"; {len(differences) - 4} more" if len(differences) > 4 else ""
        return "retrain", "; ".join(differences[:4]) + more
    return ("kept" if run.summary.is_file() else "resume"), None
