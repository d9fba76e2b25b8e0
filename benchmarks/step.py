"""Time per RL step and its breakdown, ``mixed`` against ``mgs``, on the embedded tiny default.

Run from the repository root::

    .venv/bin/python benchmarks/step.py               # 20 measured steps per strategy (~2.5 min)
    .venv/bin/python benchmarks/step.py --quick       # smoke run (< 1 min)
    .venv/bin/python benchmarks/step.py --steps 30 --warmup 3 --threads 2 --free-running

Two :class:`mgs.train.trainer.GRPOTrainer` are built from the tiny default config
(``src/mgs/tiny/tiny.yaml``) with the same seed and the same initial policy:

- ``mixed``: ``strategy.name=mixed strategy.track_conflicts=false`` (one plain backward buffer,
  clipping with ``clip_grad_norm_``);
- ``mgs``: the default (PCGrad inside every tensor, clipping folded into the surgery).

Both use the real default's rewards (math-verify, IFEval checkers and the tiny chat reward model,
trained once and cached in ``.mgs_cache/``) and, by default, the SFT warm-started policy the real
run starts RL from (cached too; ``--init random`` skips the warm-start). Steps are run
alternately (mixed, mgs, then mgs, mixed, ...) with the same step index, so both see the same
prompts and the same sampling seeds; each step's phases are read from the trainer's own
``time/*`` metrics (generation, rewards, logprobs, backward, surgery, optimizer, step).

By default the two runs are *paired*: before every step both policies are reset to the same
initial weights, so both generate exactly the same rollouts (keyed sampling) and get the same
rewards, and only the update differs (checked: the per-domain response lengths and rewards of the
two trainers must agree at every step). ``--free-running`` lets each policy train instead; the
rollouts then diverge after the first update and only per-phase medians are comparable.

Printed: the median (and interquartile range) of every phase for each strategy, and

- the MGS overhead on the step: (median mgs step - median mixed step) / median mixed step, and the
  median of the per-step paired ratios;
- the update-only overhead: the difference in backward + surgery + optimizer (the phases MGS
  changes) over the mixed step; generation and rewards do identical work in paired mode, so their
  differences are noise;
- the surgery phase alone as a share of the mgs step.

Target (issue 5): MGS adds at most 5% to the step time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

# As `mgs train` (src/mgs/cli.py): OpenMP threads that spin while waiting make torch crawl on a
# shared CPU. Set before torch is imported; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

PHASES = ["generation", "rewards", "logprobs", "backward", "surgery", "optimizer", "step"]
UPDATE_PHASES = ["backward", "surgery", "optimizer"]
TARGET = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="measured steps per strategy")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured steps per strategy first")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (tiny.yaml says 2; 1 is faster and far steadier on a shared box)",
    )
    p.add_argument(
        "--init",
        choices=["sft", "random"],
        default=None,
        help="initial policy: the cached SFT warm-start of the default (sft, default) or the "
        "random init (random, default with --quick)",
    )
    p.add_argument(
        "--chat-reward",
        choices=["rm", "letters"],
        default=None,
        help="chat domain's reward: the tiny reward model as in the default (rm, trained once and "
        "cached) or a cheap letter-fraction function (letters, default with --quick)",
    )
    p.add_argument(
        "--free-running",
        action="store_true",
        help="let both policies train (rollouts diverge) instead of resetting them every step",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 warm-up, 12 prompts")
    p.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    p.add_argument(
        "overrides", nargs="*", help="extra config overrides (key=value), applied to both"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
        args.overrides = ["data.mixture.batch_size=12", *args.overrides]
    if args.init is None:
        args.init = "random" if args.quick else "sft"
    if args.chat_reward is None:
        args.chat_reward = "letters" if args.quick else "rm"
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def letter_fraction(prompts, completions, **columns) -> list[float]:
    """``--chat-reward letters``: fraction of letters in the response (no model to train)."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def build_trainers(args: argparse.Namespace):
    from mgs.rewards.router import RewardRouter
    from mgs.tiny.warmstart import tiny_reward_model, warm_start_policy
    from mgs.train.builder import build_trainer
    from mgs.train.config import load_config
    from mgs.train.modeling import load_policy, resolve_device
    from mgs.train.trainer import seed_everything

    base = ["logging.progress=false", f"num_threads={args.threads}", *args.overrides]
    cfg = load_config(None, base)
    if args.chat_reward == "rm":
        rm_path = tiny_reward_model(cfg, print)  # cached in .mgs_cache/ after the first run
        base.append(f"rewards.reward_model.path={rm_path}")
    else:
        from mgs.rewards import register_reward

        register_reward("bench_letter_fraction")(letter_fraction)
        base.append("rewards.routes.chat=bench_letter_fraction")
    configs = {
        "mixed": load_config(
            None, [*base, "strategy.name=mixed", "strategy.track_conflicts=false"]
        ),
        "mgs": load_config(None, [*base, "strategy.name=mgs"]),
    }
    cfg = configs["mgs"]
    seed_everything(cfg.seed)
    device = resolve_device(cfg.model.device)
    policy, tokenizer = load_policy(cfg.model, device)
    if args.init == "sft":
        warm_start_policy(cfg, policy, tokenizer, device, print)
    initial = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    router = RewardRouter(cfg.rewards, [s.domain for s in cfg.data.sources])  # shared: stateless
    trainers = {}
    for name, c in configs.items():
        seed_everything(c.seed)
        trainers[name] = build_trainer(
            c, policy=copy.deepcopy(policy), tokenizer=tokenizer, router=router
        )
    warm_rewards(trainers["mgs"], router)
    return cfg, trainers, initial, router


