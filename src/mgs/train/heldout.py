"""Held-out evaluation prompts for the domains of a run.

Built-in (synthetic) domains: prompts from the same generator with another seed, minus every
question that also appears in the training pool, so "held-out" is literal. File domains: the
sources listed in ``eval.sources`` (e.g. MATH-500 for a math domain); none by default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mgs.data.example import Example
from mgs.data.pipeline import DataConfig, load_domains
from mgs.data.sources import SourceConfig

HELDOUT_SEED_OFFSET = 1_000_003


def heldout_examples(
    data: DataConfig,
    tokenizer: Any,
    per_domain: int,
    extra_sources: list[SourceConfig] | None = None,
) -> list[Example]:
    """Up to ``per_domain`` rendered held-out prompts per domain, grouped by domain."""
    if per_domain <= 0:
        return []
    training, _ = load_domains(data, tokenizer)
    seen = {(d, ex.question) for d, pool in training.items() for ex in pool}
    sources = [
        dataclasses.replace(
            s, seed=s.seed + HELDOUT_SEED_OFFSET, size=4 * per_domain, name=f"{s.label}-heldout"
        )
        for s in data.sources
        if s.synthetic
    ]
    sources += list(extra_sources or [])
    if not sources:
        return []
    held, _ = load_domains(dataclasses.replace(data, sources=sources), tokenizer)
    out: list[Example] = []
    for domain, pool in held.items():
        fresh = [ex for ex in pool if (domain, ex.question) not in seen]
        unique: dict[str, Example] = {}
        for ex in fresh:
            unique.setdefault(ex.question, ex)
        out.extend(list(unique.values())[:per_domain])
    return out
