"""The layout of a run directory, in one place: every file name ``mgs train`` writes and
``mgs eval`` / ``mgs report`` / ``mgs compare`` read.

::

    RUN/
      config.yaml               the resolved run config (what --resume reads)
      metrics.jsonl             one JSON line of scalars per step
      surgery/step_XXXXXX.npz   the per-group surgery arrays every N steps
      eval_before.json          held-out reward per domain before RL
      summary.json              held-out before / after, timings
      eval.md                   the before / after table
      eval_results.json (.md)   what `mgs eval RUN` writes by default (then eval_results-2.json...)
      checkpoints/step_XXXXXX/  model/ (Hugging Face directory) + trainer_state.pt
      model/                    the final policy (Hugging Face directory; LoRA: the adapter)
      model_merged/             LoRA: the merged policy (logging.save_merged, or a built-in base)
      tensorboard/              event files (logging.tensorboard)
      wandb/                    what W&B writes locally (logging.wandb_project)
      report/                   what `mgs report RUN` writes by default

A comparison (``mgs compare --out DIR``) holds one run directory per variant and seed
(``DIR/<variant>-s<seed>``), ``compare.json`` and ``report/`` (:class:`CompareDir`).
Importing this module is light (no torch).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

_STEP = re.compile(r"^step_(\d{6,})$")
_SNAPSHOT = re.compile(r"^step_(\d+)\.npz$")
_NUMBERED_RESULTS = re.compile(r"^eval_results-(\d+)\.(json|md)$")  # later `mgs eval RUN`s


def step_name(step: int) -> str:
    return f"step_{step:06d}"


class RunDir:
    """One run directory: paths of every part of its layout (nothing is created here)."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    EVAL_BEFORE = "eval_before.json"
    EVAL_TABLE = "eval.md"
    EVAL_RESULTS = "eval_results.json"
    SURGERY = "surgery"
    CHECKPOINTS = "checkpoints"
    MODEL = "model"
    MODEL_MERGED = "model_merged"  # a LoRA run's merged policy, beside its adapter in model/
    ADAPTER_CONFIG = "adapter_config.json"  # what makes model/ a (peft) LoRA adapter
    TENSORBOARD = "tensorboard"
    REPORT = "report"
    TRAINER_STATE = "trainer_state.pt"  # inside a checkpoint, beside its model/
    WANDB = "wandb"  # what wandb.init(dir=RUN) creates (logging.wandb_project)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ files

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def eval_before(self) -> Path:
        return self.path / self.EVAL_BEFORE

    @property
    def eval_table(self) -> Path:
        return self.path / self.EVAL_TABLE

    @property
    def eval_results(self) -> Path:
        return self.path / self.EVAL_RESULTS

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def model_merged(self) -> Path:
        return self.path / self.MODEL_MERGED

    def has_adapter(self) -> bool:
        """``model/`` holds a LoRA adapter (``model.lora``), not a full model."""
        return (self.model / self.ADAPTER_CONFIG).is_file()

    def policy_dir(self) -> Path:
        """The Hugging Face directory of the trained policy: ``model/``, or for a LoRA run its
        merged policy ``model_merged/`` when saved (else ``model/``: the adapter)."""
        if self.has_adapter() and self.model_merged.is_dir():
            return self.model_merged
        return self.model

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def surgery(self) -> Path:
        return self.path / self.SURGERY

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    # ------------------------------------------------------------------ kinds of directory

    def is_trained(self) -> bool:
        """A finished ``mgs train`` directory with a saved policy: config.yaml beside model/."""
        return self.config.is_file() and self.model.is_dir()

    def has_run_files(self) -> bool:
        """Holds what ``mgs report`` reads: metrics.jsonl and/or summary.json."""
        return self.metrics.is_file() or self.summary.is_file()

    @classmethod
    def layout_names(cls) -> frozenset[str]:
        """Every name ``mgs train`` (and ``mgs eval`` / ``mgs report`` of the run) may put at the
        top of a run directory, including the leftovers of an interrupted write."""
        results_table = Path(cls.EVAL_RESULTS).with_suffix(".md").name
        metrics_tmp = f"{cls.METRICS}.tmp"  # truncate_metrics' temporary file
        files = (cls.CONFIG, cls.METRICS, cls.SUMMARY, cls.EVAL_BEFORE, cls.EVAL_TABLE)
        folders = (cls.SURGERY, cls.CHECKPOINTS, cls.MODEL, cls.MODEL_MERGED, cls.TENSORBOARD)
        return frozenset(
            (*files, cls.EVAL_RESULTS, results_table, metrics_tmp, *folders, cls.REPORT, cls.WANDB)
        )

    def entries(self) -> list[str]:
        """Names at the top of the directory, sorted (none when it does not exist)."""
        return sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []

    def foreign_entries(self) -> list[str]:
        """Entries that are not part of a run directory's layout (a user's own files)."""
        names = self.layout_names()
        return [n for n in self.entries() if n not in names and not _NUMBERED_RESULTS.match(n)]

    def free_eval_results(self) -> Path:
        """Where `mgs eval RUN` writes by default: ``eval_results.json``, or the first free
        ``eval_results-N.json`` (N = 2, 3, ...) when earlier results are there (their ``.md``
        table too), so that evaluating a run again never replaces what an earlier eval wrote."""
        candidate, n = self.eval_results, 1
        while candidate.exists() or candidate.with_suffix(".md").exists():
            n += 1
            candidate = self.path / f"{Path(self.EVAL_RESULTS).stem}-{n}.json"
        return candidate

    def is_train_run(self) -> bool:
        """Looks like a run directory of ``mgs train``: its config.yaml and nothing but names of
        the layout, so that clearing it (``--overwrite``) deletes nothing else."""
        return self.config.is_file() and not self.foreign_entries()

    # ------------------------------------------------------------------ surgery snapshots

    def surgery_snapshot(self, step: int) -> Path:
        return self.surgery / f"{step_name(step)}.npz"

    @staticmethod
    def snapshot_step(path: Path) -> int | None:
        match = _SNAPSHOT.match(Path(path).name)
        return int(match.group(1)) if match else None

    def surgery_snapshots(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every surgery snapshot, by step."""
        if not self.surgery.is_dir():
            return []
        found = []
        for p in self.surgery.glob("step_*.npz"):
            match = _SNAPSHOT.match(p.name)
            if match:
                found.append((int(match.group(1)), p))
        return sorted(found)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, step: int) -> Path:
        """The checkpoint written after ``step`` completed steps (it may not exist)."""
        return self.checkpoints / step_name(step)

    def checkpoint_tmp(self, step: int, nonce: int) -> Path:
        """Where a checkpoint is written before it is renamed into place."""
        return self.checkpoints / f".tmp-{step_name(step)}-{nonce}"

    def stale_checkpoint_tmps(self) -> list[Path]:
        return sorted(self.checkpoints.glob(".tmp-step_*")) if self.checkpoints.is_dir() else []

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoint directories that hold a trainer state, oldest first (temporary ones and
        ones without a state file are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for child in self.checkpoints.iterdir():
            match = _STEP.match(child.name)
            if match and self.checkpoint_state(child).is_file():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def checkpoint_dirs(self) -> list[tuple[int, Path]]:
        """Every ``checkpoints/step_XXXXXX`` directory, oldest first, complete or not (what a
        resume inspects; temporary ones are left out)."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for child in self.checkpoints.iterdir():
            match = _STEP.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
        return sorted(found)

    @classmethod
    def checkpoint_state(cls, checkpoint: Path) -> Path:
        return Path(checkpoint) / cls.TRAINER_STATE

    @classmethod
    def checkpoint_model(cls, checkpoint: Path) -> Path:
        return Path(checkpoint) / cls.MODEL

    @staticmethod
    def checkpoint_step(checkpoint: Path) -> int | None:
        match = _STEP.match(Path(checkpoint).name)
        return int(match.group(1)) if match else None

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> RunDir | None:
        """The run that ``path`` is a checkpoint of (``RUN`` for ``RUN/checkpoints/step_N``), or
        None when ``path`` is no checkpoint directory's path."""
        p = Path(path)
        if cls.checkpoint_step(p) is None or p.parent.name != cls.CHECKPOINTS:
            return None
        return cls(p.parent.parent)

    # ------------------------------------------------------------------ JSON files

    def write_json(self, path: Path, data: Any) -> None:
        """``data`` as indented JSON (NaN / inf as strings, paths as text)."""
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CompareDir:
    """The output directory of ``mgs compare``: one run directory per variant and seed."""

    INDEX = "compare.json"
    REPORT = "report"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def run(self, label: str, seed: int) -> RunDir:
        return RunDir(self.path / f"{label}-s{seed}")

    @property
    def index(self) -> Path:
        return self.path / self.INDEX

    @property
    def report(self) -> Path:
        return self.path / self.REPORT
