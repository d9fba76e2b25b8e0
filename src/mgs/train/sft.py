"""Supervised fine-tuning on (prompt, completion) demonstrations: the warm-start before RL.

Cross-entropy on the completion tokens only (the prompt is context, not a target), AdamW with a
short linear warm-up, seeded batches. Used by the embedded default to give the tiny model the
zero-think format before GRPO; any Hugging Face causal LM works the same way.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import nn

from mgs.rl.logprobs import position_ids_from_mask


def encode_demonstrations(
    tokenizer, pairs: list[tuple[str, str]], max_tokens: int
) -> list[tuple[list[int], int]]:
    """``(prompt, completion)`` -> ``(token ids, prompt length)``; EOS appended to the completion."""
    out = []
    eos = tokenizer.eos_token_id
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos]
        ids = (p + c)[:max_tokens]
        out.append((ids, len(p)))
    return out


def _collate(rows: list[tuple[list[int], int]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, plen) in enumerate(rows):  # right padding: positions start at 0 for every row
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, plen : len(ids)] = torch.tensor(ids[plen:])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def supervised_finetune(
    model: nn.Module,
    tokenizer,
    pairs: list[tuple[str, str]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    max_tokens: int = 1024,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place for ``steps`` steps; returns the per-step losses."""
    rows = encode_demonstrations(tokenizer, pairs, max_tokens)
    if not rows:
        raise ValueError("supervised_finetune needs at least one demonstration")
    rng = random.Random(seed)
    order: list[int] = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / max(1, steps))
    )
    model.train()
    losses = []
    pad = tokenizer.pad_token_id
    for step in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chosen, order = order[:batch_size], order[batch_size:]
        batch = {k: v.to(device) for k, v in _collate([rows[i] for i in chosen], pad).items()}
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=position_ids_from_mask(batch["attention_mask"]),
        ).logits  # [B, T, V]
        loss = nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            batch["labels"][:, 1:].reshape(-1),
            ignore_index=-100,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
