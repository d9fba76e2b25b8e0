"""``run_training``: a whole ``mgs train`` run, as named phases.

0. :func:`plan_start` (rank 0 decides for all): a new run's directory must be new or empty
   (``overwrite``: an earlier run there is deleted first, :mod:`mgs.train.new_run`); a resume
   picks its checkpoint (the latest intact one, :mod:`mgs.train.resume`) and refuses overrides
   it cannot honour (weight shapes; ``steps`` not past the checkpoint);
1. :func:`prepare_reward_model`: a built-in reward model (``builtin:tiny``) is trained or loaded
   from its cache, and the config then points at its directory;
2. :func:`prepare_run_dir`: the run directory gets its ``config.yaml`` (not on resume);
3. :func:`warm_started_policy`: the policy is loaded (FSDP2: on rank 0 only) and warm-started by
   SFT when ``warmstart.sft.steps`` asks for it (the built-in demo's, cached);
4. :func:`~mgs.train.builder.build_trainer`, then :func:`resume_trainer` on ``--resume`` (its
   overrides are then recorded in ``config.yaml``: :func:`record_overrides`);
5. :func:`evaluate_before` / the held-out evaluation after: mean reward per domain;
6. :func:`train_loop`: the RL steps, with metrics, surgery snapshots and checkpoints;
7. :func:`finish`: the final policy (a LoRA run: its adapter, and the merged policy when
   :func:`wants_merged`), ``summary.json`` and the before / after table.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mgs.data.pipeline import load_eval_prompts
from mgs.dataclass_config import to_dict
from mgs.errors import ConfigError
from mgs.eval.heldout import DomainRewards, evaluate_heldout, format_table
from mgs.models.registry import is_builtin_model
from mgs.rewards.builtin import builtin_provider, is_builtin
from mgs.run_dir import RunDir
from mgs.strategy import describe_strategy
from mgs.train.builder import build_trainer
from mgs.train.checkpoint import restore, save_checkpoint, save_policy
from mgs.train.config import TrainConfig
from mgs.train.config_diff import config_differences
from mgs.train.distributed import DistContext, barrier, decided_by_main, distributed_session
from mgs.train.metrics import MetricsWriter, truncate_metrics
from mgs.train.modeling import load_policy_for, resolve_device
from mgs.train.new_run import claim_run_dir
from mgs.train.resume import check_resume_config, choose_checkpoint
from mgs.train.trainer import GRPOTrainer, seed_everything

Echo = Callable[[str], None]


@dataclass
class Session:
    """What every phase of a run shares."""

    cfg: TrainConfig
    run: RunDir
    ctx: DistContext
    device: torch.device
    echo: Echo
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - tick


@dataclass(frozen=True)
class Start:
    """Where a run starts, as rank 0 decided it (every rank gets the same)."""

    run_dir: str
    resume: bool = False
    checkpoint: str | None = None  # on resume; None: the run has no checkpoint yet (step 0)
    notes: tuple[str, ...] = ()  # warnings to print: damaged checkpoints skipped, a run deleted


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<UTC time>-<strategy>``, with a suffix when a run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path("runs") / f"{stamp}-{cfg.strategy.name}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{stamp}-{cfg.strategy.name}-{n}"
    return path


def run_training(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    echo: Echo = print,
    *,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train as configured; returns (and writes to ``run_dir/summary.json``) the results.

    ``run_dir`` (else ``logging.run_dir``, else :func:`default_run_dir`) must be new or empty;
    ``overwrite``: an earlier run there is deleted first. ``resume``: continue ``run_dir`` from
    ``checkpoint`` (default: its latest intact one; the config is the run's own).
    """
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars between our own output
    if resume and overwrite:
        raise ConfigError("--overwrite deletes a run and --resume continues it; pass one of them")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    option = (
        "--run-dir" if run_dir else "logging.run_dir" if cfg.logging.run_dir else "run directory"
    )
    path = Path(run_dir or cfg.logging.run_dir or default_run_dir(cfg))
    seed_everything(cfg.seed)
    device = resolve_device(cfg.model.device)
    with distributed_session(cfg.distributed, device) as ctx:
        start = decided_by_main(  # every rank uses rank 0's directory (its timestamp)
            ctx,
            lambda: plan_start(
                path, option, resume, Path(checkpoint) if checkpoint else None, overwrite, cfg
            ),
        )
        run = RunDir(start.run_dir)
        session = Session(cfg, run, ctx, device, echo if ctx.is_main else _silent)
        for note in start.notes:
            session.echo(note)
        summary = _train(session, start)
    summary["seconds"]["total"] = time.perf_counter() - started
    if ctx.is_main:
        finish(session, summary)
    return summary


def plan_start(
    path: Path,
    option: str,
    resume: bool,
    checkpoint: Path | None,
    overwrite: bool,
    cfg: TrainConfig,
) -> Start:
    """Rank 0: check (``overwrite``: clear) a new run's directory, or choose the checkpoint a
    resume continues from and check that ``cfg`` can continue it. Raises
    :class:`~mgs.errors.ConfigError` before anything runs."""
    if resume:
        chosen, notes = choose_checkpoint(RunDir(path), checkpoint)
        check_resume_config(RunDir(path), cfg, chosen)
        return Start(str(path), True, None if chosen is None else str(chosen), tuple(notes))
    note = claim_run_dir(path, option, overwrite=overwrite)
    return Start(str(path), notes=(note,) if note else ())


