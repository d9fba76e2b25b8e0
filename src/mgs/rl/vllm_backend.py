"""A rollout backend on vLLM's offline API, colocated with the trainer (optional extra ``mgs[vllm]``).

**Written for vLLM 0.33-0.34** (the V1 engine), against its offline API:
``vllm.LLM(model=..., gpu_memory_utilization=..., enable_sleep_mode=..., ...)``,
``LLM.generate([TokensPrompt(prompt_token_ids=...)], sampling_params=[SamplingParams(...)])``,
``LLM.sleep(level)`` / ``LLM.wake_up(tags)`` / ``LLM.llm_engine.is_sleeping()`` /
``LLM.reset_prefix_cache()`` and, for weights, ``LLM.apply_model(fn)``. It was not run against a
real engine (no GPU where it was written): the request building, output conversion, sleep states
and weight sync are unit-tested with fakes whose signatures are checked against a recorded copy of
vLLM's. Newer versions log a warning; older ones are refused.

Semantics match :class:`~mgs.rl.hf_generate.HFGenerateBackend` (docs/rl.md, "The backend
interface"): prompts tokenized without special tokens, ``n`` rollouts per prompt, group-contiguous;
stop at EOS (the model's and the tokenizer's EOS ids, passed as ``stop_token_ids``) and at the stop
strings, both kept (``include_stop_str_in_output=True``); every returned row is re-cut with
:func:`~mgs.rl.hf_generate.completion_end` and its text is our own decode of the kept ids, so both
backends return identical :class:`~mgs.rl.rollout.RolloutBatch` layouts. Each rollout is its own
request (``n=1``) seeded from ``(seed, key * n + j)``, like the HF backend's keyed sampling: its
random draws do not depend on the rest of the batch (vLLM's floating-point results still can).
Temperature 0 sends one greedy request per prompt and repeats it ``n`` times.

**Weight sync** (:meth:`VLLMBackend.sync_weights`, after each optimizer step): the policy's full
weights, gathered from FSDP2 shards and chunked, go into the engine's ``load_weights``; the prefix
cache is reset before the next generation, since its keys/values came from the old weights. A LoRA
policy's engine serves its frozen base with ``enable_lora``: a sync writes the adapter to disk and
the next generation names it in a ``LoRARequest`` (:mod:`mgs.rl.vllm_lora`). With
``enable_sleep_mode`` the engine sleeps between generations, so training gets its GPU memory back.
vLLM's ``sleep`` also pauses its scheduler, which resumes only once every tag is awake again, so
``generate`` is never called while ``is_sleeping()`` says True (it would wait forever); a level-2
sleep discards the weights, so the next generation pushes all of them from the policy.
:mod:`mgs.rl.vllm_engine` builds the engine, holds :class:`VLLMConfig` and does the weight sync.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from mgs.errors import ConfigError, DataError, MgsError
from mgs.models.lora import lora_of
from mgs.rl.hf_generate import _eos_ids, completion_end
from mgs.rl.rollout import Completion, FinishReason, RolloutBatch, SamplingConfig
from mgs.rl.vllm_engine import (
    INSTALL_HINT,
    VLLMConfig,
    check_engine_weights,
    claim_sleep_mode,
    engine_env,
    engine_kwargs,
    freeze_engine_env,
    import_vllm,
    preserved_rng,
    push_weights,
    release_sleep_mode,
    worker_in_process,
)
from mgs.rl.vllm_lora import AdapterSync

__all__ = ["INSTALL_HINT", "VLLMBackend", "VLLMConfig", "request_seed"]


def request_seed(seed: int, row_key: int) -> int:
    """The seed of one rollout's request, from the batch seed and the rollout's key (prompt key
    times n plus the rollout index): a 30-bit hash, so rollouts do not share random streams."""
    digest = hashlib.blake2b(f"{seed}:{row_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x3FFF_FFFF


def _encode(tokenizer: Any, prompts: list[str], max_prompt_tokens: int) -> list[list[int]]:
    if not prompts:
        raise ValueError("generate() needs at least one prompt")
    ids: list[list[int]] = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    for i, row in enumerate(ids):
        if not row:
            raise DataError(f"prompt {i} is empty after tokenization; every prompt needs a token")
        if len(row) > max_prompt_tokens:
            raise DataError(
                f"prompt {i} has {len(row)} tokens, more than max_prompt_tokens="
                f"{max_prompt_tokens}; filter long prompts in the data or raise the limit "
                f"(prompt starts {prompts[i][:60]!r})"
            )
    return ids


class VLLMBackend:
    """:class:`~mgs.rl.rollout.RolloutBackend` on a colocated ``vllm.LLM`` (see module docs).

    ``model`` is the policy being trained: its path starts the engine and its weights are pushed
    by :meth:`sync_weights` (and again whenever the engine lost them: ``sleep_level: 2``,
    ``load_format: dummy``). Under torchrun every rank builds its own engine
    (``distributed_executor_backend="external_launcher"``) and generates its own prompts.
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer, *, max_prompt_tokens: int, config: VLLMConfig
    ) -> None:
        if max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be positive, got {max_prompt_tokens}")
        self.api = import_vllm()
        self.model: torch.nn.Module | None = model
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.config = config
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        kwargs = engine_kwargs(config, model, tokenizer)
        self.in_process = worker_in_process(config)  # weights reach the worker without a copy
        freeze_engine_env(engine_env(config))
        if config.enable_sleep_mode:
            claim_sleep_mode(self)
        try:
            with preserved_rng():  # an in-process engine reseeds the global generators
                self.llm: Any = self.api.LLM(**kwargs)
        except BaseException:
            release_sleep_mode(self)
            raise
        self._asleep: set[str] = set()  # tags of the engine's memory that is released
        self._stale = config.load_format == "dummy"  # engine weights differ from the policy's
        self._cache_dirty = False  # prefix cache holds keys/values of older weights
        self.adapters: AdapterSync | None = None  # a LoRA policy's adapters, for the engine
        try:
            check_engine_weights(self.llm)
        except MgsError:
            self.close()
            raise
        if lora_of(model) is not None:
            self.adapters = AdapterSync()
            self.adapters.push(model, self.api)  # the adapter the first generation names
        if config.enable_sleep_mode:  # awake only while generating or loading weights
            self._sleep()

    # ------------------------------------------------------------------------- interface

    def generate(
        self,
        prompts: list[str],
        cfg: SamplingConfig,
        *,
        seed: int,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """``cfg.n`` completions per prompt, group-contiguous. Rollout ``j`` of the prompt with key
        ``k`` (default: its index) is one request seeded from ``(seed, k * n + j)``."""
        llm = self._engine()
        prompt_ids = _encode(self.tokenizer, prompts, self.max_prompt_tokens)
        keys = list(range(len(prompts))) if keys is None else list(keys)
        if len(keys) != len(prompts):
            raise ValueError(f"got {len(keys)} keys for {len(prompts)} prompts")
        limit = self.config.max_model_len
        if limit is not None and self.max_prompt_tokens + cfg.max_new_tokens > limit:
            raise ConfigError(
                f"rollout.vllm.max_model_len={limit} is shorter than the longest prompt plus "
                f"response ({self.max_prompt_tokens} + {cfg.max_new_tokens}); raise it to "
                f"{self.max_prompt_tokens + cfg.max_new_tokens}"
            )
        greedy = cfg.temperature == 0  # one request per prompt, repeated n times
        per_prompt = 1 if greedy else cfg.n
        requests, params = [], []
        for key, ids in zip(keys, prompt_ids):
            for j in range(per_prompt):
                requests.append(self.api.TokensPrompt(prompt_token_ids=list(ids)))
                params.append(self._sampling_params(cfg, request_seed(seed, key * cfg.n + j)))
        self._wake({"weights"})
        if self._stale:
            self._push(self._policy())
        self._wake({"kv_cache"})
        self._check_awake()
        if self._cache_dirty and llm.reset_prefix_cache() is False:
            raise RuntimeError("vLLM did not reset its prefix cache (requests still running?)")
        self._cache_dirty = False
        adapter = {} if self.adapters is None else {"lora_request": self.adapters.request}
        outputs = llm.generate(requests, sampling_params=params, use_tqdm=False, **adapter)
        if self.adapters is not None:
            self.adapters.prune()  # the engine has read the newest adapter
        if self.config.enable_sleep_mode:
            self._sleep()
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
        completions: list[Completion] = []
        for r, out in enumerate(outputs):
            if len(out.outputs) != 1:
                raise RuntimeError(f"vLLM returned {len(out.outputs)} samples for a request of 1")
            i = r // per_prompt
            for _ in range(cfg.n if greedy else 1):
                completions.append(self._completion(i, prompt_ids[i], out.outputs[0], cfg))
        return RolloutBatch(completions=completions, n=cfg.n)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push ``model``'s weights into the engine (every rank must call it under FSDP2); a LoRA
        policy's adapter, which the next generation names."""
        self._engine()
        self.model = model
        if self.adapters is not None:
            self.adapters.push(model, self.api)
            self._cache_dirty = True
            return
        self._wake({"weights"})
        self._push(model)

    def close(self) -> None:
        """Shut the engine down and drop it, so that its GPU memory can be freed."""
        llm, self.llm, self.model = self.llm, None, None
        release_sleep_mode(self)
        if getattr(self, "adapters", None) is not None:
            self.adapters.close()
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------------- internals

    def _engine(self) -> Any:
        if self.llm is None:
            raise RuntimeError("this VLLMBackend was closed; build a new one")
        return self.llm

    def _policy(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError("this VLLMBackend was closed; build a new one")
        return self.model

    def _sampling_params(self, cfg: SamplingConfig, seed: int) -> Any:
        greedy = cfg.temperature == 0
        return self.api.SamplingParams(
            n=1,  # the n rollouts of a prompt are n requests, sharing the prompt's prefix cache
            temperature=0.0 if greedy else cfg.temperature,
            top_p=1.0 if greedy else cfg.top_p,
            top_k=-1 if greedy or cfg.top_k == 0 else cfg.top_k,  # -1: off in every vLLM
            min_p=0.0,
            repetition_penalty=1.0,
            max_tokens=cfg.max_new_tokens,
            stop=list(cfg.stop),
            stop_token_ids=list(self.eos_ids),
            include_stop_str_in_output=True,
            seed=seed,
        )

    def _completion(
        self, prompt_index: int, prompt_ids: list[int], sample: Any, cfg: SamplingConfig
    ) -> Completion:
        if sample.finish_reason not in ("stop", "length"):
            raise RuntimeError(
                f"vLLM ended a rollout of prompt {prompt_index} with {sample.finish_reason!r}"
            )
        row = list(sample.token_ids)

        def decode(ids: Sequence[int]) -> str:
            return self.tokenizer.decode(
                list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )

        end, reason = completion_end(row, self.eos_ids, cfg.stop, decode)
        finish: FinishReason = "stop" if "stop" in (reason, sample.finish_reason) else "length"
        kept = row[:end]
        text = self.tokenizer.decode(
            kept, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return Completion(prompt_index, list(prompt_ids), kept, text, finish)

    def _sleep(self) -> None:
        self._engine().sleep(level=self.config.sleep_level)
        self._asleep = {"weights", "kv_cache"}
        self._cache_dirty = True  # the KV cache was dropped: never serve a stale prefix hit
        self._stale = self._stale or self.config.sleep_level == 2  # level 2 drops the weights

    def _wake(self, tags: set[str]) -> None:
        wanted = sorted(tags & self._asleep)
        if not wanted:
            return
        if self._engine().wake_up(tags=wanted) is False:
            raise MgsError(f"vLLM could not wake its {' and '.join(wanted)} up (wake_up -> False)")
        self._asleep -= set(wanted)

    def _check_awake(self) -> None:
        """vLLM's sleep pauses its scheduler until every tag is awake: a generate() call then
        would wait forever, so refuse it with the engine's own word on its state."""
        if self._engine().llm_engine.is_sleeping():
            raise MgsError(
                "the vLLM engine still reports is_sleeping() after waking its weights and KV "
                "cache, and generate() would wait forever on its paused scheduler; this is a "
                "vLLM sleep-mode problem: set rollout.vllm.enable_sleep_mode: false"
            )

    def _push(self, model: torch.nn.Module) -> None:
        chunk = self.config.sync_chunk_mb * 2**20
        push_weights(self._engine(), model, chunk, in_process=self.in_process)  # LoRA: the base
        if self.adapters is not None:  # the engine's adapter went with its weights: reload it
            self.adapters.reissue(self.api)
        self._stale = False
        self._cache_dirty = True
