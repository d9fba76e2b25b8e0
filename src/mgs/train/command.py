"""``mgs train``: train a policy with GRPO on several domains (default: the embedded tiny demo)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="Run config (YAML). Default: the embedded tiny default (src/mgs/configs/tiny.yaml).",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Config overrides, e.g. strategy.name=mixed steps=20 rollout.sampling.n=4",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="Run directory (default: logging.run_dir or runs/<time>-<strategy>).",
    )
    parser.add_argument(
        "--help-config",
        action="store_true",
        help="List every config key with its default and help, then exit.",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="Print the resolved config as YAML, then exit."
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from mgs.dataclass_config import describe, to_dict
    from mgs.train.config import TrainConfig, load_config

    if args.help_config:
        for key, default, text in describe(TrainConfig):
            print(f"{key} = {default}\n    {text}")
        return 0
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from mgs.train.run import run_training

    run_training(cfg, args.run_dir)
    return 0
