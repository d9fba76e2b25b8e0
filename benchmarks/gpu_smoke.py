"""GPU smoke check: the paper-scale path on one lent GPU, with nothing from a hub.

What it runs (``python benchmarks/gpu_smoke.py``, about 0.5B parameters by default):

1. a randomly initialised Qwen2 of the Qwen2.5-0.5B shape (hidden 896, 14 heads, 2 KV heads, MLP
   4864; 32 layers, so ~0.48B parameters with the character tokenizer's small vocabulary), float32
   master weights with bf16 compute (``model.mixed_precision``), built in-process;
2. ``--steps`` GRPO steps of ``mgs`` (PCGrad per tensor) and of ``mixed`` from the same weights,
   with the hf rollout backend, three tiny domains (math and IFEval rewards, a cheap letters reward
   for chat): per-phase step times and the peak GPU memory of each, beside
   ``mgs train --estimate-memory``'s training peak for the same config;
3. do the lean decode loop and Hugging Face ``generate`` still give the same tokens on this device
   (greedy and keyed sampling, the same prompts)?
4. ``GradientSurgeon.apply()`` against the original code's per-tensor PCGrad loop (one host sync per
   pair: ``benchmarks/surgery.py``) on the model's own parameters on the device, K = 3
   (goal: >= 50x on a GPU).

``--quick``: a 2-layer model and short rollouts, to check the script itself on a CPU in a minute.
Prints the figures; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/surgery.py's loop

PHASES = ["generation", "rewards", "logprobs", "backward", "surgery", "optimizer", "step"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cpu")
    p.add_argument("--steps", type=int, default=3, help="GRPO steps per strategy")
    p.add_argument("--layers", type=int, default=32, help="decoder layers (32: ~0.48B)")
    p.add_argument("--prompts", type=int, default=12, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds of apply() and the loop")
    p.add_argument("--quick", action="store_true", help="a 2-layer model: check the script")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def letters(prompts, completions, **columns) -> list[float]:
    """The chat domain's reward: fraction of letters (no reward model to build)."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def config(args: argparse.Namespace, strategy: str, decode: str = "generate"):
    from mgs.rewards import register_reward, reward_names
    from mgs.train.config import load_config

    if "smoke_letters" not in reward_names():
        register_reward("smoke_letters")(letters)
    size = (
        "{hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 128}"
        if args.quick
        else f"{{hidden_size: 896, num_layers: {args.layers}, num_heads: 14, num_kv_heads: 2, "
        "intermediate_size: 4864, max_positions: 2048}"
    )
    overrides = [
        f"steps={args.steps}",
        f"model.tiny={size}",
        f"model.device={args.device}",
        f"model.mixed_precision.enabled={'false' if args.quick else 'true'}",
        f"data.mixture.batch_size={args.prompts}",
        f"rollout.sampling.n={args.n}",
        f"rollout.sampling.max_new_tokens={args.max_new_tokens}",
        f"rollout.decode={decode}",
        "rollout.micro_batch_size=64",
        "rewards.routes.chat=smoke_letters",
        "rewards.extraction.on_missing_response=after_think",  # an untrained model: score text
        "grpo.micro_batch_size=8",
        f"strategy.name={strategy}",
        "strategy.track_conflicts=false" if strategy == "mixed" else "strategy.seed=0",
        "warmstart.sft.steps=0",
        "eval.prompts_per_domain=0",
        "logging.progress=false",
        "num_threads=0",
    ]
    return load_config(None, overrides)


def train(args: argparse.Namespace, strategy: str, device: torch.device) -> dict:
    """``--steps`` steps of ``strategy`` from the seeded initial weights: times and peak memory."""
    from mgs.train.builder import build_trainer
    from mgs.train.trainer import seed_everything

    cfg = config(args, strategy)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = build_trainer(cfg)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    rewards = []
    for step in range(args.steps):
        metrics = trainer.step(step).metrics
        for phase in PHASES:
            times[phase].append(metrics.get(f"time/{phase}", float("nan")))
        rewards.append(metrics["reward/mean"])
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    params = sum(p.numel() for p in trainer.policy.parameters())
    trainer.close()
    median = {phase: statistics.median(v[1:] or v) for phase, v in times.items()}  # skip warm-up
    return {"parameters": params, "seconds": median, "peak_bytes": peak, "rewards": rewards}


