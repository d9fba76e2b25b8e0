"""Completions -> per-sample scores (:func:`score_samples`) -> aggregate metrics (:func:`aggregate`).

Every score is computed on the *response* part of a completion (``split_completion`` with the
evaluation's extraction config: the thought is never scored). A completion with no response block
(``on_missing_response: zero``) has ``response: null``: it is wrong on math, follows no IFEval
instruction, loses every pairwise comparison, and is scored by the reward model as the empty
response. :func:`aggregate` reads nothing but the records, so the JSON's aggregates can always be
recomputed from its per-sample scores.

Kinds scored by ``reward`` go through one path, :func:`_reward`: the kind's registered reward
(``get_reward(name)``) scores the responses with its ``details`` method, which returns per sample
the ``reward`` plus what the kind's metrics read (``correct``; ``strict`` / ``loose``;
``cells_correct`` / ``cells_total``), and :data:`REWARD_METRICS` aggregates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mgs.data.example import Example
from mgs.errors import ConfigError
from mgs.eval.benchmarks import BenchmarkKind
from mgs.eval.config import EvalConfig
from mgs.eval.judge import ChatJudge
from mgs.eval.metrics import (
    avg_at_k,
    default_ks,
    ifeval_accuracies,
    mean,
    mean_pass_at_k,
    pairwise_outcome,
)
from mgs.rewards.ifeval import ifeval_check


@dataclass(frozen=True)
class Sample:
    """One completion of one prompt, split into its parts."""

    example: Example
    completion: str
    response: str | None  # None: no response block found


class Scorers:
    """The scoring resources of one evaluation, built on first use and reused across benchmarks:
    the math-verify worker pool, the reward model, the LLM judge. Call :meth:`close` at the end."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self._math: Any = None
        self._rm: Any = None
        self._judge: ChatJudge | None = None
        self._rewards: dict[str, Any] = {}

    def named_reward(self, name: str) -> Any:
        """The registered reward ``name`` (built once; the IF rewards take ``cfg.ifeval``)."""
        if name not in self._rewards:
            from mgs.dataclass_config import to_dict
            from mgs.rewards.registry import get_reward

            options = to_dict(self.cfg.ifeval) if name in ("ifeval", "ifbench") else {}
            reward = get_reward(name, **options)
            if not callable(getattr(reward, "details", None)):
                raise ConfigError(
                    f"reward {name!r} has no details() method, so it cannot score a benchmark; "
                    "give it details(prompts, completions, **columns) -> list[dict]"
                )
            self._rewards[name] = reward
        return self._rewards[name]

    def math(self) -> Any:
        if self._math is None:
            from mgs.rewards.math_reward import MathReward

            self._math = MathReward(self.cfg.math)
        return self._math

    def reward_model(self) -> Any:
        """The loaded :class:`~mgs.rewards.reward_model.RewardModelScorer` (loads it now)."""
        if self._rm is None:
            from mgs.rewards.reward_model import RewardModelScorer

            rm = self.cfg.reward_model
            if not rm.path:
                raise ConfigError(
                    "this benchmark is scored by a reward model and none is set; pass "
                    "--reward-model DIR (a Hugging Face sequence-classification model, e.g. one "
                    "from `mgs rm-train`)"
                )
            scorer = RewardModelScorer(rm.path, rm.device, rm.dtype, rm.batch_size, rm.max_length)
            try:
                scorer.model  # noqa: B018 - load now: fail before generating, not after
            except ConfigError:
                raise ConfigError(
                    f"cannot load the reward model {rm.path!r}; pass --reward-model DIR, a "
                    "directory with config.json, weights and a tokenizer with a chat template"
                ) from None
            self._rm = scorer
        return self._rm

    def judge(self) -> ChatJudge:
        if self._judge is None:
            if self.cfg.judge is None:
                raise ConfigError(
                    "no LLM judge configured: pass --judge-url URL --judge-model NAME"
                )
            self._judge = ChatJudge(self.cfg.judge)
        return self._judge

    def close(self) -> None:
        if self._math is not None:
            self._math.close()
        for reward in self._rewards.values():
            if callable(getattr(reward, "close", None)):
                reward.close()
        self._math = self._rm = self._judge = None
        self._rewards = {}


