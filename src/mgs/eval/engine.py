"""The evaluation engine: prompts -> ``samples`` completions each -> scores -> aggregates.

One path for both evaluations the package runs: ``mgs eval`` on benchmarks
(:mod:`mgs.eval.runner`, scored by each benchmark's scorer) and the held-out evaluation of a
training run before and after RL (:mod:`mgs.eval.heldout`, scored by the training's own reward
router). Generation always goes through a rollout backend (:class:`~mgs.rl.RolloutBackend`: the
training's sampling, stop strings and keyed seeding), so an evaluated completion is sampled exactly
as a training rollout would be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mgs.rl.rollout import Completion, RolloutBackend, SamplingConfig


def generate_completions(
    backend: RolloutBackend,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    *,
    seed: int,
    keys: Sequence[int] | None = None,
    prompts_per_call: int | None = None,
    on_prompts_done: Callable[[int], None] | None = None,
) -> list[Completion]:
    """``sampling.n`` completions of every prompt: entry ``i * n + j`` is prompt ``i``'s ``j``-th.

    ``keys``: a global id per prompt (default: its index); with batch-invariant sampling a
    completion depends only on ``(seed, key, j)``. ``prompts_per_call``: None generates everything
    in one backend call (the backend micro-batches it); a number generates longest prompts first,
    that many per call (less padding), reporting progress to ``on_prompts_done(count)``.
    """
    n = sampling.n
    keys = list(range(len(prompts))) if keys is None else list(keys)
    if prompts_per_call is None:
        batch = backend.generate(list(prompts), sampling, seed=seed, keys=keys)
        if on_prompts_done is not None:
            on_prompts_done(len(prompts))
        return list(batch.completions)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[Completion | None] = [None] * (len(prompts) * n)
    for lo in range(0, len(order), prompts_per_call):
        chunk = order[lo : lo + prompts_per_call]
        batch = backend.generate(
            [prompts[i] for i in chunk], sampling, seed=seed, keys=[keys[i] for i in chunk]
        )
        for k, c in enumerate(batch.completions):  # group-contiguous: k // n is the prompt
            out[chunk[c.prompt_index] * n + k % n] = c
        if on_prompts_done is not None:
            on_prompts_done(len(chunk))
    return [c for c in out if c is not None]
