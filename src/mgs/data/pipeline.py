"""The data section of a run: sources -> rendered, length-checked prompts -> a domain mixture.

:func:`build_mixture` is what the trainer (and ``mgs data``) calls for RL prompts;
:func:`load_demonstrations` and :func:`load_eval_prompts` give the built-in domains' warm-start
demonstrations and held-out prompts, rendered the same way. Prompts longer than
``max_prompt_tokens`` are dropped (as verl does) or truncated at the end of the question, by
config, but never silently: the returned :class:`DataReport` counts them per source, and a domain
left with no prompt is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from mgs.data.example import Example
from mgs.data.generators import careless_draws
from mgs.data.mixture import DomainMixture, MixtureConfig
from mgs.data.sources import SourceConfig, check_sources, load_source
from mgs.data.templates import TemplateConfig, render_examples
from mgs.dataclass_config import option
from mgs.errors import ConfigError, DataError


@dataclass
class DataConfig:
    """Where the prompts come from, how they are rendered, and how domains are mixed.

    Defaults are the paper's (zero-think template with its full preamble, prompts up to 896
    tokens); the sources have no default: a run names its own.
    """

    sources: list[SourceConfig] = option(
        default_factory=list,
        help="Prompt sources, each {domain, path | synthetic, ...}; see docs/data.md.",
    )
    mixture: MixtureConfig = option(default_factory=MixtureConfig, help="Domain mixture.")
    template: TemplateConfig = option(default_factory=TemplateConfig, help="Prompt template.")
    max_prompt_tokens: int | None = option(
        896, help="Longest rendered prompt, in the policy's tokens; null: no limit."
    )
    overlong: Literal["filter", "truncate"] = option(
        "filter",
        help="A prompt over max_prompt_tokens: filter (drop it) or truncate (cut the end of its "
        "question, keeping the template and the source's suffix); either way it is counted.",
    )

    def __post_init__(self) -> None:
        if self.max_prompt_tokens is not None and self.max_prompt_tokens <= 0:
            raise ConfigError(
                f"data.max_prompt_tokens must be positive or null, got {self.max_prompt_tokens}"
            )
        if self.overlong not in ("filter", "truncate"):
            raise ConfigError(f"data.overlong must be filter or truncate, got {self.overlong!r}")


@dataclass
class SourceReport:
    label: str
    domain: str
    rows: int  # rows read from the source
    too_long: list[str] = field(default_factory=list)  # uids dropped for their length
    truncated: list[str] = field(default_factory=list)  # uids kept with a shortened question

    @property
    def kept(self) -> int:
        return self.rows - len(self.too_long)


@dataclass
class DataReport:
    """What loading did to each source: rows read, prompts dropped or truncated for length."""

    sources: list[SourceReport]
    max_prompt_tokens: int | None

    @property
    def dropped(self) -> int:
        return sum(len(s.too_long) for s in self.sources)

    @property
    def truncated(self) -> int:
        return sum(len(s.truncated) for s in self.sources)

    def lines(self) -> list[str]:
        out = []
        for s in self.sources:
            line = f"{s.label} -> {s.domain}: {s.kept} prompts"
            notes = []
            if s.too_long:
                notes.append(
                    f"{len(s.too_long)} of {s.rows} dropped: longer than "
                    f"{self.max_prompt_tokens} tokens, e.g. {s.too_long[0]}"
                )
            if s.truncated:
                notes.append(
                    f"{len(s.truncated)} of {s.rows} truncated to {self.max_prompt_tokens} "
                    f"tokens, e.g. {s.truncated[0]}"
                )
            out.append(line + (f" ({'; '.join(notes)})" if notes else ""))
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {
                "source": s.label,
                "domain": s.domain,
                "rows": s.rows,
                "kept": s.kept,
                "dropped": len(s.too_long),
                "truncated": len(s.truncated),
            }
            for s in self.sources
        ]


def load_domains(cfg: DataConfig, tokenizer: Any) -> tuple[dict[str, list[Example]], DataReport]:
    """Examples per domain with their prompts rendered, and the report of what the limit did."""
    if tokenizer is None and cfg.max_prompt_tokens is not None:
        raise ConfigError(
            "data.max_prompt_tokens needs the policy's tokenizer to count tokens; "
            "pass one, or set max_prompt_tokens: null"
        )
    check_sources(cfg.sources)
    domains: dict[str, list[Example]] = {}
    reports = []
    for source in cfg.sources:  # sources of one domain concatenate, in config order
        examples = load_source(source)
        out = render_examples(
            examples, cfg.template, tokenizer, cfg.max_prompt_tokens, cfg.overlong
        )
        domains.setdefault(source.domain, []).extend(out.kept)
        reports.append(
            SourceReport(
                source.label,
                source.domain,
                len(examples),
                [ex.uid for ex in out.dropped],
                [ex.uid for ex in out.truncated],
            )
        )
    report = DataReport(reports, cfg.max_prompt_tokens)
    for domain, pool in domains.items():
        if not pool:
            raise DataError(
                f"every prompt of domain {domain!r} is longer than data.max_prompt_tokens="
                f"{cfg.max_prompt_tokens} tokens; raise it, set data.overlong: truncate, or "
                "shorten the prompts"
            )
    return domains, report


def build_mixture(cfg: DataConfig, tokenizer: Any) -> tuple[DomainMixture, DataReport]:
    """The trainer's entry point: load, render, length-check, then mix."""
    domains, report = load_domains(cfg, tokenizer)
    return DomainMixture(domains, cfg.mixture), report


