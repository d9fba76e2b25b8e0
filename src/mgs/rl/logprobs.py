"""Log-probabilities (and entropies) of the response tokens under a causal LM.

Layout: ``input_ids [B, T]`` is one row per completion, a left-padded prompt followed by a
right-padded response (what :meth:`mgs.rl.rollout.RolloutBatch.to_tensors` builds);
``response_mask [B, T]`` is 1 on response tokens. The outputs are aligned with ``input_ids``:
``logp[b, t] = log p(input_ids[b, t] | input_ids[b, :t])`` on response tokens, 0 elsewhere.

Three details keep these log-probs equal to the sampling distribution of ``generate``:
- logits are divided by the sampling temperature before the softmax (as verl does);
- ``position_ids`` are computed from the attention mask (first real token = position 0), as
  Hugging Face ``generate`` does for left-padded prompts; a plain forward would number the padding;
- the token at ``t`` is scored by the logits at ``t - 1`` (the shift).

Memory: logits are only projected for the positions that predict response tokens (the model's
``logits_to_keep``), the log-softmax is never materialised (``gather - logsumexp``), and
``chunk_size`` runs the forward over that many rows at a time.
"""

from __future__ import annotations

import inspect

import torch

from mgs.rl.losses import entropy_from_logits

__all__ = ["position_ids_from_mask", "response_logprobs"]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` positions counting real tokens from 0; padding gets 0 (as HF ``generate``)."""
    positions = attention_mask.long().cumsum(dim=-1) - 1  # [B, T]
    return positions.masked_fill(attention_mask == 0, 0)


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    params = inspect.signature(model.forward).parameters.values()
    return any(p.name == "logits_to_keep" or p.kind is p.VAR_KEYWORD for p in params)


def response_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``[B, T]`` (float32, 0 outside the response) and, with
    ``with_entropy``, the entropy ``[B, T]`` of each response position's next-token distribution.

    Runs under whatever grad mode the caller set: wrap it in ``torch.no_grad()`` for the old and
    reference log-probs; leave grad on for the policy's. ``temperature`` must be the sampling
    temperature (> 0; for greedy rollouts pass 1.0). ``chunk_size`` = rows per forward pass.
    """
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; pass the sampling temperature "
            "(1.0 for greedy rollouts)"
        )
    if not input_ids.shape == attention_mask.shape == response_mask.shape or input_ids.ndim != 2:
        raise ValueError(
            "input_ids, attention_mask and response_mask must all be [B, T]; got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(response_mask.shape)}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    batch, length = input_ids.shape
    response = response_mask.bool()  # [B, T]
    columns = response.any(dim=0).nonzero()  # [C, 1]: columns holding a response token
    if columns.numel() == 0:  # no response token at all
        zeros = torch.zeros(batch, length, dtype=torch.float32, device=input_ids.device)
        return zeros, (zeros.clone() if with_entropy else None)
    start = int(columns[0, 0])  # first response column (one host sync per call)
    if start == 0:
        raise ValueError("a response token sits at position 0, where nothing predicts it")
    keep = length - start + 1  # logits at positions start-1 .. T-1
    extra = {"logits_to_keep": keep} if _accepts_logits_to_keep(model) else {}
    position_ids = position_ids_from_mask(attention_mask)  # [B, T]
    rows = chunk_size or batch
    logp_parts: list[torch.Tensor] = []
    entropy_parts: list[torch.Tensor] = []
    entropy: torch.Tensor | None = None
    for lo in range(0, batch, rows):
        sl = slice(lo, lo + rows)
        logits = model(
            input_ids=input_ids[sl],
            attention_mask=attention_mask[sl],
            position_ids=position_ids[sl],
            use_cache=False,
            **extra,
        ).logits  # [b, keep, V] (or [b, T, V] without logits_to_keep)
        logits = logits[:, -keep:-1].float() / temperature  # [b, T - start, V]: predict start..T-1
        targets = input_ids[sl, start:].unsqueeze(-1)  # [b, T - start, 1]
        picked = logits.gather(-1, targets).squeeze(-1)  # [b, T - start]
        logp_parts.append(picked - torch.logsumexp(logits, dim=-1))
        if with_entropy:
            entropy_parts.append(entropy_from_logits(logits))
        del logits
    window = response[:, start:]  # [B, T - start]
    head = torch.zeros(batch, start, dtype=torch.float32, device=input_ids.device)  # [B, start]
    # torch.where, not a product: padding positions never leak a NaN into the result or its grad.
    logp = torch.cat([head, torch.where(window, torch.cat(logp_parts), 0.0)], dim=1)  # [B, T]
    if with_entropy:
        entropy = torch.cat([head, torch.where(window, torch.cat(entropy_parts), 0.0)], dim=1)
    return logp, entropy