def _train(s: Session, start: Start) -> dict[str, Any]:
    """Phases 1-6 inside the run's process group; returns the summary."""
    resume = start.resume
    if s.ctx.enabled and not s.ctx.is_main:
        barrier()  # let rank 0 fill the warm-start caches first
    with s.timed("reward_model"):
        s.cfg = prepare_reward_model(s.cfg, s.echo)
    if not resume and s.ctx.is_main:
        prepare_run_dir(s.cfg, s.run)
    s.echo(f"run directory: {s.run}")
    with s.timed("warm_start"):
        policy, tokenizer = warm_started_policy(s)
    if s.ctx.enabled and s.ctx.is_main:
        barrier()
    trainer = build_trainer(s.cfg, s.ctx, policy=policy, tokenizer=tokenizer)
    del policy  # FSDP2: rank 0's full copy; the trainer holds this rank's shards
    announce(s, trainer)
    start_step = resume_trainer(s, trainer, start.checkpoint) if resume else 0
    if resume and s.ctx.is_main:
        record_overrides(s)
    writer = MetricsWriter(
        s.run,
        enabled=s.ctx.is_main,
        tensorboard=s.cfg.logging.tensorboard,
        wandb_project=s.cfg.logging.wandb_project,
    )
    try:
        heldout = [ex for pool in heldout_prompts(s.cfg, tokenizer).values() for ex in pool]
        before = evaluate_before(s, trainer, heldout, resume)
        with s.timed("rl"):
            periodic = (lambda: _evaluate(s, trainer, heldout)) if heldout else None
            train_loop(trainer, writer, start_step=start_step, run=s.run, evaluate=periodic)
        with s.timed("eval_after"):
            after = _evaluate(s, trainer, heldout)
    finally:
        writer.close()
        trainer.close()
    if s.cfg.logging.save_model:
        merged = s.run.model_merged if wants_merged(s.cfg) else None
        save_policy(trainer, s.run.model, merged)
        if s.cfg.model.lora is not None:
            also = f"; merged policy: {merged}" if merged else ""
            s.echo(f"LoRA adapter: {s.run.model}{also}")
    return {
        "strategy": s.cfg.strategy.name,
        "steps": s.cfg.steps,
        "heldout_before": before,
        "heldout_after": after,
        "seconds": s.timings,
    }


# ----------------------------------------------------------------------------- phases


def wants_merged(cfg: TrainConfig) -> bool:
    """Whether a LoRA run also saves its merged policy: on request (``logging.save_merged``), or
    when the adapter alone could not be evaluated because its base cannot be reloaded by
    ``model.name`` (a model built in-process, or one warm-started by SFT)."""
    if cfg.model.lora is None:
        return False
    rebuilt = is_builtin_model(cfg.model.name) or cfg.warmstart.sft.steps > 0
    return cfg.logging.save_merged or rebuilt


def prepare_reward_model(cfg: TrainConfig, echo: Echo) -> TrainConfig:
    """``cfg`` with a built-in reward model (``builtin:NAME``) resolved to its directory, when a
    domain is routed to the reward model; else ``cfg`` itself."""
    rm = cfg.rewards.reward_model
    if not is_builtin(rm.path) or "reward_model" not in cfg.rewards.routes.values():
        return cfg
    path = builtin_provider(str(rm.path))(cfg, echo)
    rewards = dataclasses.replace(cfg.rewards, reward_model=dataclasses.replace(rm, path=str(path)))
    return dataclasses.replace(cfg, rewards=rewards)


def prepare_run_dir(cfg: TrainConfig, run: RunDir) -> None:
    run.path.mkdir(parents=True, exist_ok=True)
    import yaml

    run.config.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


def warm_started_policy(s: Session) -> tuple[torch.nn.Module | None, Any]:
    """This rank's policy before sharding (FSDP2: rank 0's full model, None elsewhere) and the
    tokenizer, warm-started by SFT when ``warmstart.sft.steps > 0`` (only rank 0 under FSDP2:
    the other ranks receive its weights)."""
    policy, tokenizer = load_policy_for(s.cfg.model, s.device, s.ctx)
    if policy is not None and s.cfg.warmstart.sft.steps > 0:
        from mgs.tiny.warmstart import warm_start_policy

        warm_start_policy(s.cfg, policy, tokenizer, s.device, s.echo)
    return policy, tokenizer


def announce(s: Session, trainer: GRPOTrainer) -> None:
    for line in trainer.data_report.lines():
        s.echo(f"data: {line}")
    cfg = s.cfg
    s.echo(
        f"strategy: {describe_strategy(cfg.strategy)}; domains: {', '.join(trainer.domains)}; "
        f"{cfg.steps} steps x {cfg.data.mixture.batch_size} prompts x "
        f"{cfg.rollout.sampling.n} rollouts"
    )


