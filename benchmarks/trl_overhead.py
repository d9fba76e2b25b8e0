"""What MGS costs inside TRL: seconds per step of ``MGSGRPOTrainer`` vs plain ``trl.GRPOTrainer``.

Run from the repository root (TRL: ``pip install 'mgs[trl]'``, which ``make setup`` installs)::

    .venv/bin/python benchmarks/trl_overhead.py            # 16 measured steps per trainer (~5-9 min)
    .venv/bin/python benchmarks/trl_overhead.py --quick    # smoke run (< 1 min; noise)

Three trainers start from the same randomly initialised tiny policy (the architecture of the tiny
default, ``src/mgs/configs/tiny.yaml``, and its character tokenizer) and train on the same prompts
of three domains (math, if, chat: one dataset with a ``domain`` column):

- ``trl``: ``trl.GRPOTrainer``;
- ``mgs``: ``MGSGRPOTrainer(surgery="mgs")``: each micro-batch split by domain into the surgeon,
  PCGrad per tensor, clipping by the surgeon;
- ``mixed``: ``MGSGRPOTrainer(surgery="mixed")``: the same split, the sum (TRL's update), to tell
  the cost of the split from the cost of the surgery;
- ``trl-b``: a second ``trl.GRPOTrainer``, identical to ``trl``: the control (noise floor).

Held equal: 24 prompts x 4 completions per step, every completion exactly ``--max-new-tokens`` (96)
tokens (EOS masked until then: ``generation_kwargs={"min_new_tokens": ...}``), so every trainer
does the same arithmetic whatever its weights; micro-batches of 32 rows, 3 accumulated per
optimizer step (one generation per step); loss ``dapo``, no KL, AdamW, grad-norm clipping at
1.0; float32, no gradient checkpointing; a cheap Python reward per domain; one process, the same
CPU threads (``--threads``).

Timing: each trainer runs its own unmodified ``train()`` loop in a thread of its own, and the
threads take turns step by step (a baton passed in ``on_step_end``; the order of the trainers
alternates each round), so they run under the same machine load and never at the same time. A
step runs from ``on_step_begin`` to ``on_step_end``: generation, rewards, forward and backward of
every micro-batch, the surgery (or TRL's clipping) and the optimizer step. Each step is timed on
two clocks: wall time, and the CPU time of the trainer's thread (``time.thread_time``; with one
torch thread all the arithmetic runs on it). On this shared 2-core machine (load average 5-9)
wall time mostly measures the other jobs: a second plain TRL trainer (``trl-b``, the control)
differs from ``trl`` by several percent while doing the same work. CPU time is what the step
costs. Generation is timed the same way by wrapping the model's ``generate``;
"rest" is the step minus generation. The first ``--warmup`` steps are not counted. Printed: per
clock, median per step (interquartile range), the overhead vs ``trl`` from the medians and the
median of the paired per-step ratios; the surgery's own time (``surgery/time_s``).

Whole steps carry the noise of generation and of the machine; what MGS adds is in the update. So,
after the runs, the update alone (forward and backward of one step's micro-batches, then TRL's
clipping or the surgery) is timed TRL's way and MGS's way on the same micro-batches and weights,
alternately (``--update-reps`` times): the verdict is the paired difference in CPU time over the
median CPU time of a TRL step.

Target (issue 14): MGS adds at most 5% to a step.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mgs train`; set before torch loads
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

TARGET = 0.05
DOMAINS = {"math": "tiny_math", "if": "tiny_if", "chat": "tiny_chat"}


def letter_fraction(prompts, completions, **kwargs) -> list[float]:
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=16, help="measured steps per trainer")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured steps per trainer first")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=24, help="prompts per step")
    p.add_argument("--n", type=int, default=4, help="completions per prompt")
    p.add_argument("--micro", type=int, default=32, help="rows per micro-batch")
    p.add_argument("--max-new-tokens", type=int, default=96, help="tokens per completion")
    p.add_argument("--no-mixed", action="store_true", help="skip MGSGRPOTrainer with the sum")
    p.add_argument(
        "--no-control", action="store_true", help="skip the second plain TRL trainer (noise floor)"
    )
    p.add_argument(
        "--update-reps", type=int, default=20, help="repetitions of the update-only timing"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 measured steps, 48 tokens")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.max_new_tokens, args.update_reps = 2, 1, 48, 4
    rows = args.batch * args.n
    if rows % args.micro:
        p.error(f"{rows} completions per step do not split into micro-batches of {args.micro}")
    return args


class Baton:
    """Lets one trainer thread run a step at a time, in an order that alternates each round."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.cond = threading.Condition()
        self.round, self.index = 0, 0
        self.done: set[str] = set()

    def current(self) -> str:
        order = self.names if self.round % 2 == 0 else self.names[::-1]
        return order[self.index]

    def wait(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.current() == name)

    def pass_on(self, finished: bool = False, name: str = "") -> None:
        with self.cond:
            if finished:
                self.done.add(name)
            for _ in range(2 * len(self.names)):
                self.index += 1
                if self.index == len(self.names):
                    self.round, self.index = self.round + 1, 0
                if self.current() not in self.done or len(self.done) == len(self.names):
                    break
            self.cond.notify_all()


