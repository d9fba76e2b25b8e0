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
- :mod:`~mgs.data.generators`: the registry of generated domains (``synthetic: NAME`` sources),
  their fixed train / held-out split and demonstrations (the built-in demo's are in
  :mod:`mgs.tiny.domains`);
- :mod:`~mgs.data.command`: ``mgs data``, a preview of a configured mixture.
"""

from mgs.data.example import Example, Message
from mgs.data.generators import (
    GeneratedTask,
    demonstrations,
    generator_names,
    register_generator,
)
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
from mgs.data.presets import PRESETS
from mgs.data.sources import SourceConfig, load_source
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
    "TEMPLATES",
    "ZERO_THINK_PREAMBLE",
    "DataConfig",
    "DataReport",
    "Demonstration",
    "DomainMixture",
    "Example",
    "GeneratedTask",
    "Message",
    "MixtureBatch",
    "MixtureConfig",
    "PhaseConfig",
    "SourceConfig",
    "TemplateConfig",
    "apportion",
    "build_mixture",
    "demonstrations",
    "generator_names",
    "load_demonstrations",
    "load_domains",
    "load_eval_prompts",
    "load_source",
    "register_generator",
    "render_examples",
    "render_prompt",
]
