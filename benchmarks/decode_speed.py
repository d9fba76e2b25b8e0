"""Rollout seconds of the hf backend: ``generate`` against the lean ``fast`` decode loop.

The tiny default's policy (``src/mgs/tiny/tiny.yaml``: 3 layers, hidden 96, character
vocabulary), randomly initialised, 24 prompts x n=4 = 96 rows in one micro-batch, 96 new tokens,
keyed sampling at temperature 1, no stop strings (so every row runs the full length unless it
draws EOS). Both loops run alternately ``--repeats`` times on the same seed; the rollouts are
checked equal token for token. Usage: ``python benchmarks/decode_speed.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--prompts", type=int, default=24, help="prompts (rows = prompts x n)")
    p.add_argument("--n", type=int, default=4, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    from mgs.rl.hf_generate import HFGenerateBackend
    from mgs.rl.rollout import SamplingConfig
    from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer
    from mgs.train.config import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config()  # the tiny default
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_policy(tokenizer, cfg.model.tiny)
    prompts = [
        f"User: <query>What is {i} + {2 * i + 1}?</query>\nAssistant:" for i in range(args.prompts)
    ]
    sampling = SamplingConfig(
        n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, stop=[]
    )
    rows = args.prompts * args.n
    backends = {
        name: HFGenerateBackend(
            policy, tokenizer, max_prompt_tokens=256, micro_batch_size=rows, decode=name
        )
        for name in ("generate", "fast")
    }
    times: dict[str, list[float]] = {name: [] for name in backends}
    outputs = {}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, backend in backends.items():
            start = time.perf_counter()
            outputs[name] = backend.generate(prompts, sampling, seed=0).completions
            times[name].append(time.perf_counter() - start)
    same = outputs["generate"] == outputs["fast"]
    tokens = sum(len(c.completion_ids) for c in outputs["fast"])
    for name, ts in times.items():
        print(
            f"{name:9s} median {statistics.median(ts[1:]):.3f} s  (runs: "
            + ", ".join(f"{t:.3f}" for t in ts[1:])
            + f"; {rows} rows, {tokens} tokens)"
        )
    speedup = statistics.median(times["generate"][1:]) / statistics.median(times["fast"][1:])
    print(f"speed-up {speedup:.2f}x; rollouts identical: {same}")


if __name__ == "__main__":
    main()
