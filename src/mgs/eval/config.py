"""What an evaluation does: :class:`EvalConfig` (generation, scoring) and :class:`JudgeConfig`.

:func:`default_config` gives the defaults for a model: a *run directory* (written by
``mgs train``) lends its own prompt template, stop strings, response length, prompt-length limit,
response extraction and rewards (incl. its reward model), so a checkpoint is evaluated exactly as
it was trained; anything else gets :class:`EvalConfig`'s defaults (the paper's zero-think template).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mgs.data.templates import TemplateConfig
from mgs.dataclass_config import from_dict, load_yaml, option
from mgs.errors import ConfigError
from mgs.rewards.builtin import is_builtin
from mgs.rewards.config import IFEvalRewardConfig, MathRewardConfig, RewardModelConfig
from mgs.rewards.extraction import ExtractionConfig
from mgs.run_dir import RunDir


@dataclass
class JudgeConfig:
    """An OpenAI-compatible chat-completions endpoint judging our response against a reference."""

    url: str = option(
        help="Base URL of the API, e.g. http://localhost:8000/v1 (/chat/completions is appended "
        "unless the URL already ends with it)."
    )
    model: str = option(help="Model name sent in each request, e.g. gpt-4o-2024-08-06.")
    api_key_env: str = option(
        "OPENAI_API_KEY",
        help="Environment variable holding the API key (sent as a Bearer token; none if unset).",
    )
    max_tokens: int = option(512, help="Longest judge answer (it explains, then gives [[A]]...).")
    temperature: float = option(0.0, help="Judge sampling temperature.")
    timeout_s: float = option(120.0, help="Seconds to wait for one answer.")
    retries: int = option(2, help="Extra attempts after a failed request (HTTP error, timeout).")
    workers: int = option(4, help="Requests in flight at once.")

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            shown = self.url.rpartition("@")[2]  # never echo user:password@ to the terminal
            raise ConfigError(
                f"judge url {shown!r} must start with http:// or https://, e.g. "
                "--judge-url http://localhost:8000/v1"
            )
        if not self.model:
            raise ConfigError("the judge needs a model name: pass --judge-model NAME")
        if self.max_tokens < 1 or self.workers < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ConfigError(
                "judge max_tokens and workers must be >= 1, retries >= 0 and timeout_s > 0"
            )


@dataclass
class EvalConfig:
    """How ``mgs eval`` generates and scores (one config for every benchmark of a call)."""

    template: TemplateConfig = option(
        default_factory=TemplateConfig,
        help="Prompt template, as in training (default: the paper's zero_think).",
    )
    extraction: ExtractionConfig = option(
        default_factory=ExtractionConfig,
        help="Where the response is in a completion (the thought is never scored).",
    )
    samples: int = option(1, help="Completions per prompt (k of avg@k / pass@k).")
    temperature: float = option(0.0, help="Sampling temperature; 0: greedy (needs samples: 1).")
    top_p: float = option(1.0, help="Nucleus sampling mass.")
    top_k: int = option(0, help="Keep only the k most likely tokens when sampling; 0: off.")
    max_new_tokens: int = option(1024, help="Longest completion, in tokens.")
    stop: list[str] = option(
        default_factory=lambda: ["</response>"],
        help="Strings that end a completion (kept in it); [] stops at EOS only.",
    )
    seed: int = option(
        0,
        help="Sampling seed: a sampled completion depends only on (seed, prompt id, sample "
        "index), not on batching or --limit.",
    )
    limit: int | None = option(None, help="Evaluate only the first N prompts of each benchmark.")
    max_prompt_tokens: int | None = option(
        None,
        help="Longest rendered prompt in tokens; null: the model's positions minus "
        "max_new_tokens (or no limit when the model does not say).",
    )
    overlong: Literal["filter", "truncate"] = option(
        "filter",
        help="A prompt over the limit: filter (skip it; listed in the output) or truncate (cut the "
        "end of its question).",
    )
    micro_batch_size: int = option(32, help="Sequences per generate() call.")
    decode: Literal["generate", "fast", "auto"] = option(
        "generate",
        help="Decode loop: generate (Hugging Face), fast (the lean loop for Qwen2 / Llama: the "
        "same tokens on CPU, faster for small models; docs/rl.md), auto (fast where supported).",
    )
    pass_k: list[int] | None = option(
        None, help="k of the pass@k reported; null: powers of two below samples, and samples."
    )
    tie_margin: float = option(
        0.0, help="Reward-model judge: score differences within this margin count as ties."
    )
    device: str = option("auto", help="auto (cuda when available), cpu, cuda, cuda:1...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="Policy weights dtype: auto (bfloat16 on GPU, float32 on CPU)."
    )
    num_threads: int = option(0, help="torch CPU threads (0: torch's default).")
    reward_model: RewardModelConfig = option(
        default_factory=RewardModelConfig,
        help="Reward model for chat benchmarks (path: null = none).",
    )
    math: MathRewardConfig = option(default_factory=MathRewardConfig, help="math-verify workers.")
    ifeval: IFEvalRewardConfig = option(
        default_factory=IFEvalRewardConfig,
        help="The training IFEval reward (the `reward` of tiny_if); IFEval metrics report both "
        "variants regardless.",
    )
    judge: JudgeConfig | None = option(
        None, help="LLM judge of the AlpacaEval win rate; null: the reward model judges."
    )
    progress: bool = option(True, help="Show progress bars.")

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")
        if not (0 <= self.temperature < math.inf):
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.samples > 1:
            raise ConfigError(
                f"greedy decoding (temperature 0) gives {self.samples} identical samples; "
                "set a temperature > 0 (e.g. --temperature 0.7) or --samples 1"
            )
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ConfigError(
                f"top_p must be in (0, 1] and top_k >= 0 (0: off); got {self.top_p}, {self.top_k}"
            )
        if self.max_new_tokens < 1 or self.micro_batch_size < 1:
            raise ConfigError("max_new_tokens and micro_batch_size must be positive integers")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of prompts, got {self.limit}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError("max_prompt_tokens must be positive or null")
        for k in self.pass_k or []:
            if k < 1:
                raise ConfigError(f"pass_k (--pass-k) values must be >= 1, got {k}")
            if k > self.samples:
                raise ConfigError(
                    f"pass@{k} needs at least {k} samples per prompt; pass --samples {k} "
                    f"(with a temperature > 0) or drop k={k} (samples now: {self.samples})"
                )
        if not 0 <= self.tie_margin < math.inf:
            raise ConfigError(f"tie_margin must be a finite number >= 0, got {self.tie_margin}")
        if self.num_threads < 0:
            raise ConfigError(
                f"num_threads (--threads) must be >= 0 (0: torch's default), got {self.num_threads}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def sampling(self) -> Any:
        """The :class:`~mgs.rl.rollout.SamplingConfig` of these settings (``samples`` per prompt)."""
        from mgs.rl.rollout import SamplingConfig

        return SamplingConfig(
            n=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            stop=list(self.stop),
            seed=self.seed,
        )


def default_config(model: str | Path | None = None) -> EvalConfig:
    """:class:`EvalConfig` defaults for ``model``: from its run config when ``model`` is a run
    directory or one of its checkpoints (``RUN/checkpoints/step_N``), else the plain defaults."""
    if model is None:
        return EvalConfig()
    run = RunDir.of_checkpoint(model)
    if run is not None:  # the run may still be training: no model/ yet
        return config_from_run(load_yaml(run.config)) if run.config.is_file() else EvalConfig()
    if not RunDir(model).is_trained():
        return EvalConfig()
    return config_from_run(load_yaml(RunDir(model).config))


def config_from_run(run: dict[str, Any]) -> EvalConfig:
    """An :class:`EvalConfig` using a run config's template, sampling limits and rewards.

    Only the sections evaluation needs are read (so a config from another version of ``mgs``
    still works as long as those sections do): ``data.template``, ``data.max_prompt_tokens``,
    ``data.overlong``, ``rollout.sampling.{stop, max_new_tokens, top_p, top_k}``, ``rollout.decode``,
    ``rewards.{extraction,
    math, ifeval, reward_model}``, ``model.dtype``. Decoding stays greedy (set samples and
    temperature explicitly for avg@k).
    """
    data = _section(run, "data")
    sampling = _section(_section(run, "rollout"), "sampling")
    rewards = _section(run, "rewards")
    updates: dict[str, Any] = {}
    if "template" in data:
        updates["template"] = from_dict(TemplateConfig, data["template"], "data.template")
    if "max_prompt_tokens" in data:
        updates["max_prompt_tokens"] = data["max_prompt_tokens"]
    if data.get("overlong") in ("filter", "truncate"):
        updates["overlong"] = data["overlong"]
    for key in ("stop", "max_new_tokens", "top_p", "top_k"):
        if key in sampling:
            updates[key] = sampling[key]
    if _section(run, "rollout").get("decode") in ("generate", "fast", "auto"):
        updates["decode"] = run["rollout"]["decode"]  # the run's decode loop
    sections = {
        "extraction": ExtractionConfig,
        "math": MathRewardConfig,
        "ifeval": IFEvalRewardConfig,
        "reward_model": RewardModelConfig,
    }
    for key, cls in sections.items():
        if key in rewards:
            updates[key] = from_dict(cls, rewards[key], f"rewards.{key}")
    rm = updates.get("reward_model")
    if rm is not None and is_builtin(rm.path):
        updates["reward_model"] = dataclasses.replace(rm, path=None)  # never resolved: no model
    return from_dict(EvalConfig, {**_plain(EvalConfig()), **updates})


def _section(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"run config section {key!r} must be a mapping, got {value!r}")
    return value


def _plain(cfg: EvalConfig) -> dict[str, Any]:
    """Top-level fields of ``cfg`` (sub-configs stay objects; from_dict accepts them as they are)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
