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

from mgs.models.lora import ADAPTER_CONFIG, is_adapter_dir


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


def load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` raises for a directory or name it cannot use: missing files
    (OSError), files it cannot parse (ValueError), damaged safetensors (SafetensorError)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, SafetensorError)


def model_dir_problem(path: str | Path) -> str | None:
    """What visibly stops ``from_pretrained`` in the local directory ``path``, or None.

    Checked: ``config.json`` (``adapter_config.json`` in a peft adapter directory, what a LoRA
    run's checkpoints hold) is there and is JSON; every ``*.safetensors`` file's header opens and
    its tensors fit in the file (a truncated copy fails here, named); every shard an
    ``*.index.json`` names exists; a zip-format ``*.bin`` still has its directory (a truncated
    one loses it). Reads headers only, so it costs milliseconds even for a 7B model.
    """
    p = Path(path)
    config = p / "config.json"
    if is_adapter_dir(p):  # a LoRA run's checkpoint: peft's adapter, no config.json
        config = p / ADAPTER_CONFIG
    elif not config.is_file():
        return "config.json is missing (every Hugging Face model directory has one)"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{config.name} is not valid JSON ({exc})"
    for index in sorted(p.glob("*.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return f"{index.name} is damaged (not a JSON weight map)"
        missing = sorted(s for s in shards if not (p / s).is_file())
        if missing:
            return f"{index.name} names weight files that are missing: {', '.join(missing)}"
    for weights in sorted(p.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem:
            return f"{weights.name} is damaged ({problem}; truncated by an interrupted copy?)"
    for weights in sorted(p.glob("*.bin")):
        if _truncated_zip(weights):
            return f"{weights.name} is damaged (its zip directory is missing: truncated?)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return None
    except (SafetensorError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _truncated_zip(path: Path) -> bool:
    """A file that starts as a zip (torch.save's format) but whose zip directory cannot be read."""
    import zipfile

    try:
        with open(path, "rb") as f:
            if f.read(2) != b"PK":
                return False  # the legacy pickle format: nothing cheap to check
        with zipfile.ZipFile(path):
            return False
    except (zipfile.BadZipFile, OSError):
        return True