def warm_rewards(trainer, router) -> None:
    """One well-formed sample per domain through the rewards, so that lazy imports (math-verify
    in its worker process, the reward model's first forward) do not land in a measured step."""
    examples = {ex.domain: ex for ex in trainer.mixture.batch(0).examples}
    text = "<think> x </think><response> \\boxed{1} </response>"
    router(
        list(examples),
        [ex.question for ex in examples.values()],
        [text] * len(examples),
        [dict(ex.reference) for ex in examples.values()],
    )


def quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def fingerprint(metrics: dict[str, float]) -> dict[str, float]:
    """What identical rollouts must share: per-domain response lengths and rewards."""
    keys = [k for k in metrics if k.startswith(("response_length/", "reward/")) and "time" not in k]
    return {k: round(metrics[k], 6) for k in sorted(keys) if k.endswith("/mean")}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()
    cfg, trainers, initial, router = build_trainers(args)
    built = time.perf_counter() - started
    names = list(trainers)
    times: dict[str, dict[str, list[float]]] = {n: {p: [] for p in PHASES} for n in names}
    same_rollouts: list[bool] = []
    lengths: list[float] = []
    total = args.warmup + args.steps
    print(
        f"tiny default: {cfg.data.mixture.batch_size} prompts x {cfg.rollout.sampling.n} rollouts, "
        f"max_new_tokens {cfg.rollout.sampling.max_new_tokens}, "
        f"{sum(p.numel() for p in trainers['mgs'].policy.parameters()):,} parameters, "
        f"{args.threads} thread(s) (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"init {args.init}, chat reward {args.chat_reward}, "
        f"{'free-running' if args.free_running else 'paired (policies reset every step)'}; "
        f"setup {built:.1f} s",
        flush=True,
    )
    try:
        for step in range(total):
            order = names if step % 2 == 0 else names[::-1]
            seen = {}
            for name in order:
                trainer = trainers[name]
                if not args.free_running:
                    trainer.policy.load_state_dict(initial)
                metrics = trainer.step(step).metrics
                seen[name] = fingerprint(metrics)
                if step >= args.warmup and name == "mgs":
                    per_domain = [v for k, v in metrics.items() if k.startswith("response_length/")]
                    lengths.append(sum(per_domain) / len(per_domain))
                if step >= args.warmup:
                    for phase in PHASES:
                        times[name][phase].append(metrics.get(f"time/{phase}", 0.0))
            tag = "warm-up" if step < args.warmup else "measured"
            line = "  ".join(
                f"{n} {times[n]['step'][-1]:6.2f} s" if step >= args.warmup else n for n in order
            )
            if step >= args.warmup:
                same_rollouts.append(seen["mixed"] == seen["mgs"])
            print(f"step {step:3d} ({tag}): {line}", flush=True)
    finally:
        for trainer in trainers.values():
            trainer.backend.close()
        router.close()
    return {
        "threads": args.threads,
        "init": args.init,
        "chat_reward": args.chat_reward,
        "paired": not args.free_running,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": cfg.data.mixture.batch_size,
        "n": cfg.rollout.sampling.n,
        "max_new_tokens": cfg.rollout.sampling.max_new_tokens,
        "times": times,
        "same_rollouts": same_rollouts,
        "response_length": statistics.median(lengths),
        "wall_s": time.perf_counter() - started,
        "loadavg_before": load_before,
        "loadavg": os.getloadavg(),
    }


