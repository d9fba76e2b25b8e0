"""Evaluation on benchmarks: ``mgs eval`` and :func:`evaluate_model` (see ``docs/eval.md``).

- :mod:`~mgs.eval.metrics`: pure metric functions (pass@k, avg@k, IFEval accuracies, win rate);
- :mod:`~mgs.eval.benchmarks`: benchmark kinds by name (MATH-500, IFEval, AlpacaEval, chat, the
  tiny domains) and :class:`BenchmarkSpec`;
- :mod:`~mgs.eval.config`: :class:`EvalConfig`, :class:`JudgeConfig`, a run's defaults;
- :mod:`~mgs.eval.scoring`: completions -> per-sample scores -> aggregate metrics;
- :mod:`~mgs.eval.judge`: the OpenAI-compatible pairwise judge;
- :mod:`~mgs.eval.runner`: :func:`evaluate_model` (generation with the training backend);
- :mod:`~mgs.eval.result`: :class:`EvalResult`, its JSON and markdown table;
- :mod:`~mgs.eval.command`: the ``mgs eval`` command line.

Importing this package is light: torch and transformers load when a model is evaluated.
"""

from mgs.eval.benchmarks import BENCHMARKS, BenchmarkSpec
from mgs.eval.config import EvalConfig, JudgeConfig, config_from_run, default_config
from mgs.eval.result import BenchmarkResult, EvalResult
from mgs.eval.runner import evaluate_model

__all__ = [
    "BENCHMARKS",
    "BenchmarkResult",
    "BenchmarkSpec",
    "EvalConfig",
    "EvalResult",
    "JudgeConfig",
    "config_from_run",
    "default_config",
    "evaluate_model",
]
