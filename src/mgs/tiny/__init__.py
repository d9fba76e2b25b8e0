"""The built-in demo: everything ``mgs train`` with no config needs, built in-process on a CPU.

- :mod:`~mgs.tiny.config`: the tiny model's size and the warm-start sections of the run config;
- :mod:`~mgs.tiny.model`: a character-level tokenizer and a small Qwen2 (policy and reward model);
- :mod:`~mgs.tiny.domains`: the ``tiny_math``, ``tiny_if`` and ``tiny_chat`` generators, with
  (careless) demonstrations and chat preference pairs;
- :mod:`~mgs.tiny.reward_model`: the Bradley-Terry training of the tiny chat reward model;
- :mod:`~mgs.tiny.warmstart`: the cached warm start (SFT on the demonstrations) and reward model;
- ``tiny.yaml``: the embedded default run config.

It plugs into the library through its registries, like a user's own extension would: the
generators (``synthetic: tiny_math``), the builtin models (``model.name: tiny``) and the builtin
reward models (``rewards.reward_model.path: builtin:tiny``). Importing it is light: torch and
transformers load when a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgs.models.registry import BuiltinModel, register_model
from mgs.rewards.builtin import register_builtin_reward_model
from mgs.tiny import domains as _domains  # noqa: F401  (registers the tiny generators)

DEFAULT_CONFIG = Path(__file__).resolve().parent / "tiny.yaml"


def _tokenizer(model_cfg: Any) -> Any:
    from mgs.tiny.model import build_tiny_tokenizer

    return build_tiny_tokenizer()


def _policy(model_cfg: Any, tokenizer: Any) -> Any:
    from mgs.tiny.model import build_tiny_policy

    return build_tiny_policy(tokenizer, model_cfg.tiny)


def _reward_model(train_cfg: Any, echo: Any) -> Path:
    from mgs.tiny.warmstart import tiny_reward_model

    return tiny_reward_model(train_cfg, echo)


register_model("tiny", BuiltinModel(tokenizer=_tokenizer, policy=_policy))
register_builtin_reward_model("tiny", _reward_model)
