"""Rollouts: the sampling config, what a backend returns, and the interface every backend implements.

A backend turns prompt strings into ``n`` completions each. The result, :class:`RolloutBatch`, is
*group-contiguous*: prompt ``i``'s ``n`` completions are entries ``i*n .. i*n+n-1`` — the layout
:func:`mgs.rl.advantages.group_advantages` expects. Each completion holds its token ids (ending
with the EOS or stop-string token when it stopped) and its text, which always agree: the text is
the decode of exactly those ids, without special tokens.

:class:`mgs.rl.hf_generate.HFGenerateBackend` implements it with Hugging Face ``generate``; a vLLM
backend implements the same three methods (see docs/rl.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

from mgs.dataclass_config import option
from mgs.errors import ConfigError

__all__ = ["Completion", "FinishReason", "RolloutBackend", "RolloutBatch", "SamplingConfig"]

FinishReason = Literal["stop", "length"]


@dataclass
class SamplingConfig:
    """How rollouts are sampled; defaults are the paper's (docs/method.md)."""

    n: int = option(8, help="Rollouts per prompt (the GRPO group size).")
    temperature: float = option(
        0.7, help="Sampling temperature; 0 means greedy decoding (every rollout identical)."
    )
    top_p: float = option(
        1.0, help="Nucleus sampling: keep the smallest set of tokens with this mass."
    )
    top_k: int = option(0, help="Keep only the k most likely tokens; 0 disables it.")
    max_new_tokens: int = option(4096, help="Longest response, in tokens.")
    stop: list[str] = option(
        default_factory=lambda: ["</response>"],
        help="Strings that end a response (kept in it, like EOS); [] stops at EOS only.",
    )
    seed: int = option(
        0, help="Base seed of the rollouts; the trainer passes a per-step seed derived from it."
    )
    batch_invariant: bool = option(
        True,
        help="Draw each token with keyed Gumbel-max noise, so a completion depends only on "
        "(seed, prompt, rollout), not on batch composition, micro-batch size or world size "
        "(same distribution as ordinary sampling). false: generate()'s own sampler.",
    )

    def __post_init__(self) -> None:
        checks = [
            ("n", self.n >= 1, "a positive integer, e.g. n: 8"),
            (
                "temperature",
                0 <= self.temperature < math.inf,
                "a number >= 0, e.g. 0.7 (0 = greedy)",
            ),
            ("top_p", 0 < self.top_p <= 1, "a number in (0, 1], e.g. 1.0 (no nucleus cut)"),
            ("top_k", self.top_k >= 0, "an integer >= 0, e.g. 0 (off)"),
            ("max_new_tokens", self.max_new_tokens >= 1, "a positive integer, e.g. 1024"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}; got {getattr(self, name)!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError(
                f"stop must be a list of non-empty strings, got {self.stop!r}; "
                'write e.g. stop: ["</response>"]'
            )

    def step_seed(self, step: int) -> int:
        """The seed to pass to :meth:`RolloutBackend.generate` at training step ``step``."""
        return self.seed * 1_000_003 + step


@dataclass(frozen=True)
class Completion:
    """One rollout: a prompt's token ids and one completion of it."""

    prompt_index: int  # index of its prompt in the list given to generate()
    prompt_ids: list[int]
    completion_ids: list[int]  # incl. the final EOS / stop-string token; no padding
    text: str  # decode(completion_ids) without special tokens
    finish_reason: FinishReason  # "stop": EOS or a stop string; "length": max_new_tokens reached


@dataclass
class RolloutBatch:
    """The completions of one generate() call, group-contiguous (``n`` per prompt)."""

    completions: list[Completion]
    n: int  # rollouts per prompt

    def __post_init__(self) -> None:
        if self.n < 1 or len(self.completions) % self.n:
            raise ValueError(
                f"{len(self.completions)} completions do not form groups of n={self.n}"
            )
        for j, c in enumerate(self.completions):
            if c.prompt_index != j // self.n:
                raise ValueError(
                    f"completion {j} belongs to prompt {c.prompt_index}, but the layout is "
                    f"group-contiguous: it must belong to prompt {j // self.n}"
                )

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def num_prompts(self) -> int:
        return len(self.completions) // self.n

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @property
    def prompt_index(self) -> list[int]:
        return [c.prompt_index for c in self.completions]

    def to_tensors(
        self, pad_token_id: int, rows: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask``, ``response_mask``, each ``[N, P + R]`` (long).

        Row ``j`` = prompt left-padded to ``P`` (the longest prompt) then completion right-padded
        to ``R`` (the longest completion), so every response starts at column ``P``.
        ``response_mask`` is 1 on completion tokens, including the final EOS / stop token.
        ``rows`` selects completions (in that order; e.g. one domain's micro-batch), padded to
        their own widths; default all.
        """
        chosen = self.completions if rows is None else [self.completions[j] for j in rows]
        if not chosen:
            raise ValueError("to_tensors needs at least one completion")
        width_p = max(len(c.prompt_ids) for c in chosen)
        width_r = max(len(c.completion_ids) for c in chosen)
        shape = (len(chosen), width_p + width_r)
        input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        response_mask = torch.zeros(shape, dtype=torch.long)
        for j, c in enumerate(chosen):
            p, r = len(c.prompt_ids), len(c.completion_ids)
            input_ids[j, width_p - p : width_p] = torch.tensor(c.prompt_ids, dtype=torch.long)
            input_ids[j, width_p : width_p + r] = torch.tensor(c.completion_ids, dtype=torch.long)
            attention_mask[j, width_p - p : width_p + r] = 1
            response_mask[j, width_p : width_p + r] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "response_mask": response_mask,
        }


@runtime_checkable
class RolloutBackend(Protocol):
    """What the trainer needs from a generation engine (HF generate, vLLM, ...)."""

    def generate(
        self,
        prompts: list[str],
        cfg: SamplingConfig,
        *,
        seed: int,
        keys: Sequence[int] | None = None,
    ) -> RolloutBatch:
        """``cfg.n`` completions of every prompt, group-contiguous; the same ``seed`` (and inputs)
        gives the same completions, and the caller's global RNG state is left untouched.
        ``keys``: a global id per prompt; with ``cfg.batch_invariant`` a completion depends only
        on ``(seed, key, rollout index)``, whatever else is in the batch."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (call after optimizer steps)."""
        ...

    def close(self) -> None:
        """Release the engine's resources; the backend is unusable afterwards."""
        ...
