"""Batch-invariant sampling: a completion depends on (seed, prompt, rollout), never on its batch.

``model.generate(do_sample=True)`` draws every token of a batch from one random stream, so the
completion of a prompt changes with the other prompts in its batch, the micro-batch size, and the
number of ranks the batch is sharded over. Here each token is drawn with the Gumbel-max trick,
``argmax(log_softmax(logits / T) + G)`` with ``G`` Gumbel noise, where ``G`` is a pure function of
``(seed, sequence key, generated position, token id)`` (counter-based, splitmix64 hashing, fully
vectorised). The result is an exact sample of the same distribution as ordinary sampling (with
the same temperature / top-k / top-p), and a 2-rank run generates exactly the rollouts a 1-rank
run does on the same global batch, which is what makes distributed runs testable against a
single process. Written by hand: no library offers keyed, batch-invariant sampling for ``generate``.
"""

from __future__ import annotations

import torch

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # as signed int64
_M1 = 0xBF58476D1CE4E5B9 - 2**64
_M2 = 0x94D049BB133111EB - 2**64
_K1, _K2, _K3 = 0x632BE59BD9B4E019 - 2**64, 0x2545F4914F6CDD1D, 0x5851F42D4C957F2D


def _i64(value: int, device: torch.device) -> torch.Tensor:
    """A Python int as an int64 tensor, wrapped modulo 2**64 (Python ints do not wrap)."""
    value %= 2**64
    return torch.tensor(
        value - 2**64 if value >= 2**63 else value, dtype=torch.int64, device=device
    )


def _lshr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (``>>`` is arithmetic for signed tensors)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps modulo 2**64)."""
    x = x ^ _lshr(x, 30)
    x = x * _i64(_M1, x.device)
    x = x ^ _lshr(x, 27)
    x = x * _i64(_M2, x.device)
    return x ^ _lshr(x, 31)


def keyed_uniform(seed: int, keys: torch.Tensor, position: int, vocab: int) -> torch.Tensor:
    """``[B, V]`` uniforms in (0, 1), a pure function of ``(seed, keys[b], position, v)``."""
    device = keys.device
    offset = _i64(seed * _K2 + position * _K3, device)
    base = _mix(keys.to(torch.int64) * _i64(_K1, device) + offset)  # [B]
    tokens = torch.arange(vocab, device=device, dtype=torch.int64) * _i64(_GOLDEN, device)  # [V]
    bits = _lshr(_mix(base[:, None] + tokens[None, :]), 11)  # [B, V], 53 random bits
    return (bits.to(torch.float64) + 0.5) * 2.0**-53


def filtered_logprobs(
    scores: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """``log_softmax(scores / T)`` with top-k / top-p filtered tokens at ``-inf``: ``[B, V]``."""
    logits = scores.float() / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass strictly before each token
        drop_sorted = before >= top_p  # always keeps the most likely token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


class KeyedGumbelSampler:
    """A ``generate`` logits processor that turns greedy decoding into keyed sampling.

    Use with ``do_sample=False``: the returned scores are ``log p + Gumbel noise``, so the greedy
    argmax is a sample from ``p``. ``keys`` [B]: one integer per row (e.g. ``prompt * n + j``);
    ``prompt_width``: the padded prompt length of this call, so positions count generated tokens.
    """

    def __init__(
        self,
        seed: int,
        keys: torch.Tensor,
        prompt_width: int,
        *,
        temperature: float,
        top_k: int = 0,
        top_p: float = 1.0,
    ) -> None:
        if not temperature > 0:
            raise ValueError("keyed sampling needs temperature > 0; use greedy decoding for 0")
        self.seed, self.keys, self.prompt_width = seed, keys, prompt_width
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        position = input_ids.shape[1] - self.prompt_width
        logp = filtered_logprobs(scores, self.temperature, self.top_k, self.top_p)  # [B, V]
        u = keyed_uniform(self.seed, self.keys.to(scores.device), position, scores.shape[-1])
        gumbel = -torch.log(-torch.log(u))  # [B, V] float64
        return (logp.double() + gumbel).to(scores.dtype)
