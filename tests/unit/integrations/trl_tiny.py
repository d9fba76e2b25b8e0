"""Tiny TRL set-ups for the integration tests: an in-process 2-layer policy, a character tokenizer,
a dataset with a domain column and cheap rewards whose values vary inside every group (so the
advantages, hence the gradients, are not zero). Nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

TOPICS = ("cats", "dogs", "tea", "snow", "books", "music", "stars", "bread")


def tiny_policy(seed: int = 0):
    tokenizer = build_tiny_tokenizer()
    cfg = TinyModelConfig(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        intermediate_size=64,
        max_positions=128,
        seed=seed,
    )
    return build_tiny_policy(tokenizer, cfg), tokenizer


def tiny_dataset(domains: tuple[str, ...] = ("math", "chat"), rows: int = 16, order=None):
    """``rows`` prompts whose domains cycle through ``domains`` (or follow ``order``)."""
    from datasets import Dataset

    order = order or [domains[i % len(domains)] for i in range(rows)]
    prompts = [
        f"What is {i % 7} + {i % 5}?" if d == "math" else f"Tell me about {TOPICS[i % 8]}."
        for i, d in enumerate(order)
    ]
    return Dataset.from_dict({"prompt": prompts, "domain": list(order)})


def letter_fraction(prompts, completions, **kwargs) -> list[float]:
    return [sum(c.isalpha() for c in text) / max(len(text), 1) for text in completions]


def digit_fraction(prompts, completions, **kwargs) -> list[float]:
    return [sum(c.isdigit() or c in "+-" for c in text) / max(len(text), 1) for text in completions]


def grpo_config(out_dir: Path | str, **overrides: Any):
    """A GRPOConfig for CPU steps of a few milliseconds: SGD (so an update is lr x gradient)."""
    import trl

    values: dict[str, Any] = {
        "output_dir": str(out_dir),
        "max_steps": 1,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 2,
        "max_completion_length": 8,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "beta": 0.0,
        "loss_type": "dapo",
        "learning_rate": 0.5,
        "optim": "sgd",
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "shuffle_dataset": False,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
        "logging_steps": 1,
        "log_completions": False,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    values.update(overrides)
    return trl.GRPOConfig(**values)
