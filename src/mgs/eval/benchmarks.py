"""Benchmarks by name: what file format each reads, and how its completions are scored.

A :class:`BenchmarkSpec` names a benchmark kind (a key of :data:`BENCHMARKS`), the file to read
(kinds backed by a file) and a label (the key of its results). On the command line it is written
``[LABEL:]KIND[=PATH]``, e.g. ``math500=data/math500.json``, ``aime:math500=aime24.json`` (any
file in the MATH-500 format) or ``tiny_math``. PATH may also be a Hugging Face hub id
(``ORG/NAME``, ``ORG/NAME/CONFIG``, ``ORG/NAME/*`` for every configuration); kinds with a default
hub id (``aime24``, ``ifbench``, ``mmlu_redux``...) need no PATH at all.

Kinds scored by ``reward`` call a registered reward (:mod:`mgs.rewards.registry`) through its
``details`` method, and aggregate with the kind's ``metrics`` (:mod:`mgs.eval.scoring`): any
benchmark is also an RL domain, with the same scorer.

Rows become :class:`~mgs.data.Example` objects through the same sources and presets as training
data (:mod:`mgs.data.sources`), and prompts are rendered by the training templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mgs.data.example import Example
from mgs.data.sources import MissingColumnError, SourceConfig, load_source
from mgs.data.templates import render_examples
from mgs.errors import ConfigError, DataError, unknown_name

Scoring = Literal["math", "ifeval", "reward_model", "pairwise", "reward"]
Metrics = Literal["accuracy", "instructions", "grid"]


@dataclass(frozen=True)
class BenchmarkKind:
    """How one kind of benchmark is read and scored."""

    scoring: Scoring  # which scorer (mgs.eval.scoring) turns completions into scores
    about: str  # the file format, for help texts and errors
    preset: str | None = None  # mgs.data source preset for file-backed kinds
    synthetic: str | None = None  # built-in tiny domain (held-out split) instead of a file
    primary: str = ""  # the headline metric (empty: chosen from the decoding, for math)
    training_reward: bool = False  # also report `reward`, the training reward of the domain
    reward: str | None = None  # scoring "reward": the registered reward that scores it
    metrics: Metrics = "accuracy"  # scoring "reward": how its per-sample details aggregate
    hub: str | None = None  # read when no PATH is given: ORG/NAME[/CONFIG or /*]
    split: str = "test"  # the hub dataset's split

    @property
    def needs_file(self) -> bool:
        return self.synthetic is None and self.hub is None

    @property
    def needs_reward_model(self) -> bool:
        return self.scoring == "reward_model"


BENCHMARKS: dict[str, BenchmarkKind] = {
    "math500": BenchmarkKind(
        "math",
        "MATH-500 format (json/jsonl/parquet): problem, answer, unique_id; the prompt asks for a "
        "\\boxed{} answer, checked by math-verify",
        preset="math",
        hub="HuggingFaceH4/MATH-500",
    ),
    "aime24": BenchmarkKind(
        "math",
        "AIME 2024 (30 problems): problem (or question), answer",
        preset="competition_math",
        hub="HuggingFaceH4/aime_2024",
        split="train",
    ),
    "aime25": BenchmarkKind(
        "math",
        "AIME 2025 (30 problems): problem (or question), answer",
        preset="competition_math",
        hub="math-ai/aime25",
    ),
    "amc23": BenchmarkKind(
        "math",
        "AMC 2023 (40 problems): question (or problem), answer (27.0 reads as 27)",
        preset="competition_math",
        hub="math-ai/amc23",
    ),
    "minerva_math": BenchmarkKind(
        "math",
        "Minerva Math (272 problems): problem (or question), answer or a \\boxed{} solution",
        preset="minerva_math",
        hub="math-ai/minervamath",
    ),
    "olympiadbench": BenchmarkKind(
        "math",
        "OlympiadBench, English text-only maths (675 problems): question, final_answer",
        preset="olympiadbench",
        hub="Hothan/OlympiadBench/OE_TO_maths_en_COMP",
        split="train",
    ),
    "gsm8k": BenchmarkKind(
        "math",
        "GSM8K test (1319 problems): question, answer ending '#### N'",
        preset="gsm8k",
        hub="openai/gsm8k/main",
    ),
    "ifbench": BenchmarkKind(
        "reward",
        "IFBench (IFEval's format with 58 new instruction ids): key, prompt, "
        "instruction_id_list, kwargs",
        preset="ifeval",
        primary="prompt_level_strict_acc",
        reward="ifbench",
        metrics="instructions",
        hub="allenai/IFBench_test",
        split="train",
    ),
    "mmlu_redux": BenchmarkKind(
        "reward",
        "MMLU-Redux: question, choices, answer (index), error_type (rows not 'ok' are left out)",
        preset="mmlu_redux",
        primary="accuracy",
        reward="multiple_choice",
        hub="edinburgh-dawg/mmlu-redux-2.0/*",
    ),
    "popqa": BenchmarkKind(
        "reward",
        "PopQA: id, question, possible_answers (the answer's aliases)",
        preset="popqa",
        primary="accuracy",
        reward="popqa",
        hub="akariasai/PopQA",
    ),
    "zebralogic": BenchmarkKind(
        "reward",
        "ZebraLogic grid_mode: id, size, puzzle, solution {header, rows}",
        preset="zebralogic",
        primary="puzzle_acc",
        reward="zebralogic",
        metrics="grid",
        hub="WildEval/ZebraLogic/grid_mode",
    ),
    "ifeval": BenchmarkKind(
        "ifeval",
        "IFEval format: key, prompt, instruction_id_list, kwargs",
        preset="ifeval",
        primary="prompt_level_strict_acc",
        hub="google/IFEval",
        split="train",
    ),
    "alpacaeval": BenchmarkKind(
        "pairwise",
        "AlpacaEval format: instruction, output (the reference answer our response is compared "
        "with)",
        preset="alpacaeval",
        primary="win_rate",
    ),
    "chat": BenchmarkKind(
        "reward_model",
        "chat prompts: a 'prompt' column holding text or {role, content} messages (e.g. "
        "wildchat-if_val.parquet), scored by the reward model",
        primary="rm_score",
    ),
    "tiny_math": BenchmarkKind(
        "math",
        "built-in: held-out split of the tiny math domain",
        synthetic="tiny_math",
        primary="reward",
        training_reward=True,
    ),
    "tiny_if": BenchmarkKind(
        "ifeval",
        "built-in: held-out split of the tiny instruction-following domain",
        synthetic="tiny_if",
        primary="reward",
        training_reward=True,
    ),
    "tiny_chat": BenchmarkKind(
        "reward_model",
        "built-in: held-out split of the tiny chat domain, scored by the reward model",
        synthetic="tiny_chat",
        primary="reward",
        training_reward=True,
    ),
}

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+|/\*)?$")
_DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")


def is_hub_id(path: str) -> bool:
    """A PATH that names a hub dataset rather than a local file: ``ORG/NAME[/CONFIG]``, not an
    existing path and without a data-file extension."""
    return (
        bool(_HUB_ID.match(path))
        and not Path(path).exists()
        and not path.lower().endswith(_DATA_SUFFIXES)
    )


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark to run: its kind, its file (None for built-in ones) and its result label."""

    kind: str
    path: str | None = None
    label: str | None = None  # default: the kind

    def __post_init__(self) -> None:
        if self.kind not in BENCHMARKS:
            raise unknown_name("benchmark", self.kind, list(BENCHMARKS))
        bench = BENCHMARKS[self.kind]
        if bench.needs_file and not self.path:
            raise ConfigError(
                f"benchmark {self.kind!r} reads a file: write --bench {self.kind}=PATH "
                f"({bench.about})"
            )
        if bench.scoring == "reward" and not bench.reward:
            raise ConfigError(f"benchmark kind {self.kind!r} is scored by a reward but names none")
        if bench.synthetic is not None and self.path:
            raise ConfigError(
                f"benchmark {self.kind!r} is built in and takes no file; write --bench {self.kind}"
            )
        if self.label is not None and not _LABEL.match(self.label):
            raise ConfigError(
                f"benchmark label {self.label!r} must be letters, digits, _ . or -, e.g. aime24"
            )

    @property
    def name(self) -> str:
        """The key of this benchmark's results."""
        return self.label or self.kind

    @property
    def info(self) -> BenchmarkKind:
        return BENCHMARKS[self.kind]

    @property
    def source(self) -> str | None:
        """Where its rows come from: the PATH given, else the kind's hub id (None: built in)."""
        return self.path or self.info.hub

    @property
    def from_hub(self) -> bool:
        return self.source is not None and is_hub_id(self.source)

    @classmethod
    def parse(cls, text: str) -> BenchmarkSpec:
        """``[LABEL:]KIND[=PATH]`` -> spec, e.g. ``math500=data/math500.json``."""
        head, sep, path = text.partition("=")
        label, colon, kind = head.partition(":")
        if not colon:
            label, kind = "", head
        if sep and not path:
            raise ConfigError(f"--bench {text!r} has an empty path; write {kind}=PATH")
        return cls(kind.strip(), path or None, label.strip() or None)