def decode_agreement(args: argparse.Namespace) -> dict:
    """Completions of the lean decode loop vs ``generate`` on the same prompts and weights."""
    import dataclasses

    from mgs.train.builder import build_trainer, rollout_backend

    trainer = build_trainer(config(args, "mixed", decode="generate"))
    prompts = [ex.prompt for ex in trainer.mixture.batch(0).examples]
    fast_cfg = config(args, "mixed", decode="fast")
    dtype = torch.bfloat16 if fast_cfg.model.mixed_precision.enabled else None
    fast = rollout_backend(fast_cfg, trainer.policy, trainer.tokenizer, dtype)
    out = {}
    for name, temperature in (("greedy", 0.0), ("sampled", 1.0)):
        sampling = dataclasses.replace(
            trainer.cfg.rollout.sampling,
            n=1 if temperature == 0 else args.n,
            temperature=temperature,
        )
        a = trainer.backend.generate(prompts, sampling, seed=7).completions
        b = fast.generate(prompts, sampling, seed=7).completions
        same = sum(x.completion_ids == y.completion_ids for x, y in zip(a, b))
        out[name] = {"identical": same, "of": len(a)}
    trainer.close()
    return out


def surgery_speed(args: argparse.Namespace, device: torch.device) -> dict:
    """``apply()`` vs the original per-tensor loop on the model's parameters on ``device``."""
    from mgs.surgery import GradientSurgeon
    from mgs.train.modeling import load_policy
    from surgery import _RecordOrders, domain_gradients, fill_domain_gradients, per_tensor_loop

    cfg = config(args, "mgs")
    model, _ = load_policy(cfg.model, device)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = domain_gradients(model.cpu(), 3, seed=0)
    model.to(device)
    grads = [{k: v.to(device) for k, v in g.items()} for g in grads]
    recorder = _RecordOrders("pcgrad")
    surgeon = GradientSurgeon(model, ["math", "if", "chat"], aggregator=recorder, seed=0)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tick

    applied, looped = [], []
    for _ in range(args.rounds):
        fill_domain_gradients(surgeon, model, grads)
        applied.append(timed(surgeon.apply))
        order_lists = recorder.orders.tolist()  # [M, K, K-1]; groups are the tensors here
        orders = {g.key: order_lists[m] for m, g in enumerate(surgeon.groups)}
        looped.append(timed(lambda orders=orders: per_tensor_loop(params, grads, orders)))
    a, b = statistics.median(applied[1:]), statistics.median(looped[1:])
    return {"apply_ms": 1e3 * a, "loop_ms": 1e3 * b, "speedup": b / a, "tensors": len(params)}


def estimate(args: argparse.Namespace, device: torch.device, parameters: int) -> dict:
    """``--estimate-memory``'s training peak for the smoke config (one rank, this GPU's size)."""
    from mgs.train.memory import Architecture, estimate_memory
    from mgs.train.modeling import load_policy

    cfg = config(args, "mgs")
    model, _ = load_policy(cfg.model, torch.device("cpu"))
    arch = Architecture.from_config(model.config.to_dict(), "the smoke model")
    gib = (
        torch.cuda.get_device_properties(device).total_memory / 2**30
        if device.type == "cuda"
        else 80
    )
    budget = estimate_memory(cfg, arch, None, world_size=1, gpu_gib=gib, title="smoke")
    return {"training_peak_bytes": budget.peak("training"), "lines": budget.lines()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mgs.models.loading import resolve_device

    device = resolve_device(args.device)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}")
    result: dict = {"device": str(device), "torch": torch.__version__}
    for strategy in ("mixed", "mgs"):
        result[strategy] = train(args, strategy, device)
        s = result[strategy]
        peak = f"{s['peak_bytes'] / 2**30:.2f} GiB" if s["peak_bytes"] else "n/a (CPU)"
        print(f"{strategy}: {s['parameters'] / 1e6:.0f}M parameters, peak memory {peak}")
        print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in s["seconds"].items()))
    result["estimate"] = estimate(args, device, result["mgs"]["parameters"])
    print("\n".join(result["estimate"]["lines"]))
    result["decode"] = decode_agreement(args)
    print(f"fast decode vs generate (identical completions): {result['decode']}")
    result["surgery"] = surgery_speed(args, device)
    s = result["surgery"]
    print(
        f"apply() {s['apply_ms']:.2f} ms vs per-tensor loop {s['loop_ms']:.1f} ms over "
        f"{s['tensors']} tensors: {s['speedup']:.1f}x (goal on a GPU: >= 50x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
