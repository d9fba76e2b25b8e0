"""Held-out evaluation of the policy on every domain: mean reward per domain.

Uses the training's generation backend, templates and reward router, so "held-out reward" means
exactly what the training reward means, on prompts the policy never trained on.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from mgs.data.example import Example
from mgs.rewards.router import RewardRouter
from mgs.rl import RolloutBackend, SamplingConfig


def evaluate_domains(
    backend: RolloutBackend,
    router: RewardRouter,
    examples: list[Example],
    sampling: SamplingConfig,
    *,
    samples: int,
    temperature: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """``{domain: {"reward": mean, "length": mean response tokens, "n": completions}}``."""
    if not examples:
        return {}
    cfg = dataclasses.replace(sampling, n=samples, temperature=temperature)
    rollouts = backend.generate([ex.prompt for ex in examples], cfg, seed=seed)
    owners = [examples[c.prompt_index] for c in rollouts.completions]
    result = router(
        [ex.domain for ex in owners],
        [ex.question for ex in owners],
        rollouts.texts,
        [dict(ex.reference) for ex in owners],
    )
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for ex, completion, reward in zip(owners, rollouts.completions, result.rewards):
        acc = sums[ex.domain]
        acc[0] += reward
        acc[1] += len(completion.completion_ids)
        acc[2] += 1
    return {d: {"reward": s[0] / s[2], "length": s[1] / s[2], "n": s[2]} for d, s in sums.items()}


def format_table(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> str:
    """Markdown table of held-out reward per domain, before vs after RL."""
    lines = ["| domain | before RL | after RL | change |", "|---|---:|---:|---:|"]
    for domain in sorted(set(before) | set(after)):
        b = before.get(domain, {}).get("reward", float("nan"))
        a = after.get(domain, {}).get("reward", float("nan"))
        lines.append(f"| {domain} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    return "\n".join(lines)
