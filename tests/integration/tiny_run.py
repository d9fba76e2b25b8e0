"""The small `mgs train` config the end-to-end tests (resume, distributed) start from.

Two domains with their real rewards (math-verify, IFEval), a 2-layer tiny model, no warm start and
no held-out eval, so a run takes seconds; each test changes what it needs with :func:`merged`.
"""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {
    "steps": 2,
    "seed": 1,
    "num_threads": 1,
    "model": {
        "name": "tiny",
        "tiny": {"hidden_size": 32, "num_layers": 2, "intermediate_size": 64},
    },
    "data": {
        "sources": [
            {"domain": "math", "synthetic": "tiny_math", "size": 64},
            {"domain": "if", "synthetic": "tiny_if", "size": 64},
        ],
        "template": {"name": "custom", "text": "User: <query>{prompt}</query>\nAssistant:"},
        "max_prompt_tokens": 256,
        "mixture": {"batch_size": 4, "proportions": {"math": 1, "if": 1}},
    },
    "rewards": {
        "routes": {"math": "math", "if": "ifeval"},
        "extraction": {"on_missing_response": "after_think"},
        "math": {"num_workers": 1},
    },
    "rollout": {"sampling": {"n": 2, "max_new_tokens": 16, "temperature": 1.0}},
    "grpo": {"micro_batch_size": 2, "loss": {"kl_coef": 0.001, "entropy_coef": 0.001}},
    "optim": {"lr": 1.0e-2},
    "warmstart": {"sft": {"steps": 0}},
    "eval": {"prompts_per_domain": 0},
    "logging": {"progress": False, "save_model": False},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def tiny_run_config(**changes: Any) -> dict[str, Any]:
    """:data:`BASE` with top-level sections changed, e.g. ``tiny_run_config(steps=6)``."""
    return merged(BASE, changes)
