"""Run-directory writers: metrics as JSONL (one line per step), surgery arrays as .npz, TB / W&B.

The JSONL stream holds scalars only (per-domain rewards, loss terms, surgery summaries, phase
timings); the full per-group surgery arrays go to ``surgery/step_XXXXXX.npz`` every N steps, so a
run with hundreds of groups stays readable and plottable (``mgs report``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mgs.errors import ConfigError
from mgs.run_dir import RunDir


class MetricsWriter:
    """Append-only metrics of one run (rank 0 only)."""

    def __init__(
        self,
        run: RunDir,
        *,
        tensorboard: bool = False,
        enabled: bool = True,
        wandb_project: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.run = run
        self.path = run.metrics
        self.enabled = enabled  # False on ranks other than 0: every call is a no-op
        self._file = self.path.open("a", encoding="utf-8") if enabled else None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "logging.tensorboard needs the tensorboard package: pip install 'mgs[tensorboard]'"
                ) from None
            self._tb = SummaryWriter(str(run.tensorboard))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    "logging.wandb_project needs the wandb package: pip install 'mgs[wandb]'"
                ) from None
            self._wandb = wandb.init(project=wandb_project, dir=str(run.path), config=config or {})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self._file is None:
            return
        record = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record, sort_keys=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def save_surgery(self, step: int, arrays: dict[str, np.ndarray]) -> Path | None:
        """The per-group surgery arrays of ``step`` as ``surgery/step_XXXXXX.npz``."""
        if self._file is None:
            return None
        path = self.run.surgery_snapshot(step)
        path.parent.mkdir(exist_ok=True)
        np.savez_compressed(path, **arrays)
        return path

    def close(self) -> None:
        if self._file is None:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN/inf become strings (JSON has no NaN) so nothing is lost silently."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def truncate_metrics(run: RunDir, next_step: int) -> int:
    """Drop the lines of steps >= ``next_step`` (logged after the checkpoint a run resumes from).

    Returns how many lines were dropped. Written to a temporary file, then renamed.
    """
    path = run.metrics
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] < next_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by the kill: dropped
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    tmp.replace(path)
    return len(lines) - len(kept)
