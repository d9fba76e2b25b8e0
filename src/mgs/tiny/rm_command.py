"""``mgs rm-train``: train the tiny Bradley-Terry chat reward model and print its held-out accuracy.

By default the pairs are the built-in tiny chat domain's (:func:`mgs.tiny.domains.preference_pairs`);
``--pairs FILE.jsonl`` trains on your own, one ``{"prompt", "chosen", "rejected"}`` object a line.
The output directory is an ordinary Hugging Face model directory: point
``rewards.reward_model.path`` at it. An existing directory is never written over, except a reward
model of an earlier ``mgs rm-train`` with ``--overwrite``; the model is trained in a temporary
folder beside ``--out`` and moved into place only once it is saved, so a failed run loses nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from mgs.errors import ConfigError, DataError

MIN_PAIRS = 4  # a held-out share must remain to measure the accuracy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="runs/tiny_rm",
        help="Directory to save the model in (new or empty; see --overwrite).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace --out when it holds a reward model of an earlier `mgs rm-train` "
        "(never another directory, e.g. a trained policy).",
    )
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
        what = "is a directory" if p.is_dir() else "does not exist"
        raise DataError(f"pairs file {str(p)!r} {what}; pass a JSONL file to --pairs")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"pairs file {str(p)!r} is not UTF-8 text (byte {exc.start} cannot be decoded); pass "
            "a JSONL file of {prompt, chosen, rejected} objects to --pairs"
        ) from None
    except OSError as exc:
        raise DataError(f"pairs file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
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


def check_out(out: Path, overwrite: bool) -> None:
    """``--out`` may be written: new or empty, or (with ``--overwrite``) an earlier reward model."""
    from mgs.output_paths import check_output_dir
    from mgs.tiny.reward_model import SUMMARY_FILE

    check_output_dir(out, "--out")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not held:
        return
    shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
    if not overwrite:
        raise ConfigError(
            f"--out {str(out)!r} already holds files ({shown}); rm-train never writes over a "
            "directory: pass a new one, or --overwrite to replace a reward model of an earlier "
            "`mgs rm-train`"
        )
    if not (out / SUMMARY_FILE).is_file():
        raise ConfigError(
            f"--out {str(out)!r} is not a reward model of `mgs rm-train` (no {SUMMARY_FILE}; it "
            f"holds {shown}), so --overwrite leaves it alone; pass a new directory"
        )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Put the finished model folder ``tmp`` at ``out`` (replacing an earlier reward model)."""
    old = None
    if out.is_dir():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from mgs.tiny.reward_model import SUMMARY_FILE, TinyRMConfig, train_tiny_reward_model

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1 (passes over the pairs), got {args.epochs}")
    if args.pairs:
        pairs = read_pairs(args.pairs)
        source = args.pairs
    else:
        from mgs.tiny.domains import preference_pairs

        if args.num_pairs < MIN_PAIRS:
            raise ConfigError(
                f"--num-pairs must be at least {MIN_PAIRS} (a share is held out to measure the "
                f"accuracy), got {args.num_pairs}; e.g. --num-pairs 2000"
            )
        pairs = preference_pairs(args.num_pairs, args.seed)
        source = f"tiny chat domain ({args.num_pairs} pairs)"
    out = Path(args.out)
    check_out(out, args.overwrite)  # before training: a bad --out would lose the model
    cfg = TinyRMConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    print(f"training the tiny reward model on {source}...")
    final = out.resolve()
    tmp = final.with_name(f".{final.name}.tmp-{time.time_ns()}")
    try:
        train_tiny_reward_model(pairs, tmp, cfg)
        _move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    print(
        f"held-out pair accuracy: {summary['held_out_accuracy']:.3f} "
        f"({summary['held_out_pairs']} pairs); saved to {out}"
    )
    print(f"use it with: rewards.reward_model.path={out}")
    return 0
