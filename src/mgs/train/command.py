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
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="Continue RUN_DIR from its latest checkpoint with its own config "
        "(overrides still apply, e.g. steps=200).",
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
    if args.resume:
        from pathlib import Path

        from mgs.errors import ConfigError

        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"--resume {run_dir}: no config.yaml there; pass the run directory of an earlier `mgs train`"
            )
        if args.config:
            raise ConfigError(
                "--resume uses the run's own config.yaml; drop --config (overrides are allowed)"
            )
        cfg = load_config(run_dir / "config.yaml", args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from mgs.train.run import run_training

    if args.resume:
        run_training(cfg, args.resume, resume=True)
    else:
        run_training(cfg, args.run_dir)
    return 0