def score_samples(
    kind: BenchmarkKind,
    samples: list[Sample],
    scorers: Scorers,
    on_done: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """One ``scores`` mapping per sample (see docs/eval.md for the keys of each kind)."""
    if kind.scoring == "reward":
        return _reward(kind, samples, scorers)
    score = {
        "math": _math,
        "ifeval": _ifeval,
        "reward_model": _reward_model,
        "pairwise": _pairwise,
    }[kind.scoring]
    out = score(samples, scorers, on_done)
    if kind.training_reward:
        for s, scores in zip(samples, out):
            scores["reward"] = _training_reward(kind, s, scores, scorers.cfg)
    return out


def _reward(kind: BenchmarkKind, samples: list[Sample], scorers: Scorers) -> list[dict[str, Any]]:
    """The kind's registered reward on the responses (a missing response is scored as the empty
    response: it answers nothing, follows no instruction, fills no cell)."""
    reward = scorers.named_reward(str(kind.reward))
    names = sorted({k for s in samples for k in s.example.reference})
    columns = {k: [s.example.reference.get(k) for s in samples] for k in names}
    details = reward.details(
        [s.example.question for s in samples], [s.response or "" for s in samples], **columns
    )
    if len(details) != len(samples):
        raise ConfigError(
            f"reward {kind.reward!r} returned {len(details)} details for {len(samples)}"
        )
    return [dict(d) for d in details]


def _math(samples: list[Sample], scorers: Scorers, on_done: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"correct": 0.0} for _ in samples]
    idx = [i for i, s in enumerate(samples) if s.response is not None]
    if idx:
        result = scorers.math().score(
            [samples[i].example.question for i in idx],
            [samples[i].response or "" for i in idx],
            answer=[samples[i].example.reference["answer"] for i in idx],
        )
        for j, i in enumerate(idx):
            value = result.values[j]
            out[i]["correct"] = 1.0 if value == 1.0 else 0.0
            if value is None:
                out[i]["verify_error"] = True  # math-verify raised: counted wrong
            if result.timed_out and result.timed_out[j]:
                out[i]["timed_out"] = True  # past the deadline: counted wrong
    return out


def _ifeval(samples: list[Sample], scorers: Scorers, on_done: Any) -> list[dict[str, Any]]:
    out = []
    for s in samples:
        ids = list(s.example.reference["instruction_id_list"])
        kwargs = list(s.example.reference["kwargs"])
        if s.response is None:
            strict = loose = [False] * len(ids)
        else:
            q = s.example.question
            strict = ifeval_check(s.response, ids, kwargs, loose=False, prompt=q)
            loose = ifeval_check(s.response, ids, kwargs, loose=True, prompt=q)
        out.append({"strict": strict, "loose": loose})
    return out


def _reward_model(samples: list[Sample], scorers: Scorers, on_done: Any) -> list[dict[str, Any]]:
    values = scorers.reward_model().score(
        [s.example.question for s in samples], [s.response or "" for s in samples]
    )
    return [{"rm_score": v} for v in values]


def _pairwise(samples: list[Sample], scorers: Scorers, on_done: Any) -> list[dict[str, Any]]:
    questions = [s.example.question for s in samples]
    references = [str(s.example.reference["baseline_output"]) for s in samples]
    cfg = scorers.cfg
    out: list[dict[str, Any]] = [{} for _ in samples]
    if cfg.reward_model.path:
        ours = _reward_model(samples, scorers, on_done)
        for scores, o in zip(out, ours):
            scores["rm_score"] = o["rm_score"]
    if cfg.judge is not None:
        judgements = scorers.judge().judge(
            questions, [s.response for s in samples], references, on_done
        )
        for scores, j in zip(out, judgements):
            scores.update(judge="llm", win=j.win, verdict=j.verdict, ours_position=j.ours_position)
        return out
    if not cfg.reward_model.path:
        raise ConfigError(
            "AlpacaEval-style win rates need a judge: pass --reward-model DIR (a reward model "
            "scores ours and the reference) or --judge-url URL --judge-model NAME (an LLM judge)"
        )
    refs = scorers.reward_model().score(questions, references)
    for s, scores, ref in zip(samples, out, refs):
        scores["ref_rm_score"] = ref
        scores["judge"] = "reward_model"
        scores["win"] = (
            0.0 if s.response is None else pairwise_outcome(scores["rm_score"], ref, cfg.tie_margin)
        )
    return out


def _training_reward(
    kind: BenchmarkKind, s: Sample, scores: dict[str, Any], cfg: EvalConfig
) -> float:
    """The domain's training reward, as the reward router computes it (0 without a response)."""
    if s.response is None:
        return 0.0
    if kind.scoring == "math":
        return float(scores["correct"])
    if kind.scoring == "ifeval":
        followed = scores["loose" if cfg.ifeval.variant == "loose" else "strict"]
        if cfg.ifeval.mode == "all":
            return 1.0 if all(followed) else 0.0
        return sum(followed) / len(followed)
    return float(scores["rm_score"])