def resume_trainer(s: Session, trainer: GRPOTrainer, checkpoint: str | None) -> int:
    """Restore ``checkpoint`` (rank 0's choice; None: start over at step 0); returns the step to
    continue from. The metrics logged after it are dropped (those steps run again)."""
    if checkpoint is None:
        s.echo("resume: no checkpoint yet; starting from step 0")
        start_step = 0
    else:
        start_step = restore(trainer, Path(checkpoint))
        s.echo(f"resume: continuing from {checkpoint} (step {start_step})")
    if s.ctx.is_main:
        truncate_metrics(s.run, start_step)
    return start_step


def record_overrides(s: Session) -> None:
    """A resume's overrides (``--resume RUN steps=8``) go into the run's config.yaml, so that the
    next resume, `mgs compare` and the report read the config the run was trained with."""
    changed = config_differences(s.run.config, s.cfg)
    if changed:
        prepare_run_dir(s.cfg, s.run)
        s.echo(f"resume: {s.run.config} records the overrides ({'; '.join(changed)})")


def heldout_prompts(cfg: TrainConfig, tokenizer: Any) -> dict[str, list]:
    """The generated domains' held-out prompts (none when ``eval.prompts_per_domain`` is 0)."""
    if not cfg.eval.prompts_per_domain:
        return {}
    return load_eval_prompts(cfg.data, tokenizer, cfg.eval.prompts_per_domain)


def evaluate_before(s: Session, trainer: GRPOTrainer, heldout: list, resume: bool) -> DomainRewards:
    """The held-out rewards before RL (a resumed run reads the ones it wrote at its start)."""
    if resume and s.run.eval_before.is_file():
        return json.loads(s.run.eval_before.read_text(encoding="utf-8"))
    with s.timed("eval_before"):
        before = _evaluate(s, trainer, heldout)
    if s.ctx.is_main:
        s.run.write_json(s.run.eval_before, before)
    return before


def _evaluate(s: Session, trainer: GRPOTrainer, heldout: list) -> DomainRewards:
    if not heldout:
        return {}
    return evaluate_heldout(
        trainer.backend,
        trainer.router,
        heldout,
        s.cfg.rollout.sampling,
        samples=s.cfg.eval.samples,
        temperature=s.cfg.eval.temperature,
        seed=s.cfg.seed + 99,
    )


def train_loop(
    trainer: GRPOTrainer,
    writer: MetricsWriter,
    *,
    start_step: int = 0,
    run: RunDir | None = None,
    evaluate: Callable[[], DomainRewards] | None = None,
) -> None:
    """Run RL steps ``start_step .. cfg.steps - 1`` with a progress bar of per-domain rewards,
    writing metrics and surgery snapshots (rank 0) and checkpoints (every rank takes part).
    ``evaluate``: the held-out evaluation, run after every ``eval.every``-th step (every rank
    takes part) and logged with that step as ``heldout/<domain>/reward``."""
    from tqdm.auto import tqdm

    cfg = trainer.cfg
    every = cfg.logging.surgery_stats_every
    bar = tqdm(
        range(start_step, cfg.steps),
        desc="GRPO",
        disable=not cfg.logging.progress,
        dynamic_ncols=True,
    )
    for step in bar:
        out = trainer.step(step)
        if evaluate is not None and cfg.eval.every and (step + 1) % cfg.eval.every == 0:
            for domain, result in evaluate().items():
                out.metrics[f"heldout/{domain}/reward"] = result["reward"]
        if trainer.ctx.is_main:
            writer.log(step, out.metrics)
            last = step == cfg.steps - 1
            if every and out.surgery is not None and (step % every == 0 or last):
                writer.save_surgery(step, out.surgery.arrays())
            postfix = {d: f"{r:.2f}" for d, r in out.domain_rewards.items()}
            if "surgery/conflict_frac" in out.metrics:
                postfix["conflict"] = f"{out.metrics['surgery/conflict_frac']:.2f}"
            bar.set_postfix(postfix)
        every_ckpt, done = cfg.logging.checkpoint_every, step + 1
        if run is not None and every_ckpt and done % every_ckpt == 0 and done < cfg.steps:
            save_checkpoint(trainer, run, done)


def finish(s: Session, summary: dict[str, Any]) -> None:
    """Rank 0: ``summary.json``, the before / after table (``eval.md`` and printed)."""
    s.run.write_json(s.run.summary, summary)
    before, after = summary["heldout_before"], summary["heldout_after"]
    if before or after:
        table = format_table(before, after)
        s.run.eval_table.write_text(table + "\n", encoding="utf-8")
        how = (
            "greedy"
            if s.cfg.eval.temperature == 0
            else f"mean of {s.cfg.eval.samples} samples at temperature {s.cfg.eval.temperature}"
        )
        s.echo(f"\nheld-out reward per domain ({how} per prompt)")
        s.echo(table)
    s.echo(f"\ndone in {summary['seconds']['total']:.0f} s; metrics: {s.run.metrics}")


def _silent(message: str) -> None:
    """The echo of ranks other than 0."""