def timing_callback(name: str, baton: Baton, steps: list[dict], clock):
    """Times each step (wall and this thread's CPU time), then hands the baton on."""
    from transformers import TrainerCallback

    class Turns(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            baton.wait(name)

        def on_step_begin(self, args, state, control, **kwargs):
            self.wall, self.cpu = time.perf_counter(), time.thread_time()

        def on_step_end(self, args, state, control, **kwargs):
            gen_wall, gen_cpu = clock.take()
            steps.append(
                {
                    "wall": time.perf_counter() - self.wall,
                    "cpu": time.thread_time() - self.cpu,
                    "gen_wall": gen_wall,
                    "gen_cpu": gen_cpu,
                }
            )
            if state.global_step < state.max_steps:
                baton.pass_on()
                baton.wait(name)

        def on_train_end(self, args, state, control, **kwargs):
            baton.pass_on(finished=True, name=name)

    return Turns()


class GenerationClock:
    """Wall and CPU seconds spent in the model's ``generate`` (wraps the instance's method)."""

    def __init__(self, model) -> None:
        self.wall = self.cpu = 0.0
        inner = model.generate

        def generate(*a, **kw):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return inner(*a, **kw)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += time.thread_time() - cpu

        model.generate = generate

    def take(self) -> tuple[float, float]:
        out = (self.wall, self.cpu)
        self.wall = self.cpu = 0.0
        return out


def build(args, name: str, policy, tokenizer, dataset, out_dir, baton, steps):
    import transformers
    import trl

    from mgs.integrations.trl import MGSGRPOTrainer, domain_rewards

    config = trl.GRPOConfig(
        output_dir=os.path.join(out_dir, name),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.batch * args.n // args.micro,
        num_generations=args.n,
        max_completion_length=args.max_new_tokens,
        generation_kwargs={"min_new_tokens": args.max_new_tokens},
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        loss_type="dapo",
        learning_rate=1e-4,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    kwargs = {
        "model": copy.deepcopy(policy),
        "reward_funcs": domain_rewards({d: letter_fraction for d in DOMAINS}),
        "args": config,
        "train_dataset": dataset,
        "processing_class": tokenizer,
    }
    if name.startswith("trl"):
        trainer = trl.GRPOTrainer(**kwargs)
    else:
        trainer = MGSGRPOTrainer(**kwargs, surgery=name)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.add_callback(timing_callback(name, baton, steps, GenerationClock(trainer.model)))
    return trainer


def run(args: argparse.Namespace) -> dict:
    import transformers
    import trl
    from datasets import Dataset

    from mgs.data.generators import generate
    from mgs.tiny.config import TinyModelConfig
    from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_policy(
        tokenizer,
        TinyModelConfig(
            hidden_size=96, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=192
        ),
    )
    per_domain = (args.warmup + args.steps) * args.batch
    tasks = {d: generate(source, per_domain, 0) for d, source in DOMAINS.items()}
    rows = [
        {"prompt": f"User: {t.question}\nAssistant:", "domain": d}
        for d in DOMAINS
        for t in tasks[d]
    ]
    dataset = Dataset.from_list(rows)
    names = ["trl", "mgs"]
    names += [] if args.no_mixed else ["mixed"]
    names += [] if args.no_control else ["trl-b"]
    baton = Baton(names)
    steps: dict[str, list[dict]] = {name: [] for name in names}
    errors: list[BaseException] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        trainers = {
            n: build(args, n, policy, tokenizer, dataset, out_dir, baton, steps[n]) for n in names
        }

        def train(name: str) -> None:
            try:
                trainers[name].train()
            except BaseException as exc:  # re-raised from the main thread
                errors.append(exc)
                baton.pass_on(finished=True, name=name)

        threads = [threading.Thread(target=train, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    surgery = [
        log["surgery/time_s"]
        for log in trainers["mgs"].state.log_history[args.warmup :]
        if "surgery/time_s" in log
    ]
    update = update_only(trainers["mgs"], args.update_reps) if args.update_reps else {}
    return {
        "update": update,
        "names": names,
        "steps": {n: s[args.warmup :] for n, s in steps.items()},
        "surgery_s": surgery,
        "buffers": list(trainers["mgs"].surgeon.buffers.shape),
        "versions": [trl.__version__, transformers.__version__, torch.__version__],
        "load": [load_before, os.getloadavg()],
        "wall_s": time.perf_counter() - started,
    }


def update_only(trainer, reps: int) -> dict[str, list[dict[str, float]]]:
    """The update of one step, TRL's way and MGS's way, on the same micro-batches and weights.

    The micro-batches are the MGS trainer's last generation (TRL's buffered inputs). ``trl``: for
    each micro-batch TRL's ``compute_loss`` and one backward, then TRL's clipping
    (``accelerator.clip_grad_norm_``); ``mgs``: the trainer's ``compute_loss`` (split by domain,
    one backward per domain into the surgeon), then the surgery with clipping. No optimizer step
    (the same in both), so the weights never change. Alternating, ``reps`` times each.
    """
    import trl

    from mgs.integrations.trl_split import DOMAIN_KEY

    model = trainer.model_wrapped
    trainer.model.train()
    batches = list(trainer._buffered_inputs)  # a TRL internal: the generation's micro-batches
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def plain() -> None:
        for inputs in batches:
            loss = trl.GRPOTrainer.compute_loss(
                trainer, model, {k: v for k, v in inputs.items() if k != DOMAIN_KEY}
            )
            trainer.accelerator.backward(loss)
        trainer.accelerator.clip_grad_norm_(params, trainer.args.max_grad_norm)
        trainer.model.zero_grad()

    def mgs() -> None:
        for inputs in batches:
            trainer.compute_loss(model, inputs)
        trainer._clip_grad_norm(model)
        trainer._mgs_applied = False  # no optimizer step follows here
        trainer.model.zero_grad()

    runs = {"trl": plain, "mgs": mgs}
    out: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for rep in range(reps + 1):
        for name in list(runs) if rep % 2 == 0 else list(runs)[::-1]:
            wall, cpu = time.perf_counter(), time.thread_time()
            runs[name]()
            if rep:  # the first round warms up
                out[name].append(
                    {"wall": time.perf_counter() - wall, "cpu": time.thread_time() - cpu}
                )
    return out


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def overheads(result: dict, clock: str) -> dict[str, tuple[float, float]]:
    """Per trainer: (overhead vs trl from the medians, median of the paired per-step ratios)."""
    steps = result["steps"]
    base = [s[clock] for s in steps["trl"]]
    out = {}
    for name in result["names"]:
        mine = [s[clock] for s in steps[name]]
        paired = statistics.median(a / b for a, b in zip(mine, base)) - 1
        out[name] = (statistics.median(mine) / statistics.median(base) - 1, paired)
    return out


def report(args: argparse.Namespace, result: dict) -> None:
    steps = result["steps"]
    trl_v, tf_v, torch_v = result["versions"]
    print(
        f"\n{args.batch * args.n} completions x {args.max_new_tokens} tokens per step, "
        f"micro-batches of {args.micro}, 3 domains; {args.steps} measured steps per trainer; "
        f"{args.threads} thread(s); trl {trl_v}, transformers {tf_v}, torch {torch_v}"
    )
    for clock, title in (("wall", "wall seconds"), ("cpu", "CPU seconds of the trainer's thread")):
        print(f"\n{title} per step (p25-p75); overhead vs trl from the medians / paired per step")
        print(
            f"{'trainer':<7} {'step':>24} {'overhead':>9} {'paired':>8} "
            f"{'generation':>11} {'rest':>7} {'rest overhead':>14}"
        )
        over = overheads(result, clock)
        rest_base = statistics.median(s[clock] - s[f"gen_{clock}"] for s in steps["trl"])
        for name in result["names"]:
            lo, mid, hi = quartiles([s[clock] for s in steps[name]])
            gen = statistics.median(s[f"gen_{clock}"] for s in steps[name])
            rest = statistics.median(s[clock] - s[f"gen_{clock}"] for s in steps[name])
            print(
                f"{name:<7} {mid:7.3f} ({lo:6.3f} - {hi:6.3f}) {over[name][0]:+9.1%} "
                f"{over[name][1]:+8.1%} {gen:11.3f} {rest:7.3f} {rest / rest_base - 1:+14.1%}"
            )
    if result["surgery_s"]:
        surgery = statistics.median(result["surgery_s"])
        k, n = result["buffers"]
        share = surgery / statistics.median(s["wall"] for s in steps["mgs"])
        print(
            f"\nsurgery (apply + summary; {k} domain buffers of {n} elements): median "
            f"{surgery * 1e3:.1f} ms = {share:.2%} of an mgs step (wall)"
        )
    cpu = overheads(result, "cpu")
    wall = overheads(result, "wall")
    update = result["update"]
    if update:
        print(
            f"\nupdate only (the same {args.batch * args.n // args.micro} micro-batches and "
            f"weights, {len(update['trl'])} alternating repetitions): forward + backward + "
            "clipping / surgery"
        )
        step_cpu = statistics.median(s["cpu"] for s in steps["trl"])
        step_wall = statistics.median(s["wall"] for s in steps["trl"])
        for clock, step in (("cpu", step_cpu), ("wall", step_wall)):
            t = [r[clock] for r in update["trl"]]
            m = [r[clock] for r in update["mgs"]]
            paired = statistics.median(a - b for a, b in zip(m, t))
            print(
                f"  {clock:<4} trl {statistics.median(t):.3f} s, mgs {statistics.median(m):.3f} s: "
                f"mgs - trl {paired:+.3f} s paired ({paired / statistics.median(t):+.1%} of the "
                f"update, {paired / step:+.1%} of a TRL step)"
            )
    if "trl-b" in result["names"]:
        print(
            f"noise floor (trl-b, a second plain TRL trainer, vs trl): CPU {cpu['trl-b'][0]:+.1%} "
            f"(paired {cpu['trl-b'][1]:+.1%}), wall {wall['trl-b'][0]:+.1%} "
            f"(paired {wall['trl-b'][1]:+.1%})"
        )
    print(
        f"whole steps, mgs vs trl: CPU time {cpu['mgs'][0]:+.1%} (paired {cpu['mgs'][1]:+.1%}), "
        f"wall {wall['mgs'][0]:+.1%} (paired {wall['mgs'][1]:+.1%})"
    )
    if update:
        extra = statistics.median(
            a["cpu"] - b["cpu"] for a, b in zip(update["mgs"], update["trl"])
        ) / statistics.median(s["cpu"] for s in steps["trl"])
        verdict = "met" if extra <= TARGET else "NOT met"
        print(
            f"target (MGS adds <= {TARGET:.0%} to a TRL step): {extra:+.1%} of the step's CPU "
            f"time (update-only, paired), {verdict}"
        )
    (b1, b5, b15), (a1, a5, a15) = result["load"]
    print(
        f"wall {result['wall_s']:.0f} s; load average before {b1:.2f} {b5:.2f} {b15:.2f}, "
        f"after {a1:.2f} {a5:.2f} {a15:.2f} (on {os.cpu_count()} CPUs)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trl  # noqa: F401
    except ImportError:
        print("TRL is not installed: .venv/bin/pip install 'mgs[trl]'")
        return 2
    result = run(args)
    report(args, result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
