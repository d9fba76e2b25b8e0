"""Sources: one file (or built-in generator) -> the examples of one domain.

A :class:`SourceConfig` names the domain, where the rows come from, and which columns hold the
prompt, the reference and the row id. Presets carry the column layouts of the common files
(MATH-style, IFEval, verl chat / math parquet, AlpacaEval) so a source is usually two lines::

    - {domain: math, path: data/math500.json, preset: math}
    - {domain: chat, path: data/wildchat-if_train.parquet, preset: wildchat}

Columns may be dotted paths into nested records (``reward_model.ground_truth``). Every other
column travels along as the example's ``metadata`` (or only the ones ``metadata:`` lists). A missing
column, a null value or a duplicate id is a :class:`~mgs.errors.DataError` naming the column, the
file and the row: rows are never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgs.data.example import Example, to_messages
from mgs.data.readers import READERS, read_records
from mgs.data.synthetic import SPLITS, SYNTHETIC_DOMAINS, generate
from mgs.dataclass_config import option
from mgs.errors import ConfigError, DataError, unknown_name

BOXED_INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
_DOMAIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Layout:
    """Where a file keeps the prompt, the reference fields and the row id."""

    prompt_key: str = "prompt"
    reference: dict[str, str] = field(default_factory=dict)  # reference name -> column
    id_key: str | None = None  # None: the row number
    suffix: str = ""  # appended to the last user message
    about: str = ""


PRESETS: dict[str, Layout] = {
    "math": Layout(
        "problem",
        {"answer": "answer"},
        "unique_id",
        BOXED_INSTRUCTION,
        "MATH-style rows (math500.json): problem, answer, unique_id; asks for a \\boxed{} answer",
    ),
    "ifeval": Layout(
        "prompt",
        {"instruction_id_list": "instruction_id_list", "kwargs": "kwargs"},
        "key",
        "",
        "IFEval rows (ifeval.json): prompt, instruction_id_list, kwargs, key",
    ),
    "wildchat": Layout(
        "prompt",
        {},
        "extra_info.index",
        "",
        "verl chat parquet (wildchat-if_*.parquet): prompt messages, extra_info.index",
    ),
    "verl": Layout(
        "prompt",
        {"answer": "reward_model.ground_truth"},
        None,
        "",
        "verl RL parquet with a ground truth: prompt messages, reward_model.ground_truth",
    ),
    "alpacaeval": Layout(
        "instruction",
        {"baseline_output": "output"},
        None,
        "",
        "AlpacaEval rows: instruction, output (the baseline model's answer)",
    ),
}


@dataclass
class SourceConfig:
    """One source of prompts for one domain: a data file or a built-in tiny generator."""

    domain: str = option(help="Domain of every prompt in this source (e.g. math, chat, ifeval).")
    path: str = option("", help="Data file (.jsonl, .json, .parquet) or Hugging Face dataset.")
    synthetic: str = option(
        "", help=f"Built-in generator instead of a file: {', '.join(SYNTHETIC_DOMAINS)}."
    )
    size: int | None = option(
        None,
        help="Synthetic sources only: how many prompts (null: every distinct task of the split "
        "once; more cycles through them).",
    )
    seed: int = option(0, help="Synthetic sources only: seed of the generator's order.")
    format: str = option("auto", help=f"Reader: auto (from the extension), {', '.join(READERS)}.")
    split: str = option(
        "train",
        help="Split of a Hugging Face dataset; for a synthetic source train or eval (the "
        "held-out prompts, never in train).",
    )
    preset: str | None = option(
        None, help=f"Column layout of a known file kind: {', '.join(PRESETS)}."
    )
    prompt_key: str | None = option(
        None,
        help="Column holding the prompt (text or chat messages); default: the preset's, else prompt.",
    )
    reference: dict[str, str] | None = option(
        None, help="Reference fields the reward needs, name -> column, e.g. {answer: solution}."
    )
    id_key: str | None = option(
        None, help="Column with a unique row id; default: the preset's; '' numbers the rows."
    )
    suffix: str | None = option(
        None, help="Text appended to every prompt's last user message; default: the preset's."
    )
    metadata: list[str] | None = option(
        None,
        help="Columns carried along untouched as example metadata; null: every column not used "
        "as the prompt, a reference or the id; []: none.",
    )
    limit: int | None = option(None, help="Keep only the first N rows (null: all).")
    name: str = option("", help="Label in example ids and reports; default: file stem / generator.")

    def __post_init__(self) -> None:
        if not _DOMAIN_NAME.match(self.domain or ""):
            raise ConfigError(
                f"source domain {self.domain!r} must be a name of letters, digits, _ or -, "
                "starting with a letter; write e.g. domain: math"
            )
        if bool(self.path) == bool(self.synthetic):
            raise ConfigError(
                f"source of domain {self.domain!r} needs exactly one of path: (a data file) or "
                f"synthetic: (one of {', '.join(SYNTHETIC_DOMAINS)})"
            )
        if self.synthetic and self.synthetic not in SYNTHETIC_DOMAINS:
            raise unknown_name("synthetic domain", self.synthetic, list(SYNTHETIC_DOMAINS))
        if self.format != "auto" and self.format not in READERS:
            raise unknown_name("data format", self.format, [*READERS, "auto"])
        if self.preset is not None and self.preset not in PRESETS:
            raise unknown_name("source preset", self.preset, list(PRESETS))
        if self.synthetic and self.split not in SPLITS:
            raise ConfigError(
                f"source {self.label}: a synthetic source's split must be one of "
                f"{', '.join(SPLITS)}, got {self.split!r}"
            )
        if self.size is not None and self.size <= 0:
            raise ConfigError(f"source {self.label}: size must be a positive integer or null")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"source {self.label}: limit must be positive, or null for all rows")

    @property
    def label(self) -> str:
        return self.name or self.synthetic or Path(self.path).stem

    def layout(self) -> Layout:
        """The preset's layout with this source's explicit keys on top."""
        base = PRESETS[self.preset] if self.preset else Layout()
        return Layout(
            prompt_key=self.prompt_key or base.prompt_key,
            reference=base.reference if self.reference is None else dict(self.reference),
            id_key=base.id_key if self.id_key is None else (self.id_key or None),
            suffix=base.suffix if self.suffix is None else self.suffix,
        )


def load_source(cfg: SourceConfig) -> list[Example]:
    """Every row of one source as an :class:`Example` (prompt not rendered yet)."""
    layout = cfg.layout()
    if cfg.synthetic:
        return _synthetic_examples(cfg, layout.suffix)
    rows = read_records(cfg.path, cfg.format, cfg.split)
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    examples = [_example(row, i, cfg, layout, cfg.path) for i, row in enumerate(rows)]
    _check_unique(examples, cfg, layout)
    return examples


def _synthetic_examples(cfg: SourceConfig, suffix: str) -> list[Example]:
    """A built-in generator's tasks; metadata holds the task's fields and its demonstration."""
    tasks = generate(cfg.synthetic, cfg.size, cfg.seed, cfg.split)
    if cfg.limit is not None:
        tasks = tasks[: cfg.limit]
    examples = []
    for i, task in enumerate(tasks):
        meta = {
            **task.metadata,
            "completion": task.completion,
            "careless_completion": task.careless_completion,
        }
        if cfg.metadata is not None:
            meta = {k: v for k, v in meta.items() if k in cfg.metadata}
        messages = ({"role": "user", "content": task.question + suffix},)
        examples.append(
            Example(
                f"{cfg.label}/{i}",
                cfg.domain,
                messages,
                dict(task.reference),
                metadata=meta,
                suffix=suffix,
            )
        )
    return examples


def check_sources(sources: list[SourceConfig]) -> None:
    """A run needs at least one source, and labels (the prefix of example ids) must be unique."""
    if not sources:
        raise ConfigError(
            "data.sources is empty; list at least one source (domain + path or synthetic)"
        )
    labels = [s.label for s in sources]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ConfigError(
            f"two sources share the label {repeated[0]!r}; give one of them a distinct name: "
            "(labels prefix example ids, which must be unique)"
        )


def lookup(row: dict[str, Any], column: str) -> Any:
    """``row[column]``, where a dotted column walks nested records; KeyError when absent."""
    if column in row:
        return row[column]
    node: Any = row
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(column)
        node = node[part]
    return node


_REQUIRED = object()


class MissingColumnError(DataError):
    """A row lacks a column the source's layout reads; callers with their own vocabulary (``mgs
    eval``'s benchmark kinds) rephrase the fix from its fields."""

    def __init__(self, where_file: str, index: int, column: str, what: str, columns: str) -> None:
        self.where_file, self.index, self.column, self.what = where_file, index, column, what
        self.columns = columns
        super().__init__(
            f"{where_file}, row {index}: no column {column!r} (the {what}); the row's columns "
            f"are: {columns}. Set the source's preset: or its {what} column to match the file"
        )


