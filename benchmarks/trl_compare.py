"""Step throughput (completions per second) of ``mgs`` against TRL's ``GRPOTrainer`` on CPU.

Run from the repository root (TRL is a benchmark-only dependency)::

    .venv/bin/pip install trl          # check first: pip install --dry-run trl must not touch torch
    .venv/bin/python benchmarks/trl_compare.py            # 12 measured steps per trainer (~2.5 min)
    .venv/bin/python benchmarks/trl_compare.py --quick    # smoke run (< 1 min)

Three trainers start from the same randomly initialised tiny policy (the architecture and character
tokenizer of ``src/mgs/tiny/tiny.yaml``, built by :mod:`mgs.tiny.model`) and train on the same
prompts (the tiny default's mixture, rendered with its template), step for step:

- ``mgs``: our :class:`~mgs.train.trainer.GRPOTrainer` with the default strategy (MGS surgery);
- ``mixed``: ours with ``strategy.name=mixed strategy.track_conflicts=false`` (plain backward);
- ``trl``: ``trl.GRPOTrainer`` on an in-memory ``datasets.Dataset`` of the same prompts, in order.

What is held equal: prompts per step (``--batch``, 24) and group size (``--n``, 4), so the same
completions per step (96); generation length: every completion is exactly ``--max-new-tokens``
(96) tokens in all three, because EOS is masked until that length (``min_new_tokens``: TRL's
``generation_kwargs``; ours through a benchmark-side wrapper of the HF backend's generation
config) and there are no stop strings (``rollout.sampling.stop=[]``); sampling at temperature 1.0,
no top-p / top-k; one generation per optimizer step and one optimizer step per batch
(``steps_per_generation`` = ``gradient_accumulation_steps``, ``num_iterations=1``: TRL then skips
the old log-probs as ours does); the loss: clipped surrogate with eps 0.2, no KL (``beta=0``:
no reference model in either), no entropy bonus, token-mean over the whole batch (TRL ``dapo``),
group-std-normalised advantages; AdamW (lr 1e-4, no weight decay), grad-norm clipping at 1.0;
micro-batches of the same size (ours: one per domain, 32 rows; TRL: ``per_device_train_batch_size``
32 x 3 accumulation steps); float32, no gradient checkpointing (TRL's default is on), no vLLM, no
torch.compile; the same reward, a cheap Python function (fraction of letters in the completion),
registered as an ``mgs`` reward and passed to TRL as a reward function; the same process, so the
same number of CPU threads (``--threads``).

Measured alternately in one process: TRL drives its own ``train()`` loop and, from a callback at the
end of every ``--block`` TRL steps, the same number of steps of ``mgs`` and ``mixed`` run (their
order alternating). A TRL step is the wall time between two of these points minus the time spent
in our steps: it includes everything TRL does for a step (data loading, generation, rewards,
forward / backward, optimizer, its metrics and logging). Our step is ``trainer.step(i)``'s wall
time. The first ``--warmup`` steps of each are not counted. Printed: median seconds per step (and
the interquartile range), completions per second (completions per step / median step time, and
total completions / total time), generation's share, and the ratio ours / TRL.

Target (issue 7): ours at least 1.5x TRL's completions per second.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# As `mgs train` (src/mgs/cli.py): OpenMP threads that spin while waiting make torch crawl on a
# shared CPU. Set before torch is imported; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

TARGET = 1.5
REWARD_NAME = "bench_letter_fraction"


def letter_fraction(prompts, completions, **columns) -> list[float]:
    """The benchmark's reward for every trainer: fraction of letters in the text (cheap)."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12, help="measured steps per trainer")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps per trainer first")
    p.add_argument("--block", type=int, default=2, help="steps of one trainer before switching")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (all trainers)")
    p.add_argument("--batch", type=int, default=24, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="completions per prompt (group size)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="tokens per completion")
    p.add_argument(
        "--micro-batch", type=int, default=0, help="rows per backward (0: one per domain, as ours)"
    )
    p.add_argument("--no-mixed", action="store_true", help="skip ours with strategy mixed")
    p.add_argument(
        "--decode",
        choices=["generate", "fast", "auto"],
        default="generate",
        help="our rollout.decode (the hf backend's decode loop)",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 12 prompts, 48 tokens, 2 measured steps"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.block = 2, 1, 1
        args.batch, args.max_new_tokens = min(args.batch, 12), min(args.max_new_tokens, 48)
    if args.steps < 1 or args.warmup < 0 or args.block < 1:
        p.error("--steps and --block must be >= 1, --warmup >= 0")
    return args


# ---------------------------------------------------------------------------------------- ours


def our_trainers(args: argparse.Namespace, policy, tokenizer) -> dict:
    from mgs.rewards import register_reward
    from mgs.train.builder import build_trainer
    from mgs.train.config import load_config
    from mgs.train.trainer import seed_everything

    register_reward(REWARD_NAME)(letter_fraction)
    common = [
        "logging.progress=false",
        f"num_threads={args.threads}",
        f"data.mixture.batch_size={args.batch}",
        f"rollout.sampling.n={args.n}",
        f"rollout.sampling.max_new_tokens={args.max_new_tokens}",
        "rollout.sampling.stop=[]",
        "rollout.sampling.temperature=1.0",
        f"rollout.micro_batch_size={args.batch * args.n}",
        f"rollout.decode={args.decode}",
        "rewards.routes={math: %s, if: %s, chat: %s}" % ((REWARD_NAME,) * 3),
        "rewards.extraction.on_missing_response=after_think",  # the whole text, as TRL's reward
        "grpo.loss.kl_coef=0.0",
        "grpo.loss.entropy_coef=0.0",
        "grpo.loss.clip_eps_low=0.2",
        "grpo.loss.clip_eps_high=0.2",
        "grpo.loss.loss_agg=token-mean",
        "grpo.mini_batches=1",
        "grpo.epochs=1",
        "optim.lr=1e-4",
        "optim.weight_decay=0.0",
        "optim.grad_clip=1.0",
        "optim.schedule=constant",
    ]
    if args.micro_batch:
        common.append(f"grpo.micro_batch_size={args.micro_batch}")
    variants = {"mgs": ["strategy.name=mgs"]}
    if not args.no_mixed:
        variants["mixed"] = ["strategy.name=mixed", "strategy.track_conflicts=false"]
    trainers = {}
    for name, extra in variants.items():
        cfg = load_config(None, [*common, *extra])
        seed_everything(cfg.seed)
        trainer = build_trainer(cfg, policy=copy.deepcopy(policy), tokenizer=tokenizer)
        force_length(trainer.backend)
        trainers[name] = trainer
    return trainers


def force_length(backend) -> None:
    """Make every completion exactly ``max_new_tokens`` long: EOS masked until then (HF's
    ``min_new_tokens``), like TRL's ``generation_kwargs`` below. Benchmark-side only."""
    build = backend._generation_config

    def forced(cfg, *, keyed: bool = False):
        gen = build(cfg, keyed=keyed)
        gen.min_new_tokens = cfg.max_new_tokens
        return gen

    backend._generation_config = forced
    if backend.decode_loop == "fast":
        _force_length_fast()


def _force_length_fast() -> None:
    """``force_length`` for the fast decode loop: EOS logits at -inf before the sampler (what
    ``min_new_tokens`` does in generate) and no EOS stop. Patches the module's name once."""
    from mgs.rl import hf_generate

    if getattr(hf_generate.fast_decode, "forced_length", False):
        return
    loop = hf_generate.fast_decode

    def forced(model, input_ids, attention_mask, *, eos_ids, logits_processor=None, **kw):
        eos = list(eos_ids)

        def masked(ids, scores):
            scores = scores.clone()
            scores[:, eos] = float("-inf")
            return scores if logits_processor is None else logits_processor(ids, scores)

        return loop(model, input_ids, attention_mask, eos_ids=[], logits_processor=masked, **kw)

    forced.forced_length = True
    hf_generate.fast_decode = forced


def micro_layout(cfg, rows: int) -> tuple[int, int]:
    """(rows per backward, backward passes) of our update: one domain's rows per micro-batch,
    split at ``grpo.micro_batch_size``."""
    domains = len(cfg.data.sources)
    per_domain = rows // domains
    size = min(per_domain, cfg.grpo.micro_batch_size)
    return size, rows // size


# ---------------------------------------------------------------------------------------- TRL


class Timer:
    """The wall time of TRL's steps, with our steps run (and subtracted) every ``block`` steps."""

    def __init__(self, run_ours) -> None:
        self.run_ours = run_ours
        self.trl: list[float] = []
        self.mark = time.perf_counter()

    def callback(self, block: int):
        from transformers import TrainerCallback

        timer = self

        class Interleave(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.mark = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.trl.append(time.perf_counter() - timer.mark)
                if state.global_step % block == 0 or state.global_step == state.max_steps:
                    timer.run_ours(len(timer.trl))
                timer.mark = time.perf_counter()

        return Interleave()


def trl_trainer(args, policy, tokenizer, prompts, micro, accumulation, out_dir, timer):
    import trl
    from datasets import Dataset

    config = trl.GRPOConfig(
        output_dir=str(out_dir),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,  # = steps_per_generation: one optimizer step
        num_generations=args.n,  # per generation, as ours
        max_completion_length=args.max_new_tokens,
        generation_kwargs={"min_new_tokens": args.max_new_tokens},  # exactly that many tokens
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        num_iterations=1,
        beta=0.0,
        epsilon=0.2,
        loss_type="dapo",  # token-mean over the whole (accumulated) batch, as ours
        scale_rewards="group",
        learning_rate=1e-4,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        use_vllm=False,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        torch_compile=False,
        use_cpu=True,
        shuffle_dataset=False,  # the prompts in our batch order
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        logging_steps=1,
        log_completions=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    dataset = Dataset.from_dict({"prompt": prompts})
    trainer = trl.GRPOTrainer(
        model=copy.deepcopy(policy),
        reward_funcs=letter_fraction,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer.callback(args.block)],
    )
    return trainer


class GenerationClock:
    """Seconds spent in a model's ``generate`` (wraps the instance's method)."""

    def __init__(self, model) -> None:
        self.seconds: list[float] = []
        inner = model.generate

        def generate(*a, **kw):
            start = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.seconds.append(time.perf_counter() - start)

        model.generate = generate


# ---------------------------------------------------------------------------------------- run


def quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def run(args: argparse.Namespace) -> dict:
    import transformers
    import trl

    from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer
    from mgs.train.config import load_config

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    load_before = os.getloadavg()
    base = load_config(None, [f"data.mixture.batch_size={args.batch}"])
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_policy(tokenizer, base.model.tiny)  # the same init for all three
    ours = our_trainers(args, policy, tokenizer)
    first = next(iter(ours.values()))
    total = args.warmup + args.steps
    # TRL's dataset: our prompts of steps 0 .. total-1, in order (ours deals them by domain).
    prompts = [
        ex.prompt
        for step in range(total)
        for ex in first.local_prompts(first.mixture.batch(step))[0]
    ]
    rows = args.batch * args.n
    micro, accumulation = micro_layout(first.cfg, rows)
    if args.micro_batch:
        micro, accumulation = args.micro_batch, rows // args.micro_batch
    if micro * accumulation != rows:
        raise SystemExit(f"{rows} completions do not split into micro-batches of {micro}")
    ours_steps: dict[str, list[dict[str, float]]] = {name: [] for name in ours}
    threads_seen: set[int] = set()

    def run_ours(trl_done: int) -> None:
        names = list(ours)
        block_index = (trl_done - 1) // args.block
        order = names if block_index % 2 == 0 else names[::-1]
        for name in order:
            trainer = ours[name]
            while len(ours_steps[name]) < trl_done:
                step = len(ours_steps[name])
                tick = time.perf_counter()
                metrics = trainer.step(step).metrics
                wall = time.perf_counter() - tick
                lengths = [v for k, v in metrics.items() if k.startswith("response_length/")]
                ours_steps[name].append(
                    {"wall": wall, "generation": metrics["time/generation"], "length": min(lengths)}
                )
        threads_seen.add(torch.get_num_threads())
        done = ", ".join(f"{n} {ours_steps[n][-1]['wall']:.2f} s" for n in order)
        print(f"after TRL step {trl_done} ({timer.trl[-1]:.2f} s): {done}", flush=True)

    timer = Timer(run_ours)
    trl_logs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = trl_trainer(args, policy, tokenizer, prompts, micro, accumulation, out_dir, timer)
        from transformers import TrainerCallback

        class Logs(TrainerCallback):
            def on_log(self, a, state, control, logs=None, **kwargs):
                trl_logs.append(dict(logs or {}))

        trainer.add_callback(Logs())
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for noisy in (PrinterCallback, ProgressCallback):  # TRL's per-step log lines
            trainer.remove_callback(noisy)
        clock = GenerationClock(trainer.model)
        setup = time.perf_counter() - started
        print(
            f"setup {setup:.1f} s; {args.batch} prompts x {args.n} = {rows} completions per step, "
            f"{args.max_new_tokens} tokens each; micro-batches {accumulation} x {micro}; "
            f"{args.threads} thread(s) (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}); "
            f"TRL {trl.__version__}, transformers "
            f"{transformers.__version__}, torch {torch.__version__}",
            flush=True,
        )
        trainer.train()
    measured = {
        name: [s["wall"] for s in steps[args.warmup :]] for name, steps in ours_steps.items()
    }
    measured["trl"] = timer.trl[args.warmup :]
    generation = {
        name: [s["generation"] for s in steps[args.warmup :]] for name, steps in ours_steps.items()
    }
    generation["trl"] = clock.seconds[args.warmup :]
    lengths = {name: [s["length"] for s in steps] for name, steps in ours_steps.items()}
    lengths["trl"] = [
        log["completions/min_length"] for log in trl_logs if "completions/min_length" in log
    ]
    lengths["trl_max"] = [
        log["completions/max_length"] for log in trl_logs if "completions/max_length" in log
    ]
    return {
        "trl_version": trl.__version__,
        "rows": rows,
        "micro": micro,
        "accumulation": accumulation,
        "threads": sorted(threads_seen | {torch.get_num_threads()}),
        "steps": args.steps,
        "warmup": args.warmup,
        "block": args.block,
        "max_new_tokens": args.max_new_tokens,
        "seconds": measured,
        "generation": generation,
        "lengths": lengths,
        "wall_s": time.perf_counter() - started,
        "loadavg_before": load_before,
        "loadavg": os.getloadavg(),
    }


def report(result: dict) -> None:
    rows = result["rows"]
    seconds = result["seconds"]
    print()
    print(
        f"{rows} completions x {result['max_new_tokens']} tokens per step; "
        f"{result['steps']} measured steps each (p25-p75 in brackets)"
    )
    print(
        f"{'trainer':<8} {'s/step':>24} {'completions/s':>14} {'(total/time)':>13} "
        f"{'generation s':>13} {'rest s':>7} {'vs TRL':>7}"
    )
    cps = {}
    for name, values in seconds.items():
        lo, mid, hi = quantiles(values)
        cps[name] = rows / mid
    for name, values in seconds.items():
        lo, mid, hi = quantiles(values)
        aggregate = rows * len(values) / sum(values)
        gen = statistics.median(result["generation"][name]) if result["generation"][name] else 0
        print(
            f"{name:<8} {mid:8.2f} [{lo:6.2f}-{hi:6.2f}] {cps[name]:14.1f} {aggregate:13.1f} "
            f"{gen:13.2f} {mid - gen:7.2f} {cps[name] / cps['trl']:6.2f}x"
        )
    lengths = result["lengths"]
    exact = all(
        all(v == result["max_new_tokens"] for v in lengths[k]) for k in lengths if lengths[k]
    )
    print(
        f"every completion exactly {result['max_new_tokens']} tokens in every trainer: "
        f"{'yes' if exact else 'NO: ' + json.dumps(lengths)}"
    )
    print(f"CPU threads during the run: {result['threads']}")
    for name in seconds:
        if name == "trl":
            continue
        ratio = cps[name] / cps["trl"]
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"target (ours >= {TARGET}x TRL), ours {name}: {ratio:.2f}x, {verdict}")
    before = ", ".join(f"{x:.2f}" for x in result["loadavg_before"])
    after = ", ".join(f"{x:.2f}" for x in result["loadavg"])
    print(
        f"wall time {result['wall_s']:.0f} s; load average (1, 5, 15 min) before: {before}; "
        f"after: {after} (on {os.cpu_count()} CPUs)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trl  # noqa: F401
    except ImportError:
        print("TRL is not installed: .venv/bin/pip install trl (benchmark-only dependency)")
        return 2
    result = run(args)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
