"""``mgs report RUN_DIR [RUN_DIR ...]``: PNG figures and a markdown summary of training runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories written by `mgs train` (each holds metrics.jsonl, summary.json...)",
    )
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        help="output directory for report.md and the PNGs (default: RUN_DIR/report for one run, "
        "reports/<UTC time> for several)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="comma-separated names of the runs, in order (default: the directory names), "
        "e.g. --labels mixed,mgs",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=1,
        help="moving-average window (logged steps) applied to every curve (default 1: raw)",
    )
    parser.add_argument("--dpi", type=int, default=120, help="PNG resolution (default 120)")


def run(args: argparse.Namespace) -> int:
    from mgs.report.build import ReportOptions, write_report

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    options = ReportOptions(smooth=args.smooth, dpi=args.dpi)
    result = write_report(args.run_dirs, args.out, labels=labels, options=options)
    for note in result.notes:
        label, warned, text = note.partition(": warning: ")  # "<run>: warning: ..."
        print(f"warning: {label}: {text}" if warned else f"note: {note}")
    for path in result.figures.values():
        print(f"figure: {path}")
    print(f"report: {result.markdown}")
    return 0
