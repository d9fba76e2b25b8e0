"""Train the built-in tiny reward model: a Bradley-Terry loss on (prompt, chosen, rejected) pairs.

The result is an ordinary Hugging Face directory (``save_pretrained``: safetensors weights, the
tokenizer with its chat template), so the tiny default is scored by
:class:`~mgs.rewards.reward_model.RewardModelScorer` through exactly the code path a real reward
model takes. Conversations are rendered with the same function the scorer uses.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgs.dataclass_config import option, to_dict
from mgs.errors import ConfigError, DataError
from mgs.rewards.reward_model import render_conversations
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_reward_model, build_tiny_tokenizer

log = logging.getLogger(__name__)
SUMMARY_FILE = "rm_train_summary.json"


def _small_model() -> TinyModelConfig:
    # Smaller than the policy: the preference is a surface property of short text.
    return TinyModelConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=128,
        max_positions=512,
    )


@dataclass
class TinyRMConfig:
    """How the tiny reward model is trained."""

    model: TinyModelConfig = option(
        default_factory=_small_model, help="Size of the tiny reward model."
    )
    epochs: int = option(2, help="Passes over the training pairs.")
    batch_size: int = option(32, help="Pairs per optimizer step.")
    lr: float = option(3e-3, help="AdamW learning rate.")
    weight_decay: float = option(0.01, help="AdamW weight decay.")
    eval_fraction: float = option(0.1, help="Share of the pairs held out to measure accuracy.")
    max_length: int = option(256, help="Longest rendered conversation in tokens (characters).")
    seed: int = option(0, help="Seed of the split, the shuffling and the initialisation.")
    num_threads: int = option(
        1,
        help="CPU threads while training (0: leave torch's setting); a model this small trains "
        "fastest on one, and far faster than on two when other processes share the cores.",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("rm.epochs and rm.batch_size must be >= 1")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(
                f"rm.eval_fraction must be in (0, 1), e.g. 0.1; got {self.eval_fraction}"
            )
        if not self.lr > 0:
            raise ConfigError(f"rm.lr must be > 0, e.g. 2e-3; got {self.lr}")
        if self.max_length > self.model.max_positions:
            raise ConfigError(
                f"rm.max_length ({self.max_length}) exceeds rm.model.max_positions "
                f"({self.model.max_positions}); lower the first or raise the second"
            )


Pair = tuple[str, str, str]  # (user prompt, chosen response, rejected response)


def _check_pairs(pairs: list[Pair]) -> None:
    if len(pairs) < 4:
        raise DataError(
            f"need at least 4 preference pairs to train and hold some out; got {len(pairs)}"
        )
    for n, pair in enumerate(pairs):
        if len(pair) != 3 or not all(isinstance(x, str) for x in pair):
            raise DataError(
                f"preference pair {n} must be (prompt, chosen, rejected) strings; got {pair!r}"
            )


def _rewards(
    model: Any, tokenizer: Any, prompts: list[str], responses: list[str], max_length: int
) -> Any:
    enc = tokenizer(
        render_conversations(tokenizer, prompts, responses),
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=max_length,
        add_special_tokens=False,
    )
    return model(**enc).logits[:, 0]  # [B]


def pair_accuracy(
    model: Any, tokenizer: Any, pairs: list[Pair], max_length: int, batch: int = 64
) -> float:
    """Share of pairs whose chosen response scores strictly higher than the rejected one."""
    import torch

    model.eval()
    wins = 0
    with torch.inference_mode():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s : s + batch]
            prompts = [p for p, _, _ in chunk]
            r_c = _rewards(model, tokenizer, prompts, [c for _, c, _ in chunk], max_length)
            r_r = _rewards(model, tokenizer, prompts, [r for _, _, r in chunk], max_length)
            wins += int((r_c > r_r).sum())
    return wins / len(pairs)


def _fit(
    model: Any, tokenizer: Any, train: list[Pair], cfg: TinyRMConfig, generator: Any
) -> list[float]:
    """The Bradley-Terry training loop; returns the loss of every step."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    for _epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=generator).tolist()
        for s in range(0, len(perm), cfg.batch_size):
            chunk = [train[i] for i in perm[s : s + cfg.batch_size]]
            prompts = [p for p, _, _ in chunk]
            # chosen and rejected in one forward pass: [2B]
            scores = _rewards(
                model,
                tokenizer,
                prompts + prompts,
                [c for _, c, _ in chunk] + [r for _, _, r in chunk],
                cfg.max_length,
            )
            r_chosen, r_rejected = scores[: len(chunk)], scores[len(chunk) :]
            loss = -F.logsigmoid(r_chosen - r_rejected).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return losses


def train_tiny_reward_model(
    pairs: list[Pair], out_dir: str | Path, cfg: TinyRMConfig | None = None
) -> Path:
    """Train on ``pairs`` with ``-logsigmoid(r_chosen - r_rejected)``, save, return ``out_dir``.

    A seeded ``eval_fraction`` of the pairs is held out; the held-out pair accuracy is logged and
    written with the config to ``out_dir/rm_train_summary.json``.
    """
    import torch

    cfg = cfg or TinyRMConfig()
    _check_pairs(pairs)
    rng = random.Random(cfg.seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    n_eval = max(1, round(len(pairs) * cfg.eval_fraction))
    held_out = [pairs[i] for i in order[:n_eval]]
    train = [pairs[i] for i in order[n_eval:]]

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_reward_model(tokenizer, cfg.model)
    generator = torch.Generator().manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            losses = _fit(model, tokenizer, train, cfg, generator)
        accuracy = pair_accuracy(model, tokenizer, held_out, cfg.max_length)
        train_accuracy = pair_accuracy(model, tokenizer, train[: len(held_out) * 4], cfg.max_length)
    finally:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = {
        "held_out_accuracy": accuracy,
        "train_accuracy": train_accuracy,
        "train_pairs": len(train),
        "held_out_pairs": len(held_out),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "config": to_dict(cfg),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("tiny reward model: held-out pair accuracy %.3f on %d pairs", accuracy, len(held_out))
    return out
