"""Sources: one file (or built-in generator) -> the examples of one domain.

A :class:`SourceConfig` names the domain, where the rows come from, and which columns hold the
prompt, the reference and the row id. Presets carry the column layouts of the common files
(MATH-style, IFEval, verl chat / math parquet, AlpacaEval) so a source is usually two lines::

    - {domain: math, path: data/math500.json, preset: math}
    - {domain: chat, path: data/wildchat-if_train.parquet, preset: wildchat}
    - {domain: math, path: hkust-nlp/SimpleRL-Zoo-Data, preset: simplerl_math,
       data_files: simplelr_qwen_level3to5/train.parquet}      # a dataset on the Hugging Face hub

Columns may be dotted paths into nested records (``reward_model.ground_truth``) and may list
alternatives (``problem|question``: the first the row has), so one preset reads both a hub copy
and the JSON Lines files evaluation suites ship. Presets can also convert a reference cell
(``convert``), build the prompt from several columns (``render``) and keep only some rows
(``where``); see :mod:`mgs.data.transforms`. Every other
column travels along as the example's ``metadata`` (or only the ones ``metadata:`` lists). A missing
column, a null value or a duplicate id is a :class:`~mgs.errors.DataError` naming the column, the
file and the row: rows are never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgs.data.example import Example, to_messages
from mgs.data.generators import SPLITS, check_generator, generate, generator_names
from mgs.data.presets import PRESETS, Layout
from mgs.data.readers import READERS, read_records
from mgs.data.transforms import CONVERTERS, PROMPT_BUILDERS
from mgs.dataclass_config import option
from mgs.errors import ConfigError, DataError, unknown_name

_DOMAIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass
class SourceConfig:
    """One source of prompts for one domain: a data file or a built-in tiny generator."""

    domain: str = option(help="Domain of every prompt in this source (e.g. math, chat, ifeval).")
    path: str = option(
        "",
        help="Data file (.jsonl, .json, .parquet), a folder saved by Hugging Face datasets, or a "
        "hub dataset id (owner/name).",
    )
    hub_config: str | None = option(
        None, help="Hub datasets only: the configuration (subset) to load, e.g. filtered."
    )
    data_files: str | None = option(
        None,
        help="Hub datasets only: the file(s) inside the dataset repository to load, e.g. "
        "simplelr_qwen_level3to5/train.parquet.",
    )
    synthetic: str = option(
        "",
        help="A registered generator instead of a file (the built-in demo's: tiny_math, tiny_if, "
        "tiny_chat; yours: mgs.data.register_generator).",
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
                f"synthetic: (one of {', '.join(generator_names())})"
            )
        if self.synthetic:
            check_generator(self.synthetic)
        if self.format != "auto" and self.format not in READERS:
            raise unknown_name("data format", self.format, [*READERS, "auto"])
        if self.preset is not None and self.preset not in PRESETS:
            raise unknown_name("source preset", self.preset, list(PRESETS))
        if self.synthetic and self.split not in SPLITS:
            raise ConfigError(
                f"source {self.label}: a synthetic source's split must be one of "
                f"{', '.join(SPLITS)}, got {self.split!r}"
            )
        if self.synthetic and (self.hub_config or self.data_files):
            raise ConfigError(
                f"source {self.label}: hub_config / data_files select parts of a Hugging Face "
                "dataset; a synthetic source has neither, remove them"
            )
        if self.size is not None and self.size <= 0:
            raise ConfigError(f"source {self.label}: size must be a positive integer or null")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"source {self.label}: limit must be positive, or null for all rows")

    @property
    def label(self) -> str:
        return self.name or self.synthetic or Path(self.path).stem

    def plan(self) -> str:
        """One line saying what this source will load and which columns feed what."""
        if self.synthetic:
            return f"{self.domain}: built-in {self.synthetic} generator ({self.split} split)"
        where = [self.path]
        if self.hub_config:
            where.append(f"configuration {self.hub_config}")
        if self.data_files:
            where.append(f"file {self.data_files}")
        layout = self.layout()
        columns = [f"prompt <- {layout.prompt_key}"]
        columns += [f"{name} <- {column}" for name, column in layout.reference.items()]
        columns.append(f"id <- {layout.id_key or 'row number'}")
        preset = f", preset {self.preset}" if self.preset else ""
        return (
            f"{self.domain}: {', '.join(where)} (format {self.format}, split {self.split}"
            f"{preset}); {', '.join(columns)}"
        )

    def layout(self) -> Layout:
        """The preset's layout with this source's explicit keys on top."""
        base = PRESETS[self.preset] if self.preset else Layout()
        return Layout(
            prompt_key=self.prompt_key or base.prompt_key,
            reference=base.reference if self.reference is None else dict(self.reference),
            id_key=base.id_key if self.id_key is None else (self.id_key or None),
            suffix=base.suffix if self.suffix is None else self.suffix,
            convert=base.convert if self.reference is None else {},
            render=None if self.prompt_key else base.render,
            where=base.where,
        )


def load_source(cfg: SourceConfig) -> list[Example]:
    """Every row of one source as an :class:`Example` (prompt not rendered yet)."""
    layout = cfg.layout()
    if cfg.synthetic:
        return _synthetic_examples(cfg, layout.suffix)
    rows = read_records(
        cfg.path, cfg.format, cfg.split, hub_config=cfg.hub_config, data_files=cfg.data_files
    )
    for column, values in layout.where.items():
        rows = [r for r in rows if r.get(column, values[0]) in values]  # no column: kept
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
    """``row[column]``, where a dotted column walks nested records and ``a|b`` takes the first
    alternative the row has; KeyError when absent."""
    if "|" in column:
        return lookup(row, resolve(row, column))
    if column in row:
        return row[column]
    node: Any = row
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(column)
        node = node[part]
    return node


def resolve(row: dict[str, Any], column: str) -> str:
    """The alternative of ``a|b|...`` that ``row`` has (KeyError when none)."""
    for alternative in column.split("|"):
        try:
            lookup(row, alternative)
            return alternative
        except KeyError:
            continue
    raise KeyError(column)


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
    if layout.render:
        try:
            prompt = PROMPT_BUILDERS[layout.render](row)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    else:
        prompt = _cell(row, layout.prompt_key, "prompt_key", index, where_file)
    messages = to_messages(prompt, where)
    if layout.suffix:
        last = {**messages[-1], "content": messages[-1]["content"] + layout.suffix}
        messages = (*messages[:-1], last)
    reference = {
        name: _reference(row, column, layout.convert.get(name), name, index, where_file)
        for name, column in layout.reference.items()
    }
    row_id = _row_id(row, layout.id_key, index, where_file)
    if cfg.metadata is None:
        named = [layout.prompt_key, *layout.reference.values(), layout.id_key or ""]
        used = {option for column in named for option in column.split("|")}
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


def _reference(
    row: dict[str, Any], column: str, converter: str | None, name: str, index: int, where: str
) -> Any:
    value = _cell(row, column, f"reference {name!r}", index, where)
    if converter is None:
        return value
    try:
        return CONVERTERS[converter](value, resolve(row, column))
    except DataError as exc:
        raise DataError(f"{where}, row {index}: {exc}") from None


def _row_id(row: dict[str, Any], id_key: str | None, index: int, where: str) -> Any:
    """The row's id column; an alternative list ending in ``|`` (``id|idx|``) falls back to the
    row number when the row has none of them."""
    if not id_key:
        return index
    if id_key.endswith("|"):
        try:
            return lookup(row, resolve(row, id_key.rstrip("|")))
        except KeyError:
            return index
    return _cell(row, id_key, "id_key", index, where)


def _check_unique(examples: list[Example], cfg: SourceConfig, layout: Layout) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.uid in seen:
            raise DataError(
                f"source {cfg.label!r}: id {ex.uid!r} appears twice in column {layout.id_key!r}; "
                "set id_key: to a column with unique values, or id_key: '' to number the rows"
            )
        seen.add(ex.uid)
