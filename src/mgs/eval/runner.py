"""``evaluate_model``: load a model, generate on each benchmark, score, aggregate.

Generation uses the training backend (:class:`~mgs.rl.hf_generate.HFGenerateBackend`: the same
sampling, stop strings and seeding) on prompts rendered by the training templates; scoring uses the
training rewards on the response part (:mod:`mgs.eval.scoring`). torch and transformers are
imported inside the functions, so importing this module is light.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError, MgsError
from mgs.eval.benchmarks import (
    BenchmarkSpec,
    LoadedBenchmark,
    check_file,
    check_unique,
    read_rows,
)
from mgs.eval.config import EvalConfig, default_config
from mgs.eval.engine import generate_completions
from mgs.eval.result import BenchmarkResult, EvalResult
from mgs.eval.scoring import Sample, Scorers, aggregate, primary_metric, score_samples
from mgs.models.loading import load_errors, load_tokenizer, model_dir_problem, resolve_device
from mgs.models.lora import ADAPTER_CONFIG, import_peft, is_adapter_dir
from mgs.rewards.extraction import split_completion
from mgs.run_dir import RunDir

ModelArg = str | Path | tuple[Any, Any]


class ModelLoadError(MgsError):
    """The model to evaluate is not a loadable Hugging Face directory (or run directory)."""


def resolve_model_dir(path: str | Path) -> Path:
    """The Hugging Face directory to load: ``path`` itself, ``path/model`` for a run directory
    (a LoRA run's ``model_merged/`` when it saved one; else its adapter in ``model/``) or for one
    of its checkpoints (``RUN/checkpoints/step_N``)."""
    p = Path(path)
    fix = (
        "pass a Hugging Face model directory (config.json, weights, tokenizer), a LoRA adapter "
        "directory (adapter_config.json), a run directory written by `mgs train` "
        "(config.yaml + model/) or one of its checkpoints (RUN/checkpoints/step_N)"
    )
    if not p.exists():
        raise ModelLoadError(f"model directory {str(p)!r} does not exist; {fix}")
    if not p.is_dir():
        raise ModelLoadError(f"model {str(p)!r} is a file, not a directory; {fix}")
    if RunDir.of_checkpoint(p) is not None and RunDir.checkpoint_model(p).is_dir():
        p = RunDir.checkpoint_model(p)  # a checkpoint: its policy (a LoRA run's: the adapter)
    run = RunDir(p)
    if run.is_trained():
        p = run.policy_dir()
    elif run.config.is_file() and not (p / "config.json").is_file():
        raise ModelLoadError(
            f"run directory {str(p)!r} has no {RunDir.MODEL}/ folder (trained with "
            "logging.save_model: false?); evaluate a run that saved its model"
        )
    if is_adapter_dir(p):
        return p  # a LoRA adapter: load_model reads its base model
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"{str(p)!r} has no config.json, so it is not a model; {fix}")
    problem = model_dir_problem(p)
    if problem:
        raise ModelLoadError(f"model directory {str(p)!r} cannot be loaded: {problem}; {fix}")
    return p


def load_model(path: str | Path, cfg: EvalConfig) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a model or run directory, in eval mode on ``cfg.device``."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model_dir(path)
    device = resolve_device(cfg.device, option="--device")
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if is_adapter_dir(model_dir):
        return _load_adapter(model_dir, getattr(torch, dtype), device)
    try:
        tokenizer = load_tokenizer(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    except load_errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"cannot load a causal LM and its tokenizer from {str(model_dir)!r} ({first}); "
            "the directory needs config.json, weights and tokenizer files (save_pretrained)"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


def _load_adapter(adapter_dir: Path, dtype: Any, device: Any) -> tuple[Any, Any]:
    """A LoRA adapter (peft's save_pretrained) on its base model, merged: ``(model, tokenizer)``.

    The base is the adapter config's ``base_model_name_or_path`` (``model.name`` of the run);
    a base built in-process has none, so such a run must be evaluated from its merged policy."""
    import json

    from transformers import AutoModelForCausalLM

    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"the LoRA adapter in {str(adapter_dir)!r} names no base model (its base was built "
            "in-process); evaluate the run's merged policy (RUN/model_merged/, saved at the end "
            "of the run; with a base loaded by name, with logging.save_merged: true)"
        )
    peft = import_peft()
    try:
        tokenizer = load_tokenizer(
            adapter_dir if (adapter_dir / "tokenizer.json").is_file() else base
        )
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = peft.PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except load_errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"cannot load the LoRA adapter in {str(adapter_dir)!r} on its base model {base!r} "
            f"({first}); the base must be reachable from this machine"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


def check_benchmarks(specs: Sequence[BenchmarkSpec], cfg: EvalConfig) -> None:
    """Everything that can be checked before loading a model: labels, files, judges."""
    check_unique(list(specs))
    for spec in specs:
        check_file(spec)
        scoring = spec.info.scoring
        if scoring == "reward_model" and not cfg.reward_model.path:
            raise ConfigError(
                f"benchmark {spec.name!r} is scored by a reward model; pass --reward-model DIR "
                "(a Hugging Face sequence-classification model, e.g. one from `mgs rm-train`)"
            )
        if scoring == "pairwise" and not cfg.reward_model.path and cfg.judge is None:
            raise ConfigError(
                f"benchmark {spec.name!r} compares our responses with reference ones and needs a "
                "judge: pass --reward-model DIR, or --judge-url URL --judge-model NAME"
            )
    for spec in specs:
        if spec.source is not None:  # a file of another shape, or a hub out of reach, fails
            read_rows(spec, cfg.limit)  # before the model loads (a hub dataset is cached after)


def evaluate_model(
    model: ModelArg,
    benchmarks: Sequence[BenchmarkSpec | str],
    cfg: EvalConfig | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``benchmarks``.

    ``model``: a Hugging Face model directory, a run directory (its ``model/``), or an in-memory
    ``(model, tokenizer)`` pair. ``benchmarks``: specs, or strings ``[LABEL:]KIND[=PATH]``.
    ``cfg``: None takes :func:`~mgs.eval.config.default_config` of ``model`` (a run's own
    template, stop strings and rewards). Returns an :class:`EvalResult`; nothing is written.
    """
    started = time.perf_counter()
    specs = [BenchmarkSpec.parse(b) if isinstance(b, str) else b for b in benchmarks]
    in_memory = isinstance(model, tuple)
    if cfg is None:
        cfg = EvalConfig() if in_memory else default_config(model)  # type: ignore[arg-type]
    check_benchmarks(specs, cfg)
    if cfg.num_threads > 0:
        import torch

        torch.set_num_threads(cfg.num_threads)
    if in_memory:
        policy, tokenizer = model  # type: ignore[misc]
        name = type(policy).__name__
    else:
        policy, tokenizer = load_model(model, cfg)  # type: ignore[arg-type]
        name = str(model)
    limit = _prompt_limit(policy, cfg)
    loaded = [_load(spec, cfg, tokenizer, limit) for spec in specs]
    scorers = Scorers(cfg)
    try:
        if any(s.info.scoring in ("reward_model", "pairwise") for s in specs) and (
            cfg.reward_model.path
        ):
            scorers.reward_model()  # a bad reward model fails now, not after generating
        results = {b.spec.name: _run_one(b, policy, tokenizer, cfg, scorers, limit) for b in loaded}
    finally:
        scorers.close()
    return EvalResult(name, cfg, results, time.perf_counter() - started)


def _prompt_limit(policy: Any, cfg: EvalConfig) -> int | None:
    """``cfg.max_prompt_tokens``, or the model's positions minus the response budget."""
    if cfg.max_prompt_tokens is not None:
        return cfg.max_prompt_tokens
    positions = getattr(getattr(policy, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > cfg.max_new_tokens:
        return positions - cfg.max_new_tokens
    return None


def _load(spec: BenchmarkSpec, cfg: EvalConfig, tokenizer: Any, limit: int | None):
    from mgs.eval.benchmarks import load_benchmark

    return load_benchmark(
        spec,
        cfg.template,
        tokenizer,
        limit=cfg.limit,
        max_prompt_tokens=limit,
        overlong=cfg.overlong,
    )


def _run_one(
    bench: LoadedBenchmark,
    policy: Any,
    tokenizer: Any,
    cfg: EvalConfig,
    scorers: Scorers,
    limit: int | None,
) -> BenchmarkResult:
    from tqdm.auto import tqdm

    from mgs.rl.hf_generate import HFGenerateBackend

    examples = bench.examples
    backend = HFGenerateBackend(
        policy,
        tokenizer,
        max_prompt_tokens=limit or 1 << 30,
        micro_batch_size=cfg.micro_batch_size,
        decode=cfg.decode,
    )
    name = bench.spec.name
    with tqdm(
        total=len(examples), desc=f"{name}: generate", unit="prompt", disable=not cfg.progress
    ) as bar:
        completions = generate_completions(
            backend,
            [ex.prompt for ex in examples],
            cfg.sampling(),
            seed=cfg.seed,
            keys=[prompt_key(ex.uid) for ex in examples],
            prompts_per_call=max(1, cfg.micro_batch_size // cfg.samples),
            on_prompts_done=bar.update,
        )
    backend.close()
    samples = []
    for j, c in enumerate(completions):
        parsed = split_completion(c.text, cfg.extraction)
        samples.append(Sample(examples[j // cfg.samples], c.text, parsed.response))
    with tqdm(
        total=len(samples), desc=f"{name}: score", unit="sample", disable=not cfg.progress
    ) as bar:
        scores = score_samples(bench.spec.info, samples, scorers, on_done=lambda: bar.update(1))
        bar.update(len(samples) - bar.n)  # scorers without per-sample progress finish at once
    records = [
        _record(j % cfg.samples, s, c, sc)
        for j, (s, c, sc) in enumerate(zip(samples, completions, scores))
    ]
    kind = bench.spec.info
    metrics = aggregate(kind, records, greedy=cfg.greedy, pass_k=cfg.pass_k)
    return BenchmarkResult(
        name=name,
        kind=bench.spec.kind,
        path=bench.spec.path,
        primary=primary_metric(kind, cfg.greedy, cfg.samples),
        metrics=metrics,
        num_prompts=len(examples),
        samples=cfg.samples,
        records=records,
        skipped=bench.skipped,
        truncated=bench.truncated,
    )


def prompt_key(uid: str) -> int:
    """A stable 48-bit key of a prompt id: with batch-invariant sampling a completion depends only
    on (seed, prompt id, sample index), not on which prompts share its batch or on --limit."""
    return int.from_bytes(hashlib.sha256(uid.encode("utf-8")).digest()[:6], "big")


def _record(sample: int, s: Sample, completion: Any, scores: dict[str, Any]) -> dict[str, Any]:
    ref = s.example.reference
    reference = {k: ref[k] for k in ("answer", "instruction_id_list") if k in ref}
    return {
        "id": s.example.uid,
        "sample": sample,
        "question": s.example.question,
        "completion": s.completion,
        "response": s.response,
        "finish_reason": completion.finish_reason,
        "completion_tokens": len(completion.completion_ids),
        "reference": reference,
        "scores": scores,
    }