def check_unique(specs: list[BenchmarkSpec]) -> None:
    """Labels key the results: two benchmarks of one kind need distinct labels."""
    if not specs:
        raise ConfigError(
            "no benchmark given; pass at least one --bench, e.g. --bench tiny_math or "
            f"--bench math500=PATH (valid kinds: {', '.join(BENCHMARKS)})"
        )
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(
                f"two benchmarks are both labelled {spec.name!r}; label one, e.g. "
                f"--bench other:{spec.kind}={spec.path or ''}".rstrip("=")
            )
        seen.add(spec.name)


def check_file(spec: BenchmarkSpec) -> None:
    """A file-backed benchmark's file must exist (checked before any model is loaded); a hub id
    is checked when it is read."""
    if spec.path is not None and not Path(spec.path).exists() and not is_hub_id(spec.path):
        raise DataError(
            f"benchmark {spec.name!r}: file {spec.path!r} does not exist; pass the path of a "
            f"{spec.info.about.split(':')[0]} file"
        )


def read_rows(spec: BenchmarkSpec, limit: int | None) -> list[Example]:
    """``spec``'s rows (the first ``limit``) as examples, prompts not rendered yet; a file of
    another shape is a DataError naming the kind it should be (no model or tokenizer needed, so
    ``mgs eval`` checks its files this way before loading the model)."""
    bench = spec.info
    if bench.synthetic is not None:
        source = SourceConfig(
            domain=spec.kind, synthetic=bench.synthetic, split="eval", limit=limit, name=spec.name
        )
    else:
        check_file(spec)
        source = SourceConfig(
            domain=spec.kind,
            path=str(spec.source),
            preset=bench.preset,
            limit=limit,
            name=spec.name,
            format="hf" if spec.from_hub else "auto",
            split=bench.split,
        )
    try:
        examples = load_source(source)
    except MissingColumnError as exc:
        raise DataError(
            f"benchmark {spec.name!r}: {exc.where_file}, row {exc.index} has no column "
            f"{exc.column!r} (its columns: {exc.columns}), so it is not a {spec.kind} file "
            f"({bench.about.split(';')[0]}); pass such a file, or the --bench kind that matches "
            f"yours (kinds read from files: "
            f"{', '.join(k for k, v in BENCHMARKS.items() if v.synthetic is None)})"
        ) from None
    if not examples:
        raise DataError(f"benchmark {spec.name!r}: {spec.source or spec.kind} has no rows")
    return examples


@dataclass
class LoadedBenchmark:
    """A benchmark's prompts, rendered; ``skipped`` lists the ids left out for their length."""

    spec: BenchmarkSpec
    examples: list[Example]
    skipped: list[str]
    truncated: list[str]


def load_benchmark(
    spec: BenchmarkSpec,
    template: Any,
    tokenizer: Any,
    *,
    limit: int | None,
    max_prompt_tokens: int | None,
    overlong: str,
) -> LoadedBenchmark:
    """Read ``spec``'s rows (the first ``limit``) and render their prompts with ``template``."""
    examples = read_rows(spec, limit)
    rendered = render_examples(examples, template, tokenizer, max_prompt_tokens, overlong)
    if not rendered.kept:
        raise DataError(
            f"benchmark {spec.name!r}: every prompt is longer than {max_prompt_tokens} tokens; "
            "raise --max-prompt-tokens, lower --max-new-tokens, or pass --overlong truncate"
        )
    return LoadedBenchmark(
        spec,
        rendered.kept,
        [ex.uid for ex in rendered.dropped],
        [ex.uid for ex in rendered.truncated],
    )
