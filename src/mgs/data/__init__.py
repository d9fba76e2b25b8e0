"""Prompts of several domains, mixed into training batches.

- :mod:`~mgs.data.example`: :class:`Example`, one prompt of one domain with its reward reference;
- :mod:`~mgs.data.readers` / :mod:`~mgs.data.sources`: files (jsonl, json, parquet, Hugging Face
  datasets) and built-in tiny generators -> examples, with column presets for the common files;
- :mod:`~mgs.data.templates`: chat messages -> prompt text (zero-think, chat template, plain, custom);
- :mod:`~mgs.data.mixture`: proportions and sequential phases -> the deterministic, resumable batch
  of every optimizer step;
- :mod:`~mgs.data.pipeline`: :class:`DataConfig`, :func:`build_mixture` (RL prompts),
  :func:`load_demonstrations` (warm-start targets) and :func:`load_eval_prompts` (held-out
  prompts): what the trainer calls;
- :mod:`~mgs.data.synthetic`: the tiny math / instruction-following / chat domains, with their
  demonstrations and preference pairs;
- :mod:`~mgs.data.command`: ``mgs data``, a preview of a configured mixture.
"""

from mgs.data.example import Example, Message
from mgs.data.mixture import DomainMixture, MixtureBatch, MixtureConfig, PhaseConfig, apportion
from mgs.data.pipeline import (
    DataConfig,
    DataReport,
    Demonstration,
    build_mixture,
    load_demonstrations,
    load_domains,
    load_eval_prompts,
)
from mgs.data.sources import PRESETS, SourceConfig, load_source
from mgs.data.synthetic import SYNTHETIC_DOMAINS, TinyTask, demonstrations, preference_pairs
from mgs.data.templates import (
    SHORT_ZERO_THINK_PREAMBLE,
    TEMPLATES,
    ZERO_THINK_PREAMBLE,
    TemplateConfig,
    render_examples,
    render_prompt,
)

__all__ = [
    "PRESETS",
    "SHORT_ZERO_THINK_PREAMBLE",
    "SYNTHETIC_DOMAINS",
    "TEMPLATES",
    "ZERO_THINK_PREAMBLE",
    "DataConfig",
    "DataReport",
    "Demonstration",
    "DomainMixture",
    "Example",
    "Message",
    "MixtureBatch",
    "MixtureConfig",
    "PhaseConfig",
    "SourceConfig",
    "TemplateConfig",
    "TinyTask",
    "apportion",
    "build_mixture",
    "demonstrations",
    "load_demonstrations",
    "load_domains",
    "load_eval_prompts",
    "load_source",
    "preference_pairs",
    "render_examples",
    "render_prompt",
]
