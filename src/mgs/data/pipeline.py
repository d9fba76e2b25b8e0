"""The data section of a run: sources -> rendered, length-checked prompts -> a domain mixture.

:func:`build_mixture` is what the trainer (and ``mgs data``) calls. Prompts longer than
``max_prompt_tokens`` are dropped, as verl does, but never silently: the returned
:class:`DataReport` counts them per source, and a domain left with no prompt is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mgs.data.example import Example
from mgs.data.mixture import DomainMixture, MixtureConfig
from mgs.data.sources import SourceConfig, check_sources, load_source
from mgs.data.templates import TemplateConfig, render_examples
from mgs.dataclass_config import option
from mgs.errors import ConfigError, DataError


def tiny_sources() -> list[SourceConfig]:
    """The embedded default: the two built-in tiny domains of the paper's main setting."""
    return [
        SourceConfig(domain="math", synthetic="tiny_math"),
        SourceConfig(domain="chat", synthetic="tiny_chat"),
    ]


@dataclass
class DataConfig:
    """Where the prompts come from, how they are rendered, and how domains are mixed."""

    sources: list[SourceConfig] = option(  # noqa: RUF009 - option() returns a dataclasses.field
        default_factory=tiny_sources,
        help="Prompt sources, each {domain, path | synthetic, ...}; see docs/data.md.",
    )
    mixture: MixtureConfig = option(default_factory=MixtureConfig, help="Domain mixture.")  # noqa: RUF009 - option() returns a dataclasses.field
    template: TemplateConfig = option(default_factory=TemplateConfig, help="Prompt template.")  # noqa: RUF009 - option() returns a dataclasses.field
    max_prompt_tokens: int | None = option(
        896, help="Drop (and report) prompts longer than this many tokens; null keeps all."
    )

    def __post_init__(self) -> None:
        if self.max_prompt_tokens is not None and self.max_prompt_tokens <= 0:
            raise ConfigError(
                f"data.max_prompt_tokens must be positive or null, got {self.max_prompt_tokens}"
            )


@dataclass
class SourceReport:
    label: str
    domain: str
    rows: int  # rows read from the source
    too_long: list[str] = field(default_factory=list)  # uids dropped for their length

    @property
    def kept(self) -> int:
        return self.rows - len(self.too_long)


@dataclass
class DataReport:
    """What loading did to each source: rows read and prompts dropped for length."""

    sources: list[SourceReport]
    max_prompt_tokens: int | None

    @property
    def dropped(self) -> int:
        return sum(len(s.too_long) for s in self.sources)

    def lines(self) -> list[str]:
        out = []
        for s in self.sources:
            line = f"{s.label} -> {s.domain}: {s.kept} prompts"
            if s.too_long:
                line += (
                    f" ({len(s.too_long)} of {s.rows} dropped: longer than "
                    f"{self.max_prompt_tokens} tokens, e.g. {s.too_long[0]})"
                )
            out.append(line)
        return out


def load_domains(cfg: DataConfig, tokenizer: Any) -> tuple[dict[str, list[Example]], DataReport]:
    """Examples per domain with their prompts rendered, and the report of what was dropped."""
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
        kept, too_long = render_examples(examples, cfg.template, tokenizer, cfg.max_prompt_tokens)
        domains.setdefault(source.domain, []).extend(kept)
        reports.append(
            SourceReport(source.label, source.domain, len(examples), [ex.uid for ex in too_long])
        )
    report = DataReport(reports, cfg.max_prompt_tokens)
    for domain, pool in domains.items():
        if not pool:
            raise DataError(
                f"every prompt of domain {domain!r} is longer than data.max_prompt_tokens="
                f"{cfg.max_prompt_tokens} tokens; raise it or shorten the prompts"
            )
    return domains, report


def build_mixture(cfg: DataConfig, tokenizer: Any) -> tuple[DomainMixture, DataReport]:
    """The trainer's entry point: load, render, length-check, then mix."""
    domains, report = load_domains(cfg, tokenizer)
    return DomainMixture(domains, cfg.mixture), report
