"""Reading run directories of ``mgs train`` into plain data (no plotting here).

A run directory holds ``config.yaml`` (the resolved TrainConfig), ``metrics.jsonl`` (one JSON line
per step), ``summary.json`` (held-out rewards before / after RL), ``surgery/step_XXXXXX.npz`` (the
per-group surgery arrays every N steps) and ``model/``. Only ``metrics.jsonl`` or ``summary.json``
is required; everything missing is recorded in :attr:`Run.notes` and the report skips what needs it.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mgs.dataclass_config import yaml_error_line
from mgs.errors import MgsError
from mgs.run_dir import RunDir
from mgs.strategy import strategy_key


class RunDirError(MgsError, ValueError):
    """A path given to ``mgs report`` is not a readable run directory."""


@dataclass
class Metrics:
    """The metrics stream of a run as aligned columns.

    ``steps`` is sorted and unique (when a step was logged twice, the last record wins; steps
    that start over are noted: two runs wrote the file); ``columns[key][i]`` is the value at ``steps[i]``,
    NaN where the step did not log ``key`` (or logged ``"nan"``, ``null`` or a non-number).
    """

    steps: np.ndarray  # [S] int
    columns: dict[str, np.ndarray]  # key -> [S] float

    def get(self, key: str) -> np.ndarray:
        """The column of ``key`` (all NaN when the run never logged it)."""
        return self.columns.get(key, np.full(len(self.steps), np.nan))

    def has(self, key: str) -> bool:
        return key in self.columns and bool(np.isfinite(self.columns[key]).any())

    def keys_matching(self, pattern: str) -> list[str]:
        """Keys (in first-logged order) matching a regular expression with one group."""
        return [k for k in self.columns if re.fullmatch(pattern, k)]


@dataclass
class Run:
    """One run directory, loaded: what the report needs, plus notes on what was missing."""

    path: Path
    label: str
    strategy: str  # grouping key: "mgs", or "mgs (pcgrad, layer)" when the config overrides it
    seed: int | None
    granularity: str | None  # resolved surgery granularity, None when unknown
    metrics: Metrics
    summary: dict[str, Any] | None
    snapshots: list[Path] = field(default_factory=list)  # surgery/step_*.npz, by step
    notes: list[str] = field(default_factory=list)

    def domains(self) -> list[str]:
        """Domains with a training reward curve, in the order the trainer logged them."""
        out = []
        for key in self.metrics.keys_matching(r"reward/(.+)/mean"):
            out.append(key[len("reward/") : -len("/mean")])
        return out

    def pairs(self) -> list[str]:
        """Domain pairs ``a__b`` with a global gradient cosine in the metrics."""
        return [k[len("surgery/cos/") :] for k in self.metrics.keys_matching(r"surgery/cos/.+")]

    def heldout(self, when: str) -> dict[str, dict[str, float]]:
        """``summary.json``'s ``heldout_before`` / ``heldout_after`` (empty when absent)."""
        value = (self.summary or {}).get(f"heldout_{when}") or {}
        return value if isinstance(value, dict) else {}


@dataclass
class Snapshot:
    """One ``surgery/step_XXXXXX.npz``: the per-group arrays of one step."""

    step: int
    domains: list[str]  # [K]
    group_names: list[str]  # [M]
    cosine: np.ndarray  # [M, K, K]


