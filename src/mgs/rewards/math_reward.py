"""Math reward: 1.0 when the response's last ``\\boxed{}`` equals the gold ``answer``, else 0.0.

The box is found here (cheap, linear); the comparison is math-verify's ``parse`` + ``verify``
(the library, not a re-implementation), run in a :class:`~mgs.rewards.deadline_pool.DeadlinePool`
so that a pathological answer (``10^{10^{10^{10}}}``, a megabyte of braces) costs at most
``timeout_s`` and a killed worker, never a hung training step.
"""

from __future__ import annotations

import logging
from typing import Any

from mgs.errors import ConfigError, DataError
from mgs.rewards.boxed import last_boxed
from mgs.rewards.config import MathRewardConfig
from mgs.rewards.deadline_pool import DeadlinePool
from mgs.rewards.registry import Scores

log = logging.getLogger(__name__)


class MathReward:
    """``reward(prompts, completions, answer=[...]) -> [1.0 | 0.0 | None, ...]``.

    None marks a sample math-verify raised on (e.g. an unreadable gold answer); the router gives
    it the fallback. Call :meth:`close` (or use ``with``) to stop the worker processes.
    """

    config_class = MathRewardConfig

    def __init__(self, cfg: MathRewardConfig | None = None) -> None:
        self.cfg = cfg or MathRewardConfig()
        self._pool = DeadlinePool(
            "mgs.rewards.math_task:verify_boxed",
            num_workers=self.cfg.num_workers,
            timeout_s=self.cfg.timeout_s,
            memory_limit_mb=self.cfg.memory_limit_mb,
        )

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: list[Any]
    ) -> list[float | None]:
        return self.score(prompts, completions, **columns).values

    def score(self, prompts: list[str], completions: list[str], **columns: list[Any]) -> Scores:
        answers = columns.get("answer")
        if answers is None:
            raise ConfigError(
                "the math reward needs an 'answer' column (the gold final answer) for each sample; "
                f"got columns: {', '.join(sorted(columns)) or 'none'}"
            )
        if len(answers) != len(completions):
            raise DataError(
                f"the math reward got {len(completions)} completions but {len(answers)} answers"
            )
        values: list[float | None] = [0.0] * len(completions)
        timed_out = [False] * len(completions)
        tasks: list[tuple[str, str]] = []
        where: list[int] = []
        for i, (completion, answer) in enumerate(zip(completions, answers)):
            if answer is None or str(answer).strip() == "":
                values[i] = None  # no gold: not applicable
                continue
            content = last_boxed(completion)
            if content is None or not content.strip() or len(content) > self.cfg.max_answer_chars:
                continue  # no usable answer: 0
            tasks.append((content, str(answer)))
            where.append(i)
        errors: list[str] = []
        for i, outcome in zip(where, self._pool.map(tasks)):
            if outcome.status == "ok":
                values[i] = 1.0 if outcome.value else 0.0
            elif outcome.status == "timeout":
                timed_out[i] = True  # scores 0
            else:
                values[i] = None
                errors.append(outcome.error)
        if errors:
            log.warning(
                "math reward: %d sample(s) failed in math-verify, e.g. %s", len(errors), errors[0]
            )
        return Scores(values=values, timed_out=timed_out)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> MathReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
