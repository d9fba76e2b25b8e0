"""``mgs data``: preview a configured domain mixture (sources, per-step counts, rendered prompts).

Reads the ``data:`` section of a training config (or a file holding a data section alone), applies
``key=value`` overrides, loads and renders every source exactly as training does, and prints what
the first batches will hold, so a mixture can be checked before a run spends GPU hours on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError

_SHOWN_CHARS = 600  # a rendered prompt longer than this is cut in the preview


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
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
        "--show",
        type=int,
        default=2,
        help="rendered prompts to print per domain: the next ones it serves from --start "
        "(default 2)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the text preview"
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
    """The :class:`~mgs.data.DataConfig` of a YAML file (default: the embedded tiny default's
    ``data:`` section) with overrides applied."""
    from mgs.data.pipeline import DataConfig
    from mgs.dataclass_config import apply_overrides, from_dict, load_yaml
    from mgs.tiny import DEFAULT_CONFIG

    # No file: the data section of the embedded tiny default, i.e. what `mgs train` trains on.
    data = load_yaml(path if path is not None else DEFAULT_CONFIG)
    section: dict[str, Any] = data.get("data") or {}
    if path is not None:
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
        from mgs.tiny.model import build_tiny_tokenizer

        return build_tiny_tokenizer()
    if not Path(path).is_dir():
        raise ConfigError(
            f"--tokenizer {path!r} is not a folder; pass a local tokenizer directory "
            "(nothing is downloaded), or leave it out for the tiny tokenizer"
        )
    from transformers import AutoTokenizer

    from mgs.models.loading import load_errors

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except load_errors() as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"--tokenizer {path!r}: no tokenizer could be loaded from it ({first}); pass the "
            "folder of a saved Hugging Face tokenizer (tokenizer.json, tokenizer_config.json)"
        ) from None


def _schedule_lines(mixture: Any) -> list[str]:
    out = []
    for i, phase in enumerate(mixture.phases):
        steps = f"steps {phase.start}..{'end' if phase.stop is None else phase.stop - 1}"
        if mixture.cfg.sampling == "iid":
            shares = ", ".join(f"{d} {w:.2f}" for d, w in phase.weights.items())
            out.append(f"phase {i}: {steps}: each prompt's domain drawn by share: {shares}")
        else:
            counts = ", ".join(f"{d} {c}" for d, c in phase.counts.items())
            out.append(f"phase {i}: {steps}: {counts} prompts per batch")
    return out


def preview(mixture: Any, start: int, steps: int, show: int) -> dict[str, Any]:
    """The first batches' per-domain counts and each domain's next ``show`` prompts."""
    stop = start + steps
    if mixture.num_steps is not None:
        stop = min(stop, mixture.num_steps)
    batches = []
    for step in range(start, stop):
        counts = mixture.counts(step)
        batches.append(
            {
                "step": step,
                "phase": mixture.phase_at(step),
                "counts": {d: counts.get(d, 0) for d in mixture.domains},
                "epochs": {d: round(mixture.epoch(d, step), 4) for d in mixture.domains},
            }
        )
    prompts = {}
    for domain in mixture.domains:  # the prompts this domain serves next, from step `start` on
        first = mixture.drawn_before(domain, start) if start < stop else 0
        prompts[domain] = [
            {
                "uid": ex.uid,
                "prompt": ex.prompt,
                "reference": dict(ex.reference),
            }
            for ex in (mixture.draw(domain, first + i) for i in range(show))
        ]
    return {"batches": batches, "prompts": prompts}


def run(args: argparse.Namespace) -> int:
    from mgs.data.pipeline import build_mixture
    from mgs.dataclass_config import to_dict

    if args.help_config:
        for key, default, help_text in config_help():
            print(f"{key} = {default}\n    {help_text}")
        return 0
    if args.steps < 0 or args.start < 0 or args.show < 0:
        raise ConfigError("--steps, --start and --show must be >= 0")
    cfg = load_data_config(args.config, args.overrides)
    if not args.json:  # what will load, before loading it (a hub dataset may be out of reach)
        print("will load:")
        for source in cfg.sources:
            print(f"  {source.plan()}")
    mixture, report = build_mixture(cfg, _tokenizer(args.tokenizer))
    shown = preview(mixture, args.start, args.steps, args.show)
    if args.json:
        out = {
            "sources": report.to_dict(),
            "max_prompt_tokens": cfg.max_prompt_tokens,
            "overlong": cfg.overlong,
            "template": to_dict(cfg.template),
            "batch_size": cfg.mixture.batch_size,
            "sampling": cfg.mixture.sampling,
            "seed": cfg.mixture.seed,
            "phases": [
                {"start": ph.start, "stop": ph.stop, "counts": ph.counts, "weights": ph.weights}
                for ph in mixture.phases
            ],
            "fingerprint": mixture.fingerprint,
            **shown,
        }
        print(json.dumps(out, indent=2, default=str))
        return 0
    print("sources:")
    for line in report.lines():
        print(f"  {line}")
    print(
        f"template: {cfg.template.name}; batch_size: {cfg.mixture.batch_size}; "
        f"sampling: {cfg.mixture.sampling}; seed: {cfg.mixture.seed}"
    )
    for line in _schedule_lines(mixture):
        print(line)
    print(f"fingerprint: {mixture.fingerprint}")
    domains = list(mixture.domains)
    print("step  phase  " + "  ".join(f"{d} (epoch)" for d in domains))
    for row in shown["batches"]:
        cells = [f"{row['counts'][d]} ({row['epochs'][d]:.2f})" for d in domains]
        print(f"{row['step']:<5} {row['phase']:<6} " + "  ".join(cells))
    for domain, examples in shown["prompts"].items():
        for ex in examples:
            text = ex["prompt"]
            if len(text) > _SHOWN_CHARS:
                text = text[:_SHOWN_CHARS] + " [...]"
            print(f"\n--- {domain}, {ex['uid']}, reference {ex['reference']}")
            print(text)
    return 0
