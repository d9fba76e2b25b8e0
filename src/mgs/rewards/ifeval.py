"""Instruction-following reward: Google's IFEval checkers (and AllenAI's IFBench ones) on the response.

The checkers are the reference implementation as maintained in ``lm-eval``
(``lm_eval.tasks.ifeval``: Google's ``instructions.py`` / ``instructions_registry.py``), used as a
library: nothing is copied. What is ours is the glue IFEval's own evaluation script does around
them (the strict and loose variants, dropping ``None`` kwargs), the reward (fraction of
instructions followed, or all-or-nothing) and two things for reproducibility and offline use:

- NLTK's punkt data comes from :mod:`mgs.rewards.punkt_offline` when it cannot be downloaded;
- ``langdetect`` is seeded (its detector is random by default, so ``language:response_language``
  and the ``change_case:english_*`` checks could flip between runs).

Instruction ids of IFBench (``count:keywords_multiple``, ``words:alphabet``...) are looked up in
:mod:`mgs.rewards.ifbench` when they are not IFEval's, so both the ``ifeval`` and the ``ifbench``
rewards check rows of either benchmark (and rows mixing both). IFBench's checkers load only when
such an id is first seen.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from mgs.errors import ConfigError, DataError, unknown_name
from mgs.rewards.config import IFEvalRewardConfig
from mgs.rewards.registry import Scores


@lru_cache(maxsize=1)
def instruction_registry() -> dict[str, Any]:
    """IFEval instruction id -> checker class (imports lm-eval's checkers on first use)."""
    from mgs.rewards.punkt_offline import ensure_punkt

    ensure_punkt()  # before the import: lm-eval tries nltk.download at import when it is missing
    import langdetect

    langdetect.DetectorFactory.seed = 0
    try:
        from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as exc:
        raise ConfigError(
            f"the IFEval reward needs the reference checkers from lm-eval ({exc}); "
            "run `pip install lm-eval==0.4.13`"
        ) from None
    return dict(INSTRUCTION_DICT)


def instruction_ids() -> list[str]:
    """Every IFEval instruction id the checkers know (IFBench's: ``mgs.rewards.ifbench``)."""
    return sorted(instruction_registry())


def checker_class(instruction_id: str) -> Any:
    """The checker class of an IFEval or IFBench instruction id; unknown ids list both families."""
    registry = instruction_registry()
    if instruction_id in registry:
        return registry[instruction_id]
    from mgs.rewards.ifbench import ifbench_registry, looks_like_ifbench

    if looks_like_ifbench(instruction_id):
        bench = ifbench_registry()
        if instruction_id in bench:
            return bench[instruction_id]
        raise unknown_name("IFEval / IFBench instruction id", instruction_id, [*registry, *bench])
    raise unknown_name("IFEval instruction id", instruction_id, list(registry))


@lru_cache(maxsize=4096)
def _checker(instruction_id: str, kwargs_json: str, prompt: str | None) -> Any:
    checker = checker_class(instruction_id)(instruction_id)
    kwargs = json.loads(kwargs_json)
    try:
        checker.build_description(**kwargs)
    except TypeError as exc:
        raise DataError(f"instruction {instruction_id!r}: bad kwargs {kwargs}: {exc}") from None
    args = checker.get_instruction_args()
    if args and "prompt" in args and prompt is not None:
        checker.build_description(prompt=prompt)
    return checker


def _variants(response: str, loose: bool) -> list[str]:
    """The responses IFEval tries: the response itself, or (loose) also with the first line,
    the last line or both removed, each with and without ``*`` (markdown emphasis)."""
    if not loose:
        return [response]
    lines = response.split("\n")
    trimmed = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return trimmed + [r.replace("*", "") for r in trimmed]


def ifeval_check(
    response: str,
    instruction_id_list: list[str],
    kwargs: list[dict[str, Any] | None],
    *,
    loose: bool,
    prompt: str | None = None,
) -> list[bool]:
    """Whether ``response`` follows each instruction (IFEval's strict or loose definition).

    ``kwargs[i]`` holds instruction i's arguments; keys whose value is None are dropped (the
    Hugging Face copy of IFEval stores every key for every instruction). ``prompt`` is only
    needed by checkers that compare against the prompt. An empty response follows nothing.
    """
    if len(kwargs) != len(instruction_id_list):
        raise DataError(
            f"IFEval row has {len(instruction_id_list)} instruction ids but {len(kwargs)} kwargs "
            "entries; give one kwargs mapping (possibly {}) per instruction"
        )
    candidates = [r for r in _variants(response, loose) if r.strip()]
    results = []
    for instruction_id, spec in zip(instruction_id_list, kwargs):
        clean = {k: v for k, v in (spec or {}).items() if v is not None}
        checker = _checker(instruction_id, json.dumps(clean, sort_keys=True), prompt)
        results.append(any(checker.check_following(r) for r in candidates))
    return results


class IFEvalReward:
    """``reward(prompts, completions, instruction_id_list=[...], kwargs=[...])``: the fraction of
    the sample's instructions followed (``mode: fraction``) or 1/0 for all of them (``all``)."""

    config_class = IFEvalRewardConfig
    name = "ifeval"

    def __init__(self, cfg: IFEvalRewardConfig | None = None) -> None:
        self.cfg = cfg or IFEvalRewardConfig()
        instruction_registry()  # fail at construction, not in the middle of a step

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[float | None]:
        return self.score(prompts, completions, **columns).values

    def score(self, prompts: list[str], completions: list[str], **columns: list[Any]) -> Scores:
        rows = self._check(prompts, completions, columns, (self.cfg.variant,))
        values = [r["reward"] for r in rows]
        return Scores(values=values, timed_out=[False] * len(values))

    def details(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[dict[str, Any]]:
        """Per sample: ``reward`` (as :meth:`__call__`), ``strict`` and ``loose`` (one boolean per
        instruction; empty lists and reward None for a row without instructions)."""
        return self._check(prompts, completions, columns, ("strict", "loose"))

    def _check(
        self,
        prompts: list[str],
        completions: list[str],
        columns: dict[str, list[Any]],
        variants: tuple[str, ...],
    ) -> list[dict[str, Any]]:
        ids, specs = columns.get("instruction_id_list"), columns.get("kwargs")
        if ids is None or specs is None:
            raise ConfigError(
                f"the {self.name} reward needs 'instruction_id_list' and 'kwargs' columns (the "
                f"names IFEval and IFBench use); got columns: {', '.join(sorted(columns)) or 'none'}"
            )
        out: list[dict[str, Any]] = []
        for prompt, response, id_list, spec in zip(prompts, completions, ids, specs):
            if not id_list:  # no instruction: not applicable
                out.append({"reward": None, **{v: [] for v in variants}})
                continue
            id_list, spec = list(id_list), _kwargs_list(spec)
            row: dict[str, Any] = {
                v: ifeval_check(response, id_list, spec, loose=v == "loose", prompt=prompt)
                for v in variants
            }
            ok = row[self.cfg.variant]
            row["reward"] = (
                (1.0 if all(ok) else 0.0) if self.cfg.mode == "all" else sum(ok) / len(ok)
            )
            out.append(row)
        return out


def _kwargs_list(spec: Any) -> list[Any]:
    """A row's ``kwargs``: a list of mappings, or that list stored as a JSON string."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise DataError(f"kwargs {spec[:60]!r} is a string but not JSON") from None
    return list(spec)
