"""Held-out evaluation of a training run: mean reward per domain on prompts never trained on.

Uses the training's generation backend, templates and reward router (through the evaluation
engine, :mod:`mgs.eval.engine`), so "held-out reward" means exactly what the training reward
means. The prompts are the generated domains' held-out split (:mod:`mgs.data.generators`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from mgs.data.example import Example
from mgs.eval.engine import generate_completions
from mgs.rewards.router import RewardRouter
from mgs.rl.rollout import RolloutBackend, SamplingConfig

DomainRewards = dict[str, dict[str, float]]  # {domain: {"reward", "length", "n"}}


def evaluate_heldout(
    backend: RolloutBackend,
    router: RewardRouter,
    examples: list[Example],
    sampling: SamplingConfig,
    *,
    samples: int,
    temperature: float,
    seed: int,
) -> DomainRewards:
    """``{domain: {"reward": mean, "length": mean response tokens, "n": completions}}``.

    ``sampling``: the training's; only its group size and temperature are replaced.
    """
    if not examples:
        return {}
    cfg = dataclasses.replace(sampling, n=samples, temperature=temperature)
    completions = generate_completions(backend, [ex.prompt for ex in examples], cfg, seed=seed)
    owners = [examples[i // samples] for i in range(len(completions))]
    result = router(
        [ex.domain for ex in owners],
        [ex.question for ex in owners],
        [c.text for c in completions],
        [dict(ex.reference) for ex in owners],
    )
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for ex, completion, reward in zip(owners, completions, result.rewards):
        acc = sums[ex.domain]
        acc[0] += reward
        acc[1] += len(completion.completion_ids)
        acc[2] += 1
    return {d: {"reward": s[0] / s[2], "length": s[1] / s[2], "n": s[2]} for d, s in sums.items()}


def format_table(before: DomainRewards, after: DomainRewards) -> str:
    """Markdown table of held-out reward per domain, before vs after RL."""
    lines = ["| domain | before RL | after RL | change |", "|---|---:|---:|---:|"]
    for domain in sorted(set(before) | set(after)):
        b = before.get(domain, {}).get("reward", float("nan"))
        a = after.get(domain, {}).get("reward", float("nan"))
        lines.append(f"| {domain} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    return "\n".join(lines)
