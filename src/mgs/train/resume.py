"""Which checkpoint ``mgs train --resume`` continues from.

``--resume RUN`` takes the latest *intact* checkpoint of the run: one whose ``trainer_state.pt``
loads (tensors and plain values only, ``weights_only=True``) and whose ``model/`` holds a readable
``config.json`` and weight files whose headers fit their sizes
(:func:`mgs.models.loading.model_dir_problem`, milliseconds even for a 7B model). A damaged latest
checkpoint (a truncated file, a deleted ``model/``) is named in a warning and the previous intact
one is used (``logging.keep_checkpoints >= 2`` keeps one); when none is intact the resume stops
with one error listing what was found. ``--resume RUN/checkpoints/step_N`` picks a checkpoint
explicitly. A trainer state holding other Python objects is never skipped silently: it stops the
resume (:class:`~mgs.train.checkpoint.UnsafeCheckpointError`).

Rank 0 decides (:func:`mgs.train.distributed.decided_by_main`); the other ranks load what it chose.
"""

from __future__ import annotations

from pathlib import Path

from mgs.errors import ConfigError
from mgs.run_dir import RunDir
from mgs.train.checkpoint import CheckpointError, UnsafeCheckpointError, load_state
from mgs.train.config import TrainConfig
from mgs.train.config_diff import config_differences


def resume_target(text: str | Path) -> tuple[RunDir, Path | None]:
    """``--resume``'s argument as (the run directory, the checkpoint it names or None).

    ``RUN`` resumes from RUN's latest intact checkpoint; ``RUN/checkpoints/step_N`` from that one
    (the run directory is its grandparent)."""
    path = Path(text)
    if not path.exists() and path.parent.name == RunDir.CHECKPOINTS:
        run = RunDir(path.parent.parent)
        raise ConfigError(
            f"--resume {str(path)!r} does not exist; the checkpoints of {run} are: "
            f"{_names(run.checkpoint_dirs())}"
        )
    if not path.exists():
        raise ConfigError(
            f"--resume {str(path)!r} does not exist; pass the run directory of an earlier "
            "`mgs train`"
        )
    if not path.is_dir():
        raise ConfigError(
            f"--resume {str(path)!r} is a file; pass the run directory of an earlier `mgs train` "
            f"(or one of its checkpoints, RUN/{RunDir.CHECKPOINTS}/step_N)"
        )
    owner = RunDir.of_checkpoint(path)
    checkpoint = path if owner is not None else None
    run = owner if owner is not None else RunDir(path)
    if not run.config.is_file():
        raise ConfigError(
            f"--resume {run}: no {RunDir.CONFIG} there; pass the run directory of an earlier "
            f"`mgs train` (or one of its checkpoints, RUN/{RunDir.CHECKPOINTS}/step_N)"
        )
    return run, checkpoint


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What makes ``checkpoint`` unusable (naming the damaged file), or None when it is intact.

    Raises :class:`~mgs.train.checkpoint.UnsafeCheckpointError` for a trainer state holding
    objects that loading could execute."""
    from mgs.models.loading import model_dir_problem

    model = RunDir.checkpoint_model(checkpoint)
    if not model.is_dir():
        return f"{model} is missing"
    problem = model_dir_problem(model)
    if problem:
        return f"{model}/{problem}"
    try:
        load_state(checkpoint)  # memory-mapped: reads the pickle, not the tensors' bytes
    except UnsafeCheckpointError:
        raise
    except CheckpointError as exc:
        return str(exc)
    return None


def choose_checkpoint(run: RunDir, explicit: Path | None = None) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume ``run`` from (None: the run has none yet, start at step 0) and
    the warnings to print (damaged checkpoints skipped, later ones that will be replaced)."""
    found = run.checkpoint_dirs()
    if explicit is None:
        return _latest_intact(run, found)
    problem = checkpoint_problem(explicit)
    if problem:
        raise ConfigError(
            f"--resume {explicit} cannot be used: {problem}; pick another checkpoint of the run "
            f"({_names(found)}) or `--resume {run}` for its latest intact one"
        )
    step = RunDir.checkpoint_step(explicit)
    later = [p.name for s, p in found if step is not None and s > step]
    if not later:
        return explicit, []
    return explicit, [
        f"warning: resume: continuing from {explicit.name}: the metrics of step {step} on are "
        f"dropped, and the later checkpoints ({', '.join(later)}) are replaced as those steps "
        "run again"
    ]


def _latest_intact(run: RunDir, found: list[tuple[int, Path]]) -> tuple[Path | None, list[str]]:
    """The newest checkpoint without a problem, and a warning per damaged newer one."""
    if not found:
        return None, []
    problems = []
    for _, checkpoint in reversed(found):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            warnings = [
                f"warning: resume: skipped the damaged checkpoint {bad.name}: {why}; continuing "
                f"from {checkpoint.name} (the steps after it run again)"
                for bad, why in problems
            ]
            return checkpoint, warnings
        problems.append((checkpoint, problem))
    listed = "; ".join(f"{bad.name}: {why}" for bad, why in problems)
    raise ConfigError(
        f"--resume {run}: no intact checkpoint to continue from ({listed}). To start the run "
        f"over, train its config into a new directory: `mgs train -c {run.config} --run-dir "
        "NEW_DIR`"
    )


def _names(found: list[tuple[int, Path]]) -> str:
    return ", ".join(p.name for _, p in found) if found else "it has none"


# The keys that shape a checkpoint's weights: a resume cannot change them (the saved tensors would
# not fit; peft reports that as dozens of "size mismatch" lines after the warm start).
FIXED_ON_RESUME = ("model.name:", "model.tiny.", "model.lora.", "model.lora:")


def check_resume_config(run: RunDir, cfg: TrainConfig, checkpoint: Path | None) -> None:
    """Refuse a resume that cannot continue ``run`` as configured by ``cfg`` (its config.yaml plus
    the command line's overrides), before anything loads:

    - an override of a key that shapes the saved weights (:data:`FIXED_ON_RESUME`);
    - ``steps`` at or below the steps ``checkpoint`` has done: nothing would train, and the
      resume would cut ``metrics.jsonl`` back and replace ``model/`` with the checkpoint's
      (older) weights."""
    fixed = [d for d in config_differences(run.config, cfg) if d.startswith(FIXED_ON_RESUME)]
    if fixed:
        raise ConfigError(
            f"--resume {run}: {'; '.join(fixed)}: the checkpoints' weights have the run's shapes, "
            "so a resume cannot change this; drop the override, or train a new run with it"
        )
    done = RunDir.checkpoint_step(checkpoint) if checkpoint is not None else None
    if done is not None and cfg.steps <= done:
        raise ConfigError(
            f"--resume {run}: {checkpoint.name} has {done} steps done and steps is {cfg.steps}, "
            "so nothing is left to train (and resuming would cut the run's metrics back to "
            f"{done} steps and replace its model/ with that checkpoint's weights); pass "
            f"steps=N with N > {done} to train on, or --resume {checkpoint.parent}/step_K for "
            f"an earlier checkpoint (K < {cfg.steps})"
        )
