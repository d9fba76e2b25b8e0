"""``mgs rm-train``: train the tiny Bradley-Terry chat reward model and print its held-out accuracy.

By default the pairs are the built-in tiny chat domain's (:func:`mgs.tiny.domains.preference_pairs`);
``--pairs FILE.jsonl`` trains on your own, one ``{"prompt", "chosen", "rejected"}`` object a line.
The output directory is an ordinary Hugging Face model directory: point
``rewards.reward_model.path`` at it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgs.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/tiny_rm", help="Directory to save the model in.")
    parser.add_argument(
        "--pairs",
        default=None,
        help="JSONL file of {prompt, chosen, rejected} objects (default: the tiny chat domain).",
    )
    parser.add_argument(
        "--num-pairs", type=int, default=2000, help="Tiny chat pairs to generate (no --pairs)."
    )
    parser.add_argument("--epochs", type=int, default=None, help="Passes over the pairs.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of data, split and model.")


def read_pairs(path: str | Path) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) triples from a JSONL file; a bad line is a DataError naming it."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"pairs file {str(p)!r} does not exist; pass a JSONL file to --pairs")
    pairs = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")
        ):
            raise DataError(f"{p}:{n}: expected an object with string prompt, chosen and rejected")
        pairs.append((row["prompt"], row["chosen"], row["rejected"]))
    return pairs


def run(args: argparse.Namespace) -> int:
    from mgs.tiny.reward_model import SUMMARY_FILE, TinyRMConfig, train_tiny_reward_model

    if args.pairs:
        pairs = read_pairs(args.pairs)
        source = args.pairs
    else:
        from mgs.tiny.domains import preference_pairs

        pairs = preference_pairs(args.num_pairs, args.seed)
        source = f"tiny chat domain ({args.num_pairs} pairs)"
    cfg = TinyRMConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    print(f"training the tiny reward model on {source}...")
    out = train_tiny_reward_model(pairs, args.out, cfg)
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    print(
        f"held-out pair accuracy: {summary['held_out_accuracy']:.3f} "
        f"({summary['held_out_pairs']} pairs); saved to {out}"
    )
    print(f"use it with: rewards.reward_model.path={out}")
    return 0
