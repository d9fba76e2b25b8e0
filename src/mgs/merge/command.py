"""``mgs merge --base BASE MODEL [MODEL ...] --method ties --out DIR``: merge per-domain runs.

The "train each domain alone, then merge" baseline: every MODEL (a Hugging Face directory or an
mgs run directory) was fine-tuned from BASE; their task vectors ``MODEL - BASE`` are combined by
task arithmetic or TIES (:mod:`mgs.merge.methods`) and added to BASE. The result is an ordinary
Hugging Face directory that ``mgs eval`` and ``from_pretrained`` read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

METHODS = ("task_arithmetic", "ties")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="Fine-tuned models or mgs run directories."
    )
    parser.add_argument(
        "--base", required=True, metavar="DIR", help="The model every MODEL was fine-tuned from."
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="Where to write the merge.")
    parser.add_argument(
        "--method", choices=METHODS, default="ties", help="Merge rule (default ties)."
    )
    parser.add_argument(
        "--scale",
        type=float,
        metavar="LAMBDA",
        help="Multiplier of the merged task vector; default 1.0 for ties and 1/N for "
        "task_arithmetic (the mean of the N models).",
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        metavar="W",
        help="One weight per MODEL (default 1 each).",
    )
    parser.add_argument(
        "--density",
        type=float,
        default=0.2,
        metavar="K",
        help="ties: fraction of each task vector's entries kept, by magnitude (default 0.2).",
    )


def check_options(n_models: int, weights: list[float] | None, density: float) -> list[float]:
    from mgs.errors import ConfigError

    if n_models < 1:
        raise ConfigError("pass at least one MODEL to merge")
    if not 0 < density <= 1:
        raise ConfigError(f"--density must be in (0, 1], e.g. 0.2; got {density}")
    if weights is None:
        return [1.0] * n_models
    if len(weights) != n_models:
        raise ConfigError(
            f"--weights has {len(weights)} values for {n_models} models; give one per MODEL"
        )
    return list(weights)


def merge_models(
    base: str | Path,
    models: list[str | Path],
    out: str | Path,
    method: str = "ties",
    *,
    scale: float | None = None,
    weights: list[float] | None = None,
    density: float = 0.2,
) -> dict[str, Any]:
    """Merge ``models`` (fine-tuned from ``base``) into ``out``; returns the merge description
    written as ``merge_config.json``."""
    from mgs.errors import ConfigError
    from mgs.merge.checkpoints import Weights, check_same_base, write_merged
    from mgs.merge.methods import merge_tensor

    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    check_new_dir(Path(out))
    w = check_options(len(models), weights, density)
    if scale is None:
        scale = 1.0 if method == "ties" else 1.0 / len(models)
    base_w = Weights.open(base)
    tuned = [Weights.open(m) for m in models]
    check_same_base(base_w, tuned)
    info = {
        "method": method,
        "base": str(base),
        "models": [str(m) for m in models],
        "weights": w,
        "scale": scale,
        **({"density": density} if method == "ties" else {}),
    }

    def merge(name: str) -> Any:
        return merge_tensor(
            method,  # type: ignore[arg-type]
            base_w.tensor(name),
            [t.tensor(name) for t in tuned],
            w,
            scale,
            density,
        )

    write_merged(base_w, merge, Path(out), info)
    return info


def check_new_dir(out: Path) -> None:
    """``--out`` must be a new or empty directory: a merge never writes beside other files (a run
    directory, one of its own inputs)."""
    from mgs.errors import ConfigError
    from mgs.output_paths import check_output_dir
    from mgs.train.new_run import shown

    check_output_dir(out, "--out")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held:
        raise ConfigError(
            f"--out {str(out)!r} is not empty (it holds {shown(held)}); a merge is written to a "
            "new or empty directory: pass another --out"
        )


def run(args: argparse.Namespace) -> int:
    info = merge_models(
        args.base,
        args.models,
        args.out,
        args.method,
        scale=args.scale,
        weights=args.weights,
        density=args.density,
    )
    extra = f", density {info['density']}" if "density" in info else ""
    print(
        f"merged {len(args.models)} model(s) onto {args.base} by {info['method']} (scale "
        f"{info['scale']:g}{extra}) -> {args.out}"
    )
    return 0
