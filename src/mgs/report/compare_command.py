"""``mgs compare``: train strategy variants (default: sequential / mixed / pcgrad / mgs) on one
config and several seeds, then report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="Base run config (YAML, a mixed schedule). Default: the embedded tiny default.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Overrides applied to every run, e.g. steps=20 eval.prompts_per_domain=32",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds (default: 0 1 2)."
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        metavar="NAME",
        help="Strategy variants: NAME, NAME:AGGREGATOR or NAME:AGGREGATOR@GRANULARITY, e.g. "
        "mixed mgs mgs:pcgrad@module custom:mean@layer (default: sequential mixed pcgrad mgs).",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="Output directory (runs + report); default runs/compare-<UTC time>. Re-running with "
        "the same --out keeps the finished runs trained with the same config, continues "
        "unfinished ones and trains the rest; a run trained with another config is an error "
        "(see --overwrite).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Delete and retrain the runs in --out that were trained with another config "
        "(runs with the same config are kept).",
    )


# Keys every run of a comparison gets from the command's own options, not from overrides.
SET_BY_COMPARE = {
    "seed": "--seeds",
    "strategy.name": "--strategies",
    "strategy.aggregator": "--strategies (NAME:AGGREGATOR)",
    "strategy.granularity": "--strategies (NAME:AGGREGATOR@GRANULARITY)",
}


def check_overrides(overrides: list[str]) -> None:
    """Refuse an override that every variant would replace (it was dropped without a word)."""
    from mgs.errors import ConfigError

    for text in overrides:
        key = text.partition("=")[0].strip()
        if key in SET_BY_COMPARE:
            raise ConfigError(
                f"override {text!r}: mgs compare sets {key} for each run from "
                f"{SET_BY_COMPARE[key]}; drop the override and use that option"
            )


def run(args: argparse.Namespace) -> int:
    from mgs.report import write_report
    from mgs.report.compare import COMPARED, run_comparison
    from mgs.run_dir import CompareDir
    from mgs.train.config import load_config
    from mgs.train.run import run_training

    check_overrides(args.overrides)
    base = load_config(args.config, args.overrides)
    strategies = args.strategies or list(COMPARED)
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")

    def train(cfg, run_dir: Path, resume: bool = False) -> None:
        run_training(cfg, run_dir, echo=_warnings_only, resume=resume)

    run_dirs = run_comparison(
        base,
        out,
        seeds=args.seeds,
        strategies=strategies,
        train=train,
        overwrite=args.overwrite,
    )
    result = write_report(run_dirs, CompareDir(out).report, labels=[p.name for p in run_dirs])
    for name in ("strategy_reward", "strategy_reward_change", "eval_reward"):
        if name in result.tables:
            print(f"\n{result.tables[name]}")
            break
    if "paired_reward" in result.tables:  # each strategy minus mixed, seed by seed
        print(f"\n{result.tables['paired_reward']}")
    print(f"\nreport: {result.markdown}")
    return 0


def _warnings_only(line: str) -> None:
    """The echo of each run: only its warnings (e.g. a damaged checkpoint skipped on resume)."""
    if line.startswith("warning:"):
        print(line)
