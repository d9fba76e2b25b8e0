"""``run_training``: warm-start -> held-out eval -> GRPO -> held-out eval -> saved policy."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mgs.data.pipeline import load_eval_prompts
from mgs.train.checkpoint import latest_checkpoint, load_state
from mgs.train.config import TINY_REWARD_MODEL, TrainConfig
from mgs.train.distributed import DistContext, barrier, distributed_session, gather_objects
from mgs.train.evaluate import evaluate_domains, format_table
from mgs.train.metrics import MetricsWriter, truncate_metrics
from mgs.train.modeling import load_policy_for, resolve_device
from mgs.train.trainer import (
    GRPOTrainer,
    default_run_dir,
    prepare_run_dir,
    seed_everything,
    train_loop,
    write_summary,
)
from mgs.train.warmstart import tiny_reward_model, warm_start_policy

log = logging.getLogger(__name__)


def run_training(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    echo: Callable[[str], None] = print,
    *,
    resume: bool = False,
) -> dict[str, Any]:
    """Train as configured; returns (and writes to ``run_dir/summary.json``) the results.

    ``resume``: continue ``run_dir`` from its latest checkpoint (the config is the run's own).
    """
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars between our own output
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(run_dir or cfg.logging.run_dir or default_run_dir(cfg))
    seed_everything(cfg.seed)
    device = resolve_device(cfg.model.device)
    with distributed_session(cfg.distributed, device) as ctx:
        return _train(cfg, run_dir, ctx, device, echo, resume, started)


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    ctx: DistContext,
    device: torch.device,
    echo: Callable[[str], None],
    resume: bool,
    started: float,
) -> dict[str, Any]:
    """The body of :func:`run_training`, inside the run's process group (if any)."""
    run_dir = Path(gather_objects(str(run_dir))[0])  # every rank uses rank 0's (its timestamp)
    if not ctx.is_main:
        echo = _silent
    timings: dict[str, float] = {}
    if ctx.enabled and not ctx.is_main:
        barrier()  # let rank 0 fill the warm-start caches first

    tick = time.perf_counter()
    if (
        cfg.rewards.reward_model.path == TINY_REWARD_MODEL
        and "reward_model" in cfg.rewards.routes.values()
    ):
        rm_path = tiny_reward_model(cfg, echo)
        cfg = dataclasses.replace(
            cfg,
            rewards=dataclasses.replace(
                cfg.rewards,
                reward_model=dataclasses.replace(cfg.rewards.reward_model, path=str(rm_path)),
            ),
        )
    timings["reward_model"] = time.perf_counter() - tick
    if not resume and ctx.is_main:
        prepare_run_dir(cfg, run_dir)
    echo(f"run directory: {run_dir}")

    tick = time.perf_counter()
    # FSDP2: the full weights on rank 0 only (in host memory); the other ranks get their shards
    # from it in GRPOTrainer, so only rank 0 warm-starts (the others would load the same cache).
    policy, tokenizer = load_policy_for(cfg.model, device, ctx)
    if policy is not None:
        warm_start_policy(cfg, policy, tokenizer, device, echo)
    timings["warm_start"] = time.perf_counter() - tick
    if ctx.enabled and ctx.is_main:
        barrier()

    trainer = GRPOTrainer(cfg, policy=policy, tokenizer=tokenizer)
    del policy  # FSDP2: rank 0's full copy; the trainer holds this rank's shards
    for line in trainer.data_report.lines():
        echo(f"data: {line}")
    aggregator, granularity = cfg.strategy.resolved()
    echo(
        f"strategy: {cfg.strategy.name} (aggregator {aggregator}, granularity {granularity}); "
        f"domains: {', '.join(trainer.domains)}; {cfg.steps} steps x "
        f"{cfg.data.mixture.batch_size} prompts x {cfg.rollout.sampling.n} rollouts"
    )
    start_step = 0
    if resume:
        found = latest_checkpoint(run_dir)
        if found is None:
            echo("resume: no complete checkpoint yet; starting from step 0")
        else:
            start_step = trainer.load_state_dict(load_state(found[1]), found[1] / "model")
            echo(f"resume: continuing from {found[1]} (step {start_step})")
        if ctx.is_main:
            truncate_metrics(run_dir, start_step)
    writer = MetricsWriter(
        run_dir,
        enabled=ctx.is_main,
        tensorboard=cfg.logging.tensorboard,
        wandb_project=cfg.logging.wandb_project,
    )
    try:
        per_domain = (
            load_eval_prompts(cfg.data, tokenizer, cfg.eval.prompts_per_domain)
            if cfg.eval.prompts_per_domain
            else {}
        )
        heldout = [ex for pool in per_domain.values() for ex in pool]

        def evaluate(tag: str) -> dict[str, dict[str, float]]:
            tick = time.perf_counter()
            result = evaluate_domains(
                trainer.backend,
                trainer.router,
                heldout,
                cfg.rollout.sampling,
                samples=cfg.eval.samples,
                temperature=cfg.eval.temperature,
                seed=cfg.seed + 99,
            )
            timings[f"eval_{tag}"] = time.perf_counter() - tick
            return result

        before_file = run_dir / "eval_before.json"
        if resume and before_file.is_file():
            before = json.loads(before_file.read_text())
        else:
            before = evaluate("before") if heldout else {}
            if ctx.is_main:
                before_file.write_text(json.dumps(before, indent=2) + "\n", encoding="utf-8")
        tick = time.perf_counter()
        train_loop(
            trainer, writer, progress=cfg.logging.progress, start_step=start_step, run_dir=run_dir
        )
        timings["rl"] = time.perf_counter() - tick
        after = evaluate("after") if heldout else {}
    finally:
        writer.close()
        trainer.close()
    if cfg.logging.save_model:
        trainer.save_policy(run_dir / "model")
    timings["total"] = time.perf_counter() - started
    summary = {
        "strategy": cfg.strategy.name,
        "steps": cfg.steps,
        "heldout_before": before,
        "heldout_after": after,
        "seconds": timings,
    }
    if not ctx.is_main:
        return summary
    write_summary(run_dir, summary)
    if before or after:
        table = format_table(before, after)
        (run_dir / "eval.md").write_text(table + "\n", encoding="utf-8")
        how = (
            "greedy"
            if cfg.eval.temperature == 0
            else f"mean of {cfg.eval.samples} samples at temperature {cfg.eval.temperature}"
        )
        echo(f"\nheld-out reward per domain ({how} per prompt)")
        echo(table)
    echo(f"\ndone in {timings['total']:.0f} s; metrics: {run_dir / 'metrics.jsonl'}")
    return summary


def _silent(message: str) -> None:
    """The echo of ranks other than 0."""
