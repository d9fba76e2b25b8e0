"""Load a saved tokenizer exactly as it was saved.

A tokenizer saved as the generic fast class (``tokenizer_class: TokenizersBackend`` /
``PreTrainedTokenizerFast``, e.g. the tiny character-level one) must be loaded as that class:
transformers 5's ``AutoTokenizer`` picks the model type's own class instead (``Qwen2Tokenizer``
for the tiny Qwen2), whose pre-tokenizer drops every space. Any other tokenizer (and a hub name)
goes through ``AutoTokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def resolve_device(name: str, option: str = "model.device") -> Any:
    """``auto`` -> cuda when available, else cpu; an unusable device names ``option`` and the fix."""
    import torch

    from mgs.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"{option} {name!r} is not a torch device; write auto, cpu or cuda"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option} is cuda but no CUDA device is available; write {option}=cpu")
    return device


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_dir: str | Path) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = Path(name_or_dir) / "tokenizer_config.json"
    declared = None
    if config_file.is_file():
        try:
            declared = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class")
        except (json.JSONDecodeError, AttributeError):
            declared = None
    if declared in GENERIC_TOKENIZERS and (Path(name_or_dir) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(name_or_dir)
    return AutoTokenizer.from_pretrained(name_or_dir)