def to_float(value: Any) -> float:
    """A metrics value as a float: numbers as they are, ``"nan"`` / ``"inf"`` strings parsed,
    anything else (``null``, text, lists) NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def parse_metrics(lines: list[str], source: str = RunDir.METRICS) -> tuple[Metrics, list[str]]:
    """Parse JSONL lines into aligned columns; returns ``(metrics, notes)``.

    A line that is not JSON is an error (naming the line), except the last one, which a run killed
    mid-write can leave truncated: it is skipped with a note.
    """
    notes: list[str] = []
    by_step: dict[int, dict[str, Any]] = {}
    first, last, restarted = 0, -1, False
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    for pos, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if pos == len(numbered) - 1:
                notes.append(f"{source}: skipped a truncated last line ({lineno})")
                continue
            raise RunDirError(
                f"{source}, line {lineno} is not JSON ({exc.msg}); every line must be one JSON "
                "object as `mgs train` writes it; delete or fix that line"
            ) from None
        if not isinstance(record, dict) or "step" not in record:
            raise RunDirError(
                f'{source}, line {lineno} has no "step"; every line must be a JSON object such as '
                '{"step": 0, "reward/math/mean": 0.5}'
            )
        step = int(record["step"])
        first = step if not by_step else first
        if step <= first < last and not restarted:
            # The steps start over: a second run appended to the file (a resumed run drops the
            # lines of the steps it runs again, so it never does this).
            restarted = True
            notes.append(
                f"warning: {source}, line {lineno} goes back to step {step} after step {last}: "
                "two runs wrote into this directory, so its curves mix them (the last record of "
                "each step is plotted); train each run into its own directory"
            )
        last = step
        by_step[step] = record  # the last record of a step wins
    steps = np.array(sorted(by_step), dtype=np.int64)
    columns: dict[str, np.ndarray] = {}
    for i, step in enumerate(steps):
        for key, value in by_step[int(step)].items():
            if key == "step":
                continue
            if key not in columns:
                columns[key] = np.full(len(steps), np.nan)
            columns[key][i] = to_float(value)
    return Metrics(steps, columns), notes


def load_snapshot(path: Path) -> Snapshot:
    """Read one surgery npz (``domains``, ``group_names``, ``cosine [M, K, K]``)."""
    step = RunDir.snapshot_step(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            domains = [str(d) for d in data["domains"]]
            names = [str(g) for g in data["group_names"]]
            cosine = np.asarray(data["cosine"], dtype=np.float64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise RunDirError(f"{path} is not a readable surgery snapshot: {exc}") from None
    if cosine.shape != (len(names), len(domains), len(domains)):
        raise RunDirError(
            f"{path}: cosine has shape {cosine.shape}, expected [groups, domains, domains] = "
            f"{[len(names), len(domains), len(domains)]}"
        )
    return Snapshot(-1 if step is None else step, domains, names, cosine)


def _strategy_of(config: dict[str, Any], summary: dict[str, Any] | None) -> tuple[str, str | None]:
    """``(grouping key, resolved granularity)`` from config.yaml (or summary.json)."""
    strategy = config.get("strategy")
    strategy = dict(strategy) if isinstance(strategy, dict) else {}
    strategy.setdefault("name", (summary or {}).get("strategy"))
    return strategy_key(strategy)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc.msg}); re-run or delete it") from None
    return data if isinstance(data, dict) else None


def _not_a_run_dir(path: Path) -> RunDirError:
    if not path.exists():
        return RunDirError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        return RunDirError(
            f"{str(path)!r} is a file; pass the run directory `mgs train` wrote "
            f"(the folder holding {RunDir.METRICS})"
        )
    children = sorted(p.name for p in path.iterdir() if RunDir(p).metrics.is_file())
    hint = (
        f"; it holds {len(children)} run directories ({', '.join(children[:4])}"
        f"{', ...' if len(children) > 4 else ''}): pass them, e.g. `mgs report {path}/*`"
        if children
        else ""
    )
    found = sorted(p.name for p in path.iterdir())[:8]
    return RunDirError(
        f"{str(path)!r} is not a run directory of `mgs train`: expected {RunDir.METRICS} and/or "
        f"{RunDir.SUMMARY} (with {RunDir.CONFIG}, {RunDir.SURGERY}/step_*.npz), found "
        f"{', '.join(found) if found else 'nothing'}{hint}"
    )


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Load one run directory; raises :class:`RunDirError` when it is not one."""
    path = Path(path)
    run = RunDir(path)
    metrics_path, summary_path = run.metrics, run.summary
    if not path.is_dir() or not run.has_run_files():
        raise _not_a_run_dir(path)
    notes: list[str] = []
    if metrics_path.is_file():
        metrics, more = parse_metrics(
            metrics_path.read_text(encoding="utf-8").splitlines(), str(metrics_path)
        )
        notes += more
    else:
        metrics = Metrics(np.zeros(0, dtype=np.int64), {})
        notes.append(f"no {RunDir.METRICS}: no training curves")
    summary = _read_json(summary_path)
    if summary is None:
        notes.append(f"no {RunDir.SUMMARY} (run unfinished?): no held-out results")
    config: dict[str, Any] = {}
    config_path = run.config
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunDirError(
                f"{config_path} is not valid YAML ({yaml_error_line(exc)}); fix that line"
            ) from None
        config = loaded if isinstance(loaded, dict) else {}
    else:
        notes.append(f"no {RunDir.CONFIG}: strategy taken from {RunDir.SUMMARY}, seed unknown")
    strategy, granularity = _strategy_of(config, summary)
    seed = config.get("seed")
    snapshots = [p for _, p in run.surgery_snapshots()]
    return Run(
        path=path,
        label=label or path.name,
        strategy=strategy,
        seed=int(seed) if isinstance(seed, int) else None,
        granularity=granularity,
        metrics=metrics,
        summary=summary,
        snapshots=snapshots,
        notes=notes,
    )


def default_labels(paths: list[Path]) -> list[str]:
    """Directory names, made unique with their parents when two runs share a name."""
    names = [p.name or str(p) for p in paths]
    return [
        "/".join(p.resolve().parts[-2:]) if names.count(name) > 1 else name
        for p, name in zip(paths, names)
    ]


def load_runs(paths: list[str | Path], labels: list[str] | None = None) -> list[Run]:
    """Load several run directories (labels default to their directory names)."""
    if not paths:
        raise RunDirError("no run directory given; pass at least one, e.g. `mgs report runs/a`")
    dirs = [Path(p) for p in paths]
    if labels is not None and len(labels) != len(dirs):
        raise RunDirError(
            f"{len(labels)} labels for {len(dirs)} run directories; give one label per run, "
            "in the same order (e.g. --labels mixed,mgs)"
        )
    names = list(labels) if labels is not None else default_labels(dirs)
    if len(set(names)) != len(names):
        raise RunDirError(f"labels must be distinct, got {', '.join(names)}")
    return [load_run(p, name) for p, name in zip(dirs, names)]
