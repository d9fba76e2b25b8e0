"""Benchmark suites: several benchmarks run with one suite's sampling conventions, one table.

``mgs eval MODEL --suite math`` runs the math evaluation of simpleRL-reason (the seed's): AIME24,
AIME25, AMC23, MATH-500, Minerva Math, OlympiadBench and GSM8K, sampled at temperature 1.0 with
top-p 0.95 and up to 16,000 new tokens (simpleRL-reason's ``eval_math_nodes.sh``). The small
competition sets are averaged over 32 samples per problem (avg@32; simpleRL-reason reports AIME24
that way, and AIME25 / AMC23 are as small); the others take one sample. Each set is read from a
local file when ``--data-dir`` holds one (``DIR/aime24.jsonl``, or Qwen2.5-Math's
``DIR/aime24/test.jsonl`` layout), else from its hub copy; a set that cannot be read is skipped
and named under the table. The model is loaded once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError, DataError, MgsError, unknown_name
from mgs.eval.benchmarks import BenchmarkSpec
from mgs.eval.config import EvalConfig
from mgs.eval.result import EvalResult

_EXTENSIONS = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class SuiteEntry:
    kind: str  # a key of mgs.eval.benchmarks.BENCHMARKS
    samples: int  # completions per problem (k of avg@k; 1: one sample)


@dataclass(frozen=True)
class Suite:
    about: str
    entries: tuple[SuiteEntry, ...]
    temperature: float
    top_p: float
    max_new_tokens: int


SUITES: dict[str, Suite] = {
    "math": Suite(
        "simpleRL-reason's math evaluation",
        (
            SuiteEntry("aime24", 32),
            SuiteEntry("aime25", 32),
            SuiteEntry("amc23", 32),
            SuiteEntry("math500", 1),
            SuiteEntry("minerva_math", 1),
            SuiteEntry("olympiadbench", 1),
            SuiteEntry("gsm8k", 1),
        ),
        temperature=1.0,
        top_p=0.95,
        max_new_tokens=16000,
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise unknown_name("suite", name, list(SUITES))
    return SUITES[name]


def suite_config(suite: Suite, cfg: EvalConfig, explicit: dict[str, Any]) -> EvalConfig:
    """``cfg`` with the suite's sampling conventions where no flag set them (``explicit``: the
    flags given, name -> value)."""
    updates = {
        key: getattr(suite, key)
        for key in ("temperature", "top_p", "max_new_tokens")
        if explicit.get(key) is None
    }
    return dataclasses.replace(cfg, **updates)


def local_file(data_dir: str | None, kind: str) -> str | None:
    """``DIR/<kind>.<ext>`` or ``DIR/<kind>/test.<ext>`` when it exists."""
    if not data_dir:
        return None
    root = Path(data_dir)
    for candidate in [root / f"{kind}{e}" for e in _EXTENSIONS] + [
        root / kind / f"test{e}" for e in _EXTENSIONS
    ]:
        if candidate.is_file():
            return str(candidate)
    return None


def resolve(suite: Suite, data_dir: str | None, cfg: EvalConfig) -> tuple[list, list]:
    """``(runnable, skipped)``: ``(spec, samples)`` of each set whose rows can be read, and
    ``(kind, reason)`` of the others (read now, before any model is loaded)."""
    from mgs.data.sources import SourceConfig, load_source

    if data_dir and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir!r} is not a directory; pass the folder of the files")
    runnable, skipped = [], []
    for entry in suite.entries:
        spec = BenchmarkSpec(entry.kind, local_file(data_dir, entry.kind))
        source = SourceConfig(
            domain=spec.kind,
            path=str(spec.source),
            preset=spec.info.preset,
            format="hf" if spec.from_hub else "auto",
            split=spec.info.split,
            limit=1,
        )
        try:
            load_source(source)
        except MgsError as exc:
            skipped.append((entry.kind, str(exc).split(". Without hub access")[0]))
            continue
        if entry.samples == 1 or cfg.greedy:
            samples = 1
        else:
            samples = cfg.samples if cfg.samples > 1 else entry.samples
        runnable.append((spec, samples))
    return runnable, skipped


def run_suite(model: Any, suite_name: str, cfg: EvalConfig, data_dir: str | None) -> tuple:
    """Evaluate ``model`` (a path or a ``(model, tokenizer)`` pair) on a suite.

    Returns ``(EvalResult, skipped)``; ``cfg`` already holds the suite's conventions
    (:func:`suite_config`). ``cfg.samples`` > 1 replaces k of the avg@k sets."""
    from mgs.eval.runner import evaluate_model, load_model

    started = time.perf_counter()
    suite = get_suite(suite_name)
    runnable, skipped = resolve(suite, data_dir, cfg)
    if not runnable:
        reasons = "; ".join(f"{k}: {r}" for k, r in skipped)
        raise DataError(
            f"no benchmark of suite {suite_name!r} could be read ({reasons}); put local copies "
            "in a folder (e.g. aime24.jsonl, or Qwen2.5-Math's aime24/test.jsonl) and pass "
            "--data-dir DIR"
        )
    pair = model if isinstance(model, tuple) else load_model(model, cfg)
    results = {}
    for spec, samples in runnable:
        one = dataclasses.replace(cfg, samples=samples, pass_k=None)
        results.update(evaluate_model(pair, [spec], one).benchmarks)
    name = type(pair[0]).__name__ if isinstance(model, tuple) else str(model)
    return EvalResult(name, cfg, results, time.perf_counter() - started), skipped


def suite_table(suite_name: str, result: EvalResult, skipped: list[tuple[str, str]]) -> str:
    """One row per benchmark (its primary metric) and their unweighted average."""
    suite = get_suite(suite_name)
    cfg = result.config
    decoding = (
        "greedy"
        if cfg.greedy
        else f"temperature {cfg.temperature:g}, top-p {cfg.top_p:g}, {cfg.max_new_tokens} new tokens"
    )
    lines = [
        f"{suite.about} ({suite_name} suite) of `{result.model}` ({decoding})",
        "",
        "| benchmark | problems | samples | metric | value |",
        "|---|---:|---:|---|---:|",
    ]
    for name, b in result.benchmarks.items():
        lines.append(f"| {name} | {b.num_prompts} | {b.samples} | {b.primary} | {b.value:.3f} |")
    values = [b.value for b in result.benchmarks.values()]
    lines.append(f"| **average** | | | | **{sum(values) / len(values):.3f}** |")
    if skipped:
        lines += ["", *[f"- skipped {kind}: {reason}" for kind, reason in skipped]]
    return "\n".join(lines)


def check_suite_args(suite: str | None, benches: list[str]) -> None:
    if suite and benches:
        raise ConfigError("pass either --suite NAME or --bench ..., not both")