def aggregate(
    kind: BenchmarkKind, records: list[dict[str, Any]], *, greedy: bool, pass_k: list[int] | None
) -> dict[str, float]:
    """The benchmark's metrics from its records (``id``, ``finish_reason``, ``completion_tokens``,
    ``response`` and ``scores`` of every sample); see docs/eval.md for each definition."""
    if not records:
        raise ValueError("aggregate needs at least one record")
    scores = [r["scores"] for r in records]
    metrics: dict[str, float] = {}
    if kind.scoring == "math":
        metrics.update(_sampled_accuracy(records, greedy, pass_k))
    elif kind.scoring == "ifeval":
        metrics.update(_instructions(records, greedy, pass_k))
    elif kind.scoring == "reward":
        metrics.update(REWARD_METRICS[kind.metrics](records, greedy, pass_k))
        rewards = [float(s["reward"]) for s in scores if s.get("reward") is not None]
        metrics["reward"] = mean(rewards) if rewards else float("nan")
    if any("rm_score" in s for s in scores):
        metrics["rm_score"] = mean([s["rm_score"] for s in scores])
    if any("ref_rm_score" in s for s in scores):
        metrics["ref_rm_score"] = mean([s["ref_rm_score"] for s in scores])
    if kind.scoring == "pairwise":
        wins = [s["win"] for s in scores if s.get("win") is not None]
        metrics["win_rate"] = mean(wins) if wins else float("nan")
        metrics["judged_rate"] = len(wins) / len(scores)
    if kind.training_reward:
        metrics["reward"] = mean([s["reward"] for s in scores])
    metrics["missing_response_rate"] = mean([float(r["response"] is None) for r in records])
    metrics["truncated_rate"] = mean([float(r["finish_reason"] == "length") for r in records])
    metrics["completion_tokens"] = mean([float(r["completion_tokens"]) for r in records])
    return metrics


def _sampled_accuracy(
    records: list[dict[str, Any]], greedy: bool, pass_k: list[int] | None
) -> dict[str, float]:
    """``greedy_pass@1`` (greedy) or ``avg@k`` and ``pass@j`` (sampling) of the ``correct``
    scores, grouped by prompt id."""
    by_prompt: dict[str, list[float]] = {}
    for r in records:
        by_prompt.setdefault(r["id"], []).append(float(r["scores"]["correct"]))
    rows = list(by_prompt.values())
    n = min(len(row) for row in rows)
    if greedy:
        return {"greedy_pass@1": avg_at_k(rows)}
    metrics = {f"avg@{n}": avg_at_k(rows)}
    counts = [(len(row), int(sum(row))) for row in rows]
    for k in pass_k or default_ks(n):
        metrics[f"pass@{k}"] = mean_pass_at_k(counts, k)
    return metrics


def _accuracy(
    records: list[dict[str, Any]], greedy: bool, pass_k: list[int] | None
) -> dict[str, float]:
    """``accuracy`` (mean ``correct`` over samples) and the sampled accuracies."""
    correct = [float(r["scores"]["correct"]) for r in records]
    return {"accuracy": mean(correct), **_sampled_accuracy(records, greedy, pass_k)}


def _instructions(
    records: list[dict[str, Any]], greedy: bool, pass_k: list[int] | None
) -> dict[str, float]:
    """IFEval's prompt- and instruction-level accuracies, strict and loose (rows without any
    instruction are left out)."""
    rows = [r["scores"] for r in records if r["scores"]["strict"]]
    if not rows:
        raise ValueError("no sample has an instruction to check")
    return ifeval_accuracies([s["strict"] for s in rows], [s["loose"] for s in rows])


def _grid(
    records: list[dict[str, Any]], greedy: bool, pass_k: list[int] | None
) -> dict[str, float]:
    """ZebraLogic: ``puzzle_acc`` (fully solved), ``cell_acc`` (correct cells over all cells,
    pooled over samples, as ZeroEval) and ``no_answer_rate`` (no solution object found)."""
    scores = [r["scores"] for r in records]
    cells = sum(int(s["cells_total"]) for s in scores)
    return {
        "puzzle_acc": mean([float(s["correct"]) for s in scores]),
        "cell_acc": sum(int(s["cells_correct"]) for s in scores) / cells if cells else float("nan"),
        "no_answer_rate": mean([0.0 if s["parsed"] else 1.0 for s in scores]),
    }


REWARD_METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "accuracy": _accuracy,
    "instructions": _instructions,
    "grid": _grid,
}


def primary_metric(kind: BenchmarkKind, greedy: bool, samples: int) -> str:
    """The headline metric of a benchmark kind under this decoding."""
    if kind.primary:
        return kind.primary
    return "greedy_pass@1" if greedy else f"avg@{samples}"