def _cell(
    row: dict[str, Any],
    column: str,
    what: str,
    index: int,
    where_file: str,
    if_null: Any = _REQUIRED,
) -> Any:
    try:
        value = lookup(row, column)
    except KeyError:
        columns = ", ".join(map(str, row))
        raise MissingColumnError(where_file, index, column, what, columns) from None
    if value is None and if_null is not _REQUIRED:
        return if_null
    if value is None:
        raise DataError(
            f"{where_file}, row {index}: column {column!r} (the {what}) is null; "
            "fill it in or remove the row"
        )
    return value


def _example(
    row: dict[str, Any], index: int, cfg: SourceConfig, layout: Layout, where_file: str
) -> Example:
    where = f"{where_file}, row {index}"
    messages = to_messages(_cell(row, layout.prompt_key, "prompt_key", index, where_file), where)
    if layout.suffix:
        last = {**messages[-1], "content": messages[-1]["content"] + layout.suffix}
        messages = (*messages[:-1], last)
    reference = {
        name: _cell(row, column, f"reference {name!r}", index, where_file)
        for name, column in layout.reference.items()
    }
    row_id = _cell(row, layout.id_key, "id_key", index, where_file) if layout.id_key else index
    if cfg.metadata is None:
        used = {layout.prompt_key, *layout.reference.values(), layout.id_key}
        metadata = {k: v for k, v in row.items() if k not in used}
    else:
        metadata = {c: _cell(row, c, "metadata", index, where_file, None) for c in cfg.metadata}
    return Example(
        f"{cfg.label}/{row_id}",
        cfg.domain,
        messages,
        reference,
        metadata=metadata,
        suffix=layout.suffix,
    )


def _check_unique(examples: list[Example], cfg: SourceConfig, layout: Layout) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.uid in seen:
            raise DataError(
                f"source {cfg.label!r}: id {ex.uid!r} appears twice in column {layout.id_key!r}; "
                "set id_key: to a column with unique values, or id_key: '' to number the rows"
            )
        seen.add(ex.uid)
