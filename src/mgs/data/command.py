"""``mgs data``: preview a configured domain mixture (sources, per-step counts, rendered prompts).

Reads the ``data:`` section of a training config (or a file holding a data section alone), applies
``key=value`` overrides, loads and renders every source exactly as training does, and prints what
the first batches will hold, so a mixture can be checked before a run spends GPU hours on it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError

_SHOWN_CHARS = 600  # a rendered prompt longer than this is cut in the preview


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="YAML file: a training config (its data: section is read) or a data section alone. "
        "Default: the embedded tiny demo.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a data key, e.g. mixture.batch_size=8 (a data. prefix is accepted)",
    )
    parser.add_argument("--steps", type=int, default=4, help="batches to summarise (default 4)")
    parser.add_argument("--start", type=int, default=0, help="first step to show (default 0)")
    parser.add_argument(
        "--show", type=int, default=1, help="rendered prompts to print per domain (default 1)"
    )
    parser.add_argument(
        "--tokenizer",
        help="local Hugging Face tokenizer folder (the policy's) used to count prompt tokens and "
        "apply chat templates; default: the built-in tiny character tokenizer",
    )
    parser.add_argument(
        "--help-config", action="store_true", help="list every data config key and exit"
    )


def load_data_config(path: str | None, overrides: list[str]) -> Any:
    """The :class:`~mgs.data.DataConfig` of a YAML file (or the defaults) with overrides applied."""
    from mgs.data.pipeline import DataConfig
    from mgs.dataclass_config import apply_overrides, from_dict, load_yaml

    section: dict[str, Any] = {}
    if path is not None:
        data = load_yaml(path)
        data_keys = {f.name for f in dataclasses.fields(DataConfig)}
        if "data" in data or not set(data) <= data_keys:  # a full training config
            section = data.get("data") or {}
        else:
            section = data
    overrides = [o.removeprefix("data.") for o in overrides]
    return from_dict(DataConfig, apply_overrides(section, overrides), "data")


def config_help() -> list[tuple[str, str, str]]:
    from mgs.data.mixture import PhaseConfig
    from mgs.data.pipeline import DataConfig
    from mgs.data.sources import SourceConfig
    from mgs.dataclass_config import describe

    rows = [r for r in describe(DataConfig) if r[0] not in ("sources", "mixture.phases")]
    return [
        *describe(SourceConfig, "sources[]"),
        *rows,
        *describe(PhaseConfig, "mixture.phases[]"),
    ]


def _tokenizer(path: str | None) -> Any:
    if path is None:
        from mgs.models.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    if not Path(path).is_dir():
        raise ConfigError(
            f"--tokenizer {path!r} is not a folder; pass a local tokenizer directory "
            "(nothing is downloaded), or leave it out for the tiny tokenizer"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _schedule_lines(mixture: Any) -> list[str]:
    out = []
    for i, phase in enumerate(mixture.phases):
        end = "end" if phase.stop is None else phase.stop - 1
        counts = ", ".join(f"{d} {c}" for d, c in phase.counts.items())
        out.append(f"phase {i}: steps {phase.start}..{end}: {counts} prompts per batch")
    return out


def run(args: argparse.Namespace) -> int:
    from mgs.data.pipeline import build_mixture

    if args.help_config:
        for key, default, help_text in config_help():
            print(f"{key} = {default}\n    {help_text}")
        return 0
    if args.steps < 0 or args.start < 0 or args.show < 0:
        raise ConfigError("--steps, --start and --show must be >= 0")
    cfg = load_data_config(args.config, args.overrides)
    mixture, report = build_mixture(cfg, _tokenizer(args.tokenizer))
    print("sources:")
    for line in report.lines():
        print(f"  {line}")
    print(
        f"template: {cfg.template.name}; batch_size: {cfg.mixture.batch_size}; seed: {cfg.mixture.seed}"
    )
    for line in _schedule_lines(mixture):
        print(line)
    print(f"fingerprint: {mixture.fingerprint}")
    domains = list(mixture.domains)
    print("step  phase  " + "  ".join(f"{d} (epoch)" for d in domains))
    stop = args.start + args.steps
    if mixture.num_steps is not None:
        stop = min(stop, mixture.num_steps)
    for step in range(args.start, stop):
        batch = mixture.batch(step)
        counts = {d: len(v) for d, v in batch.by_domain.items()}
        cells = [f"{counts.get(d, 0)} ({mixture.epoch(d, step):.2f})" for d in domains]
        print(f"{step:<5} {batch.phase:<6} " + "  ".join(cells))
    if args.show and args.start < stop:
        first = mixture.batch(args.start)
        for domain, examples in first.by_domain.items():
            for ex in examples[: args.show]:
                text = (
                    ex.prompt
                    if len(ex.prompt) <= _SHOWN_CHARS
                    else ex.prompt[:_SHOWN_CHARS] + " [...]"
                )
                print(
                    f"\n--- step {args.start}, {domain}, {ex.uid}, reference {dict(ex.reference)}"
                )
                print(text)
    return 0
