"""Throughput of each reward (samples/s) on realistic inputs; prints one line per measurement.

    python benchmarks/rewards.py [--data ../shared/data] [--rm-path DIR] [--workers 2]

- math: MATH-500 reference solutions (long text, last box) checked against the gold answers, and
  the same with another problem's answer (mostly wrong: math-verify works harder to say no);
- ifeval: IFEval rows with real model text as responses (AlpacaEval 2's GPT-4 outputs), strict
  and loose;
- reward_model: AlpacaEval instructions with their GPT-4 outputs, scored by the tiny reward model
  (trained here in ~20 s unless --rm-path names one) or any HF reward model directory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(
    os.environ.get(
        "MGS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


def timed(label: str, n: int, fn) -> list:
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<48} {n:>5} samples {elapsed:7.2f} s {n / elapsed:9.1f} samples/s", flush=True)
    return out


def bench_math(data: Path, workers: int) -> None:
    from mgs.rewards import MathRewardConfig
    from mgs.rewards.math_reward import MathReward

    rows = json.loads((data / "math500.json").read_text(encoding="utf-8"))
    answers = [r["answer"] for r in rows]
    solutions = [r["solution"] for r in rows]
    shifted = [rf"\boxed{{{answers[(i + 7) % len(rows)]}}}" for i in range(len(rows))]
    with MathReward(MathRewardConfig(num_workers=workers)) as reward:
        timed(
            "math: worker start + 1 sample", 1, lambda: reward([""], [r"\boxed{1}"], answer=["1"])
        )
        right = timed(
            f"math: MATH-500 solutions, {workers} workers",
            len(rows),
            lambda: reward([""] * len(rows), solutions, answer=answers),
        )
        wrong = timed(
            f"math: another problem's answer, {workers} workers",
            len(rows),
            lambda: reward([""] * len(rows), shifted, answer=answers),
        )
    print(
        f"  (scored 1: {sum(v == 1.0 for v in right)}/{len(rows)} right, "
        f"{sum(v == 1.0 for v in wrong)}/{len(rows)} wrong)"
    )


def bench_ifeval(data: Path) -> None:
    from mgs.rewards import IFEvalRewardConfig
    from mgs.rewards.ifeval import IFEvalReward

    rows = json.loads((data / "ifeval.json").read_text(encoding="utf-8"))
    outputs = json.loads((data / "alpacaeval2_gpt4_baseline.json").read_text(encoding="utf-8"))
    n = min(len(rows), len(outputs))
    prompts = [r["prompt"] for r in rows[:n]]
    responses = [o["output"] for o in outputs[:n]]
    cols = {
        "instruction_id_list": [r["instruction_id_list"] for r in rows[:n]],
        "kwargs": [r["kwargs"] for r in rows[:n]],
    }
    timed("ifeval: load checkers (lm-eval, punkt)", 1, lambda: IFEvalReward())
    for variant in ("strict", "loose"):
        reward = IFEvalReward(IFEvalRewardConfig(variant=variant))
        timed(
            f"ifeval: {variant}, real responses", n, lambda r=reward: r(prompts, responses, **cols)
        )


def bench_reward_model(data: Path, rm_path: str | None) -> None:
    import torch

    from mgs.rewards.reward_model import RewardModelScorer

    rows = json.loads((data / "alpacaeval2_gpt4_baseline.json").read_text(encoding="utf-8"))[:256]
    prompts = [r["instruction"] for r in rows]
    responses = [r["output"] for r in rows]
    if rm_path is None:
        from mgs.tiny.domains import preference_pairs
        from mgs.tiny.reward_model import train_tiny_reward_model

        rm_path = tempfile.mkdtemp(prefix="tiny_rm_")
        timed(
            "reward_model: train the tiny RM (2000 pairs)",
            2000,
            lambda: train_tiny_reward_model(preference_pairs(2000, 0), rm_path),
        )
    print(f"  torch threads: {torch.get_num_threads()}")
    for batch_size in (1, 16):
        scorer = RewardModelScorer(rm_path, device="auto", batch_size=batch_size)
        scorer.score(prompts[:2], responses[:2])  # load outside the timing
        timed(
            f"reward_model: AlpacaEval chat, batch {batch_size}",
            len(rows),
            lambda s=scorer: s.score(prompts, responses),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Folder of math500.json...")
    parser.add_argument("--rm-path", default=None, help="Reward model directory (default: tiny).")
    parser.add_argument("--workers", type=int, default=2, help="Math worker processes.")
    parser.add_argument("--only", choices=["math", "ifeval", "reward_model"], default=None)
    args = parser.parse_args()
    if not (args.data / "math500.json").is_file():
        raise SystemExit(f"benchmark data not found in {args.data}; pass --data DIR")
    if args.only in (None, "math"):
        bench_math(args.data, args.workers)
    if args.only in (None, "ifeval"):
        bench_ifeval(args.data)
    if args.only in (None, "reward_model"):
        bench_reward_model(args.data, args.rm_path)


if __name__ == "__main__":
    main()
