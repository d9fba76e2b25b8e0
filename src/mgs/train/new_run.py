"""The directory of a new ``mgs train`` run: new or empty, never one that already holds files.

A second run into a used directory used to overwrite its ``config.yaml`` and ``summary.json``,
append its metrics to the first run's (steps 0, 1, 2, 0, 1) and keep the first run's
checkpoints, so that a later ``--resume`` loaded them under the second run's config. So an
existing non-empty directory is refused, with the ways out: ``--resume`` to continue the run it
holds, another directory, or ``--overwrite``, which deletes the earlier run first. ``--overwrite``
deletes only a run directory of ``mgs train`` (its ``config.yaml`` and nothing but names of the
layout, :meth:`mgs.run_dir.RunDir.is_train_run`), never a folder holding anything else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mgs.errors import ConfigError
from mgs.output_paths import check_output_dir
from mgs.run_dir import RunDir


def claim_run_dir(path: str | Path, option: str, *, overwrite: bool = False) -> str | None:
    """Make sure a new run may write ``path`` (``option`` names where it came from in errors):
    raises :class:`~mgs.errors.ConfigError` when it may not; with ``overwrite``, deletes the
    earlier run it holds and returns a note saying so (None when there was nothing to delete)."""
    check_output_dir(path, option)  # a file, or a folder that cannot be created
    run = RunDir(path)
    held = run.entries()
    if not held:
        return None
    problem = reuse_problem(run, option, overwrite=overwrite)
    if problem:
        raise ConfigError(problem)
    clear_run_dir(run)
    return f"--overwrite: deleted the earlier run in {run} ({shown(held)})"


def reuse_problem(run: RunDir, option: str, *, overwrite: bool) -> str | None:
    """Why a new run may not go into the non-empty ``run`` (None: ``overwrite`` may clear it)."""
    where = f"{option} {str(run)!r}"
    foreign = run.foreign_entries()
    if not run.config.is_file() or foreign:
        what = (
            f"files that are not part of a run of `mgs train` ({shown(foreign)})"
            if foreign
            else f"files ({shown(run.entries())}) but no {RunDir.CONFIG}, so it is no run of "
            "`mgs train`"
        )
        fix = "pass a new or empty directory"
        if overwrite:
            fix += "; --overwrite deletes only a run directory of `mgs train`, never other files"
        return f"{where} already holds {what}; {fix}"
    if overwrite:
        return None
    return (
        f"{where} already holds a run of `mgs train` ({shown(run.entries())}); a run directory "
        "is never reused, so that its metrics and checkpoints stay one run's: continue that run "
        f"with `mgs train --resume {run}`, train into a new directory, or pass --overwrite to "
        "delete it and start over"
    )


def clear_run_dir(run: RunDir) -> None:
    """Delete everything in ``run``, a run directory of ``mgs train`` (checked first: a folder
    holding anything else is never touched); the directory itself stays."""
    if not run.is_train_run():
        raise ConfigError(
            f"{run} is not a run directory of `mgs train` (it holds {shown(run.entries())}); "
            "it is left alone"
        )
    for name in run.entries():
        entry = run.path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def shown(names: list[str], limit: int = 4) -> str:
    """``a, b, c, d, ...``: the first ``limit`` names."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
