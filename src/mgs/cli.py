"""The ``mgs`` command line: ``mgs <command> [options]``.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
command modules keep their module-level imports light (torch and transformers are imported inside
``run``) so that ``mgs --help`` stays fast. Errors a user can fix
(:class:`~mgs.errors.MgsError`) print one line ``error: ...`` and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while waiting make torch on a shared CPU (other ranks, reward workers,
# another job) 4-20x slower: measured 6.5 s vs 1.7 s per tiny SFT step on a loaded 2-core machine.
# Set before torch is imported; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mgs import __version__
from mgs.errors import MgsError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "mgs.train.command",
        "train a policy with GRPO on several domains (default: the tiny demo)",
    ),
    "data": (
        "mgs.data.command",
        "preview a configured domain mixture: batch counts and rendered prompts",
    ),
    "rm-train": ("mgs.tiny.rm_command", "train the tiny Bradley-Terry chat reward model"),
    "eval": (
        "mgs.eval.command",
        "evaluate a model on benchmarks (math suite, IFEval/IFBench, MMLU-Redux, PopQA, "
        "ZebraLogic, chat, tiny domains)",
    ),
    "report": (
        "mgs.report.command",
        "figures and a markdown summary from one or more run directories",
    ),
    "compare": (
        "mgs.report.compare_command",
        "train and evaluate the four strategies side by side",
    ),
    "merge": (
        "mgs.merge.command",
        "merge models fine-tuned from one base (task arithmetic, TIES) into a new model",
    ),
}


# Optional libraries a command may need, and how to install them.
EXTRAS = {
    "datasets": "pip install 'mgs[datasets]'",
    "vllm": "pip install 'mgs[vllm]'",
    "trl": "pip install 'mgs[trl]'",
    "tensorboard": "pip install 'mgs[tensorboard]'",
    "wandb": "pip install 'mgs[wandb]'",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgs",
        description="Multi-domain GRPO with Modular Gradient Surgery.",
    )
    parser.add_argument("--version", action="version", version=f"mgs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Listed, never silently dropped: running it says what is missing.
            cmd.set_defaults(_run=_missing(name, exc))
            continue
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _missing(command: str, exc: ModuleNotFoundError):
    package = (exc.name or "").split(".")[0]
    fix = EXTRAS.get(package, f"pip install {package}" if package else "reinstall mgs")

    def run(args: argparse.Namespace) -> int:
        raise MgsError(
            f"`mgs {command}` cannot start: the Python package {package!r} is not installed "
            f"({exc}); install it: {fix}"
        )

    return run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MgsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``mgs`` command and ``python -m mgs``: :func:`main`, then exit with its status.

    Under torchrun (``WORLD_SIZE`` > 1) a rank leaves with ``os._exit`` once its output is
    flushed. The run has already left its process group (``distributed_session``), yet finished
    runs still aborted in the interpreter's teardown (SIGABRT, "terminate called without an
    active exception"; twice, under DDP and FSDP2): ``destroy_process_group`` only drops the
    registry's references, and gloo objects that outlive it die in finalisation, when their
    threads can no longer take the GIL (pytorch/pytorch #179291), so torchrun reported a failed
    run. Everything of a run is closed by then (metrics, checkpoints, reward worker pools,
    W&B / TensorBoard writers)."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