@dataclass(frozen=True)
class Demonstration:
    """A warm-start (SFT) target: the rendered prompt and the completion the policy should write."""

    example: Example  # domain, rendered prompt, reference, metadata
    completion: str  # "<think>...</think> <response>...</response>", with a leading space
    # when the prompt ends without whitespace (after "Assistant:")
    careless: bool = False  # the careless annotator's version (see load_demonstrations)

    @property
    def prompt(self) -> str:
        return self.example.prompt

    @property
    def text(self) -> str:
        return self.example.prompt + self.completion


def _synthetic_config(
    cfg: DataConfig, split: str, size: int | None, limit: int | None
) -> DataConfig | None:
    """``cfg`` restricted to its synthetic sources, reading ``split`` (None if it has none)."""
    sources = [
        dataclasses.replace(
            s,
            split=split,
            size=size,
            limit=limit,
            metadata=None,
            name=s.label if split == "train" else f"{s.label}-{split}",
        )
        for s in cfg.sources
        if s.synthetic
    ]
    return dataclasses.replace(cfg, sources=sources) if sources else None


def load_demonstrations(
    cfg: DataConfig, tokenizer: Any, size: int | None = None, careless: float = 0.0
) -> dict[str, list[Demonstration]]:
    """Warm-start demonstrations of every built-in (synthetic) source, per domain.

    They come from the sources' train split (never from the held-out prompts), rendered with
    ``cfg.template`` and length-checked like RL prompts. ``size``: demonstrations per source
    (None: every distinct train task once). ``careless``: the fraction of each domain's
    demonstrations that carry the careless annotator's flaw (see
    :func:`mgs.data.generators.demonstrations`), at seeded positions. File sources have no
    demonstrations and are skipped.
    """
    only = _synthetic_config(cfg, "train", size, None)
    if only is None:
        return {}
    domains, _ = load_domains(only, tokenizer)
    out: dict[str, list[Demonstration]] = {}
    for k, (domain, pool) in enumerate(domains.items()):
        flags = careless_draws(len(pool), careless, cfg.mixture.seed + k)
        out[domain] = [
            Demonstration(
                ex,
                _join(
                    ex.prompt,
                    ex.metadata["careless_completion" if flag else "completion"],
                ),
                careless=flag,
            )
            for ex, flag in zip(pool, flags)
        ]
    return out


def load_eval_prompts(
    cfg: DataConfig, tokenizer: Any, size: int | None = None
) -> dict[str, list[Example]]:
    """Held-out evaluation prompts of every built-in (synthetic) source, per domain.

    The eval split of each generator: tasks that never appear in its train split, whatever the
    seeds, in each source's seeded order. ``size`` keeps the first ``size`` per source (None:
    every held-out task once). File sources are skipped (evaluate them on their own benchmarks).
    """
    only = _synthetic_config(cfg, "eval", None, size)
    if only is None:
        return {}
    domains, _ = load_domains(only, tokenizer)
    return domains


def _join(prompt: str, completion: str) -> str:
    return completion if not prompt or prompt[-1].isspace() else f" {completion}"