def report(result: dict) -> None:
    times = result["times"]
    mixed, mgs = times["mixed"], times["mgs"]
    med = {n: {p: statistics.median(v) for p, v in t.items()} for n, t in times.items()}
    step_mixed = med["mixed"]["step"]
    print()
    print(f"median seconds per phase over {result['steps']} steps (p25-p75 in brackets)")
    print(f"{'phase':<11} {'mixed':>22} {'mgs':>22} {'mgs - mixed':>12} {'of mixed step':>14}")
    for phase in PHASES:
        cells = []
        for t in (mixed, mgs):
            lo, mid, hi = quantiles(t[phase])
            cells.append(f"{mid:7.3f} [{lo:6.3f}-{hi:6.3f}]")
        diff = med["mgs"][phase] - med["mixed"][phase]
        print(f"{phase:<11} {cells[0]:>22} {cells[1]:>22} {diff:+12.3f} {diff / step_mixed:+14.1%}")
    overhead = (med["mgs"]["step"] - step_mixed) / step_mixed
    paired = [(b - a) / a for a, b in zip(mixed["step"], mgs["step"])]
    upd = [sum(t[p][i] for p in UPDATE_PHASES) for t in (mixed, mgs) for i in range(len(t["step"]))]
    n = len(mixed["step"])
    upd_mixed, upd_mgs = upd[:n], upd[n:]
    update_overhead = (statistics.median(upd_mgs) - statistics.median(upd_mixed)) / step_mixed
    upd_lo, paired_update, upd_hi = quantiles(
        [(b - a) / m for a, b, m in zip(upd_mixed, upd_mgs, mixed["step"])]
    )
    share = statistics.median([s / t for s, t in zip(mgs["surgery"], mgs["step"])])
    surgery_extra = (med["mgs"]["surgery"] - med["mixed"]["surgery"]) / step_mixed
    lo, mid, hi = quantiles(paired)
    print()
    print(
        f"MGS overhead on the step (medians):        {overhead:+.1%}   "
        f"(per-step paired ratios: median {mid:+.1%}, p25-p75 {lo:+.1%} .. {hi:+.1%})"
    )
    print(
        f"update-only overhead (backward+surgery+optimizer, mgs - mixed, over the mixed step): "
        f"{update_overhead:+.1%}   (paired: median {paired_update:+.1%}, "
        f"p25-p75 {upd_lo:+.1%} .. {upd_hi:+.1%})"
    )
    print(
        f"surgery phase: mgs {med['mgs']['surgery'] * 1e3:.1f} ms vs mixed (clip only) "
        f"{med['mixed']['surgery'] * 1e3:.1f} ms = {surgery_extra:+.2%} of the mixed step; "
        f"share of the mgs step: {share:.2%}"
    )
    if result["paired"]:
        same = result["same_rollouts"]
        print(f"identical rollouts and rewards in both runs: {sum(same)}/{len(same)} steps")
    # The strategy only changes the update phases; in paired mode generation and rewards do the
    # same work in both runs, so the paired update-only figure is the estimate of MGS's cost and
    # the step-level figures carry the generation noise on top of it.
    estimate = paired_update if result["paired"] else update_overhead
    verdict = "met" if estimate <= TARGET else "NOT met"
    print(
        f"target (MGS adds <= {TARGET:.0%} to the step): {verdict}: MGS costs {estimate:+.1%} of "
        f"the step ({'paired' if result['paired'] else 'median'} update-only estimate; "
        f"step medians differ by {overhead:+.1%}, which includes generation noise)"
    )
    print(f"median response length: {result['response_length']:.1f} tokens")
    before = ", ".join(f"{x:.2f}" for x in result["loadavg_before"])
    after = ", ".join(f"{x:.2f}" for x in result["loadavg"])
    print(
        f"wall time {result['wall_s']:.0f} s; load average (1, 5, 15 min) before: {before}; "
        f"after: {after} (on {os.cpu_count()} CPUs)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
