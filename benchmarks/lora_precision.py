"""What LoRA (``model.lora``) and bf16 mixed precision (``model.mixed_precision``) change in the
trainer: trained parameters, the surgeon's per-domain buffers, AdamW's state, and the time of
the update phases, on the embedded tiny default's model (random initialisation, test rewards).

Run from the repository root::

    .venv/bin/python benchmarks/lora_precision.py            # 6 measured steps per variant
    .venv/bin/python benchmarks/lora_precision.py --steps 3  # quicker

Four trainers with the same seed: full fine-tuning in float32, full fine-tuning with bf16
autocast, LoRA (r 16 on every decoder projection) in float32, LoRA with bf16 autocast; strategy
mgs (PCGrad per tensor), three domains. Printed per variant: trained parameters, the surgeon's
buffer bytes (K x trained parameters + block padding), AdamW state bytes, and the median of
the step's phases over ``--steps`` steps after one warm-up step. On a CPU bf16 autocast is
emulated and usually *slower* than float32: the time columns say nothing about a GPU; the
memory columns hold anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mgs train` on a shared CPU

import torch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "full fp32": [],
    "full bf16": ["model.mixed_precision.enabled=true"],
    "LoRA fp32": ["model.lora={r: 16, alpha: 32}"],
    "LoRA bf16": ["model.lora={r: 16, alpha: 32}", "model.mixed_precision.enabled=true"],
}
PHASES = ["generation", "logprobs", "backward", "surgery", "optimizer", "step"]


def overrides(threads: int) -> list[str]:
    return [
        f"num_threads={threads}",
        "warmstart.sft.steps=0",
        "eval.prompts_per_domain=0",
        "logging.progress=false",
        "rewards.routes={math: bench_length, if: bench_length, chat: bench_length}",
        "rollout.sampling.max_new_tokens=48",
        "strategy.name=mgs",
    ]


def register_reward() -> None:
    from mgs.rewards import register_reward

    @register_reward("bench_length")
    def length_reward(prompts, completions, **columns):
        """Shorter responses score higher: a dense, cheap reward (no reward model to train)."""
        return [1.0 / (1.0 + len(c)) for c in completions]


def measure(name: str, extra: list[str], steps: int, threads: int) -> dict:
    from mgs.train.builder import build_trainer
    from mgs.train.config import load_config
    from mgs.train.trainer import seed_everything

    cfg = load_config(None, [*overrides(threads), *extra])
    seed_everything(cfg.seed)
    trainer = build_trainer(cfg)
    trainer.step(0)  # warm-up (and AdamW's state exists from here on)
    times = {phase: [] for phase in PHASES}
    for step in range(1, steps + 1):
        metrics = trainer.step(step).metrics
        for phase in PHASES:
            times[phase].append(metrics.get(f"time/{phase}", 0.0))
    trainer.close()
    surgeon = trainer.surgeon
    state = trainer.optimizer.state.values()
    return {
        "variant": name,
        "trained": sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in trainer.policy.parameters()),
        "buffers": surgeon.buffers.numel() * surgeon.buffers.element_size(),
        "adam": sum(t.numel() * t.element_size() for s in state for t in s.values() if t.ndim),
        **{phase: statistics.median(values) for phase, values in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="Measured steps per variant.")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    register_reward()
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps (median)")
    head = "| variant | trained / all params | MGS buffers | AdamW state |"
    head += "".join(f" {p} s |" for p in PHASES)
    print(head)
    print("|---|---:|---:|---:|" + "---:|" * len(PHASES))
    for name, extra in VARIANTS.items():
        row = measure(name, extra, args.steps, args.threads)
        cells = [
            f"{row['trained']:,} / {row['total']:,}",
            f"{row['buffers'] / 2**20:.2f} MiB",
            f"{row['adam'] / 2**20:.2f} MiB",
            *(f"{row[p]:.3f}" for p in PHASES),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
