"""A rollout backend on Hugging Face ``generate``: batched, left-padded, seeded, stop strings.

Sampling uses only temperature / top-p / top-k (none of the checkpoint's own generation settings,
such as a repetition penalty, which would make the sampled distribution differ from the one the
loss scores). Generation runs in eval mode with the KV cache, under a forked RNG seeded from the
``seed`` argument, so the training RNG is not disturbed.
The same seed, prompts and ``micro_batch_size`` give the same rollouts (the micro-batching
changes how the random draws are consumed).

A LoRA policy (peft) generates from merged weights: :func:`mgs.models.lora.merged_for_generation`
merges its adapters into copies of the base weights for the length of a ``generate`` call and puts
the training weights back afterwards. With ``compute_dtype`` (bf16 mixed precision) generation runs
under ``torch.autocast``, as the training forward passes do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from mgs.errors import DataError
from mgs.models.lora import merged_for_generation, peft_model_of
from mgs.rl.fast_decode import fast_decode, resolve_decode
from mgs.rl.gumbel import KeyedGumbelSampler
from mgs.rl.rollout import Completion, FinishReason, RolloutBatch, SamplingConfig

__all__ = ["HFGenerateBackend", "completion_end"]


def completion_end(
    ids: Sequence[int],
    eos_ids: Sequence[int],
    stop: Sequence[str],
    decode: Callable[[Sequence[int]], str],
) -> tuple[int, FinishReason]:
    """Where a generated row ends: ``(number of tokens to keep, finish reason)``.

    The completion ends right after the first EOS token or the first token that completes a stop
    string (whichever comes first; both are kept); otherwise all of ``ids`` are kept and the reason
    is ``"length"``. ``decode`` must keep special tokens (stop strings are matched on text).
    """
    end = next((i + 1 for i, t in enumerate(ids) if t in eos_ids), None)
    head = list(ids[:end]) if end is not None else list(ids)
    if stop and any(s in decode(head) for s in stop):
        # Shortest prefix whose text contains a stop string: binary search (a prefix's text is
        # a prefix of the longer text, so containment is monotone in the prefix length).
        lo, hi = 1, len(head)
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in decode(head[:mid]) for s in stop):
                hi = mid
            else:
                lo = mid + 1
        return lo, "stop"
    if end is not None:
        return end, "stop"
    return len(ids), "length"


def _eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    found: list[int] = []
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        for t in value if isinstance(value, (list, tuple)) else [value]:
            if t is not None and t not in found:
                found.append(int(t))
    if not found:
        raise ValueError(
            "neither the model's generation config nor the tokenizer names an EOS token"
        )
    return found


def _sharded_across_ranks(model: torch.nn.Module) -> bool:
    """Whether ``generate`` must keep every rank stepping until all ranks finish (FSDP / DTensor
    parameters: each forward is a collective, so a rank that stopped early would hang the rest).
    Hugging Face only detects this for models it sharded itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    return isinstance(model, FullyShardedDataParallel) or any(
        isinstance(p, DTensor) for p in model.parameters()
    )


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}  # restore each module's own flag
    model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _autocast(model: torch.nn.Module, dtype: torch.dtype | None):
    """``torch.autocast`` on the model's device type with ``dtype``, or a no-op for None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=next(model.parameters()).device.type, dtype=dtype)


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Fork the CPU RNG (and ``device``'s, when it is an accelerator), seed them, restore after."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield
        return
    module = torch.get_device_module(device.type)
    index = device.index if device.index is not None else module.current_device()
    with torch.random.fork_rng(devices=[index], device_type=device.type):
        torch.random.default_generator.manual_seed(seed)
        with module.device(index):
            module.manual_seed(seed)
        yield


class HFGenerateBackend:
    """:class:`~mgs.rl.rollout.RolloutBackend` on ``model.generate`` (the policy itself, in-process).

    ``max_prompt_tokens``: a longer prompt raises :class:`mgs.errors.DataError` (the data layer
    filters them; nothing is cut silently). ``micro_batch_size``: rows per ``generate`` call.
    ``add_special_tokens``: whether the tokenizer adds e.g. BOS to the prompt (off by default, as in
    verl: the prompt template writes every token).

    With a model sharded across ranks (FSDP / DTensor), every rank must call ``generate`` with the
    same number of prompts (the same number of ``generate`` calls); ranks then step together.

    ``decode``: ``generate`` (``model.generate``), ``fast`` (:func:`mgs.rl.fast_decode.fast_decode`,
    the same greedy / keyed decoding on a lean loop; Qwen2 / Llama only, else
    :class:`mgs.errors.ConfigError`) or ``auto`` (``fast`` where supported). ``decode_loop`` holds
    the resolved choice.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        max_prompt_tokens: int,
        micro_batch_size: int,
        add_special_tokens: bool = False,
        decode: str = "generate",
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        if max_prompt_tokens < 1 or micro_batch_size < 1:
            raise ValueError(
                "max_prompt_tokens and micro_batch_size must be positive integers, got "
                f"{max_prompt_tokens} and {micro_batch_size}"
            )
        self.model: torch.nn.Module | None = model
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.micro_batch_size = micro_batch_size
        self.add_special_tokens = add_special_tokens
        self.compute_dtype = compute_dtype
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        peft_model = peft_model_of(model)  # a LoRA policy decodes with its (merged) base model
        decoded = model if peft_model is None else peft_model.get_base_model()
        self.decode_loop = resolve_decode(decoded, decode, sharded=_sharded_across_ranks(model))

    def generate(
        self,
        prompts: list[str],
        cfg: SamplingConfig,
        *,
        seed: int,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """``cfg.n`` completions per prompt. ``keys``: a global id per prompt (default: its index);
        with ``cfg.batch_invariant`` a completion depends only on ``(seed, key, rollout j)``."""
        policy = self._model()
        with merged_for_generation(policy) as model, _autocast(policy, self.compute_dtype):
            return self._generate(model, prompts, cfg, seed=seed, keys=keys)

    def _generate(
        self,
        model: torch.nn.Module,
        prompts: list[str],
        cfg: SamplingConfig,
        *,
        seed: int,
        keys: Sequence[int] | None,
    ) -> RolloutBatch:
        prompt_ids = self._encode(prompts)
        rows = [i for i in range(len(prompts)) for _ in range(cfg.n)]  # group-contiguous
        keys = list(range(len(prompts))) if keys is None else list(keys)
        if len(keys) != len(prompts):
            raise ValueError(f"got {len(keys)} keys for {len(prompts)} prompts")
        row_keys = [keys[i] * cfg.n + j for i in range(len(prompts)) for j in range(cfg.n)]
        keyed = cfg.batch_invariant and cfg.temperature > 0
        gen_cfg = self._generation_config(cfg, keyed=keyed)
        device = next(model.parameters()).device
        synced_gpus = _sharded_across_ranks(model)
        completions: list[Completion] = []
        saved = model.generation_config
        # Swap the checkpoint's generation config out: generate() would fill every field we leave
        # unset from it (repetition_penalty, min_p, ...).
        model.generation_config = gen_cfg
        try:
            with _eval_mode(model), _seeded(device, seed), torch.no_grad():
                for lo in range(0, len(rows), self.micro_batch_size):
                    chunk = rows[lo : lo + self.micro_batch_size]
                    ids, mask = _left_pad([prompt_ids[i] for i in chunk], self.pad_id, device)
                    processors = None
                    if keyed:
                        sampler = KeyedGumbelSampler(
                            seed,
                            torch.tensor(row_keys[lo : lo + len(chunk)]),
                            ids.shape[1],
                            temperature=cfg.temperature,
                            top_k=cfg.top_k,
                            top_p=cfg.top_p,
                        )
                        processors = LogitsProcessorList([sampler])
                    stopping = None
                    if cfg.stop:
                        stopping = StoppingCriteriaList(
                            [GeneratedStopStrings(cfg.stop, ids.shape[1], self.tokenizer)]
                        )
                    if self.decode_loop == "fast" and not (cfg.temperature > 0 and not keyed):
                        generated = fast_decode(
                            model,
                            ids,
                            mask,
                            max_new_tokens=cfg.max_new_tokens,
                            eos_ids=self.eos_ids,
                            pad_id=self.pad_id,
                            logits_processor=processors[0] if processors else None,
                            stop=stopping[0] if stopping else None,
                        )  # [b, R']
                    else:
                        out = model.generate(
                            input_ids=ids,
                            attention_mask=mask,
                            generation_config=gen_cfg,
                            logits_processor=processors,
                            stopping_criteria=stopping,
                            synced_gpus=synced_gpus,
                        )  # [b, P + R']
                        generated = out[:, ids.shape[1] :]
                    for i, row in zip(chunk, generated.tolist()):
                        completions.append(self._completion(i, prompt_ids[i], row, cfg))
        finally:
            model.generation_config = saved
        return RolloutBatch(completions=completions, n=cfg.n)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """No-op when generating with the training model itself; otherwise copy its weights."""
        own = self._model()
        if model is not own:
            own.load_state_dict(model.state_dict())

    def close(self) -> None:
        self.model = None

    # ------------------------------------------------------------------------- internals

    def _model(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError("this HFGenerateBackend was closed; build a new one")
        return self.model

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        if not prompts:
            raise ValueError("generate() needs at least one prompt")
        encoded = self.tokenizer(list(prompts), add_special_tokens=self.add_special_tokens)
        ids: list[list[int]] = encoded["input_ids"]
        for i, row in enumerate(ids):
            if not row:
                raise DataError(
                    f"prompt {i} is empty after tokenization; every prompt needs a token"
                )
            if len(row) > self.max_prompt_tokens:
                raise DataError(
                    f"prompt {i} has {len(row)} tokens, more than max_prompt_tokens="
                    f"{self.max_prompt_tokens}; filter long prompts in the data or raise the limit "
                    f"(prompt starts {prompts[i][:60]!r})"
                )
        return ids

    def _generation_config(self, cfg: SamplingConfig, *, keyed: bool = False) -> GenerationConfig:
        # Keyed sampling is greedy decoding over Gumbel-perturbed log-probs (mgs.rl.gumbel).
        sample = cfg.temperature > 0 and not keyed
        common = {
            "max_new_tokens": cfg.max_new_tokens,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
            "use_cache": True,
            "num_beams": 1,
            "repetition_penalty": 1.0,
        }
        if not sample:
            return GenerationConfig(do_sample=False, **common)
        return GenerationConfig(
            do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, **common
        )

    def _completion(
        self, prompt_index: int, prompt_ids: list[int], row: list[int], cfg: SamplingConfig
    ) -> Completion:
        def decode(ids: Sequence[int]) -> str:
            return self.tokenizer.decode(
                list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )

        end, reason = completion_end(row, self.eos_ids, cfg.stop, decode)
        kept = row[:end]
        text = self.tokenizer.decode(
            kept, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return Completion(prompt_index, list(prompt_ids), kept, text, reason)


class GeneratedStopStrings(StoppingCriteria):
    """Stop a row once its *generated* text contains a stop string.

    HF's ``stop_strings`` also match across the prompt / completion boundary (a prompt ending in
    ``?`` with the stop ``??`` stops after one token); this checks the decoded tail of the
    generated tokens only (the last ``max(len(stop))`` tokens: a token is at least one character).
    """

    def __init__(self, stops: Sequence[str], prompt_width: int, tokenizer) -> None:
        self.stops = list(stops)
        self.prompt_width = prompt_width
        self.tokenizer = tokenizer
        self.window = max(len(s) for s in self.stops)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        start = max(self.prompt_width, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(
            input_ids[:, start:].tolist(),
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        done = [any(stop in tail for stop in self.stops) for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [b, P]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [b, P]
    for j, r in enumerate(rows):
        ids[j, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[j, width - len(r) :] = 1
    return ids.to(device), mask.to(device)
