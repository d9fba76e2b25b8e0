"""What an evaluation returns and writes: :class:`EvalResult` -> JSON + a markdown summary table.

JSON layout (``EvalResult.to_dict``)::

    {"model": "...", "mgs_version": "...", "seconds": 12.3, "config": {...EvalConfig...},
     "benchmarks": {"math500": {"kind": "math500", "path": "...", "primary": "greedy_pass@1",
                                "num_prompts": 3, "samples": 1, "skipped": [], "truncated": [],
                                "metrics": {"greedy_pass@1": 0.0, ...},
                                "records": [{"id", "sample", "question", "completion",
                                             "response", "finish_reason", "completion_tokens",
                                             "scores": {...}}, ...]}}}

Metrics that cannot be computed (a win rate with no usable verdict) are ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgs.dataclass_config import from_dict, to_dict
from mgs.errors import DataError
from mgs.eval.config import EvalConfig


@dataclass
class BenchmarkResult:
    """One benchmark's aggregate metrics and per-sample records."""

    name: str  # the label (key in EvalResult.benchmarks)
    kind: str  # a key of mgs.eval.benchmarks.BENCHMARKS
    path: str | None
    primary: str  # the headline metric, a key of metrics
    metrics: dict[str, float]
    num_prompts: int
    samples: int  # completions per prompt
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # ids left out: prompt too long
    truncated: list[str] = field(default_factory=list)  # ids whose question was cut to fit

    @property
    def value(self) -> float:
        """The primary metric's value."""
        return self.metrics[self.primary]


@dataclass
class EvalResult:
    """Everything one evaluation produced, keyed by benchmark label."""

    model: str
    config: EvalConfig
    benchmarks: dict[str, BenchmarkResult]
    seconds: float = 0.0

    def headline(self) -> dict[str, float]:
        """``{benchmark label: primary metric value}``: one number per benchmark."""
        return {name: b.value for name, b in self.benchmarks.items()}

    def to_dict(self) -> dict[str, Any]:
        from mgs import __version__
        from mgs.eval.judge import public_url

        config = to_dict(self.config)
        if config.get("judge"):  # never save the judge URL's user:password@
            config["judge"]["url"] = public_url(config["judge"]["url"])
        return {
            "model": self.model,
            "mgs_version": __version__,
            "seconds": self.seconds,
            "config": config,
            "benchmarks": {
                name: {
                    "kind": b.kind,
                    "path": b.path,
                    "primary": b.primary,
                    "num_prompts": b.num_prompts,
                    "samples": b.samples,
                    "skipped": b.skipped,
                    "truncated": b.truncated,
                    "metrics": {k: _finite(v) for k, v in b.metrics.items()},
                    "records": b.records,
                }
                for name, b in self.benchmarks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        benchmarks = {
            name: BenchmarkResult(
                name=name,
                kind=b["kind"],
                path=b.get("path"),
                primary=b["primary"],
                metrics={k: math.nan if v is None else float(v) for k, v in b["metrics"].items()},
                num_prompts=int(b["num_prompts"]),
                samples=int(b["samples"]),
                records=list(b.get("records", [])),
                skipped=list(b.get("skipped", [])),
                truncated=list(b.get("truncated", [])),
            )
            for name, b in data["benchmarks"].items()
        }
        return cls(
            model=str(data["model"]),
            config=from_dict(EvalConfig, data.get("config") or {}, "config"),
            benchmarks=benchmarks,
            seconds=float(data.get("seconds", 0.0)),
        )

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        """Read a results JSON written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"evaluation results {str(p)!r} do not exist; run `mgs eval` first")
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{p} is not an `mgs eval` results file ({exc})") from None

    def markdown(self) -> str:
        """A summary table: one row per metric, the primary metric of each benchmark first."""
        decoding = (
            "greedy"
            if self.config.greedy
            else f"{self.config.samples} samples at temperature {self.config.temperature:g}"
        )
        lines = [
            f"Evaluation of `{self.model}` ({decoding})",
            "",
            "| benchmark | prompts x samples | metric | value |",
            "|---|---|---|---:|",
        ]
        notes = []
        for name, b in self.benchmarks.items():
            order = [b.primary, *(k for k in b.metrics if k != b.primary)]
            for i, key in enumerate(order):
                head = (name, f"{b.num_prompts} x {b.samples}") if i == 0 else ("", "")
                label = f"**{key}**" if key == b.primary else key
                lines.append(f"| {head[0]} | {head[1]} | {label} | {_fmt(b.metrics[key])} |")
            if b.skipped:
                notes.append(
                    f"- {name}: {len(b.skipped)} prompt(s) skipped for their length, e.g. "
                    f"{b.skipped[0]}"
                )
            if b.truncated:
                notes.append(f"- {name}: {len(b.truncated)} prompt(s) truncated to fit")
        return "\n".join(lines + (["", *notes] if notes else []))

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the JSON to ``path`` and the markdown table beside it (same name, ``.md``)."""
        json_path = Path(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        md_path = json_path.with_suffix(".md")
        md_path.write_text(self.markdown() + "\n", encoding="utf-8")
        return json_path, md_path


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"
