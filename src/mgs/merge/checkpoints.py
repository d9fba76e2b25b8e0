"""Read models for merging, check they share one base, write the merged Hugging Face directory.

Weights are read tensor by tensor from safetensors files (``safe_open``), so merging N models
holds one tensor of each at a time plus the merged shard being written. The output directory is
what ``save_pretrained`` writes: ``model.safetensors`` (or shards of at most ``max_shard_bytes``
with ``model.safetensors.index.json``), the base's ``config.json``, generation config and
tokenizer files (every non-weight file of the base directory), and ``merge_config.json``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError, DataError
from mgs.models.lora import is_adapter_dir
from mgs.run_dir import RunDir

WEIGHT_INDEX = "model.safetensors.index.json"
# Config keys that differ between copies of one architecture (saving, not the model itself).
_VOLATILE = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def model_dir(path: str | Path) -> Path:
    """A Hugging Face model directory: ``path`` itself, or ``path/model`` for an mgs run (a LoRA
    run's merged policy ``model_merged/``: its ``model/`` is an adapter)."""

    p = Path(path)
    run = RunDir(p)
    if run.is_trained():
        p = run.policy_dir()
    if is_adapter_dir(p):
        raise DataError(
            f"{str(path)!r} holds a LoRA adapter, not full weights; merge the run's merged policy "
            "(train it with logging.save_merged: true: it is written to model_merged/)"
        )
    if not (p / "config.json").is_file():
        raise DataError(
            f"{str(path)!r} is not a model directory (no config.json); pass a Hugging Face "
            "directory or an mgs run directory (config.yaml + model/)"
        )
    return p


@dataclass
class Weights:
    """The tensors of one model directory: name -> the safetensors file holding it."""

    directory: Path
    files: dict[str, Path]
    config: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Weights:
        from safetensors import safe_open

        d = model_dir(path)
        index = d / WEIGHT_INDEX
        if index.is_file():
            mapping = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = {name: d / file for name, file in mapping.items()}
        else:
            single = sorted(d.glob("*.safetensors"))
            if not single:
                raise DataError(
                    f"{d} has no safetensors weights; save the model with save_pretrained "
                    "(safe_serialization, the default) before merging"
                )
            files = {}
            for file in single:
                with safe_open(str(file), framework="pt") as f:
                    files.update(dict.fromkeys(f.keys(), file))
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
        return cls(d, files, config)

    def tensor(self, name: str) -> Any:
        from safetensors import safe_open

        with safe_open(str(self.files[name]), framework="pt") as f:
            return f.get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        from safetensors import safe_open

        with safe_open(str(self.files[name]), framework="pt") as f:
            return tuple(f.get_slice(name).get_shape())


def check_same_base(base: Weights, models: list[Weights]) -> None:
    """Every model must have the base's architecture: its config (save for saving details), its
    parameter names and its shapes. The first difference is the error."""
    want = {k: v for k, v in base.config.items() if k not in _VOLATILE}
    for m in models:
        got = {k: v for k, v in m.config.items() if k not in _VOLATILE}
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                raise ConfigError(
                    f"{m.directory} does not share the base's architecture: config.json "
                    f"{key} is {got.get(key)!r}, the base's ({base.directory}) is "
                    f"{want.get(key)!r}; merge only models fine-tuned from --base"
                )
        missing = sorted(set(base.files) ^ set(m.files))
        if missing:
            raise ConfigError(
                f"{m.directory} and the base {base.directory} have different parameters "
                f"(e.g. {missing[0]!r}); merge only models fine-tuned from --base"
            )
        for name in base.files:
            if base.shape(name) != m.shape(name):
                raise ConfigError(
                    f"parameter {name!r} has shape {m.shape(name)} in {m.directory} but "
                    f"{base.shape(name)} in the base; merge only models fine-tuned from --base"
                )


def write_merged(
    base: Weights,
    merge: Callable[[str], Any],
    out: Path,
    info: dict[str, Any],
    max_shard_bytes: int = 5 * 1024**3,
) -> list[Path]:
    """Write ``merge(name)`` for every tensor of the base into ``out`` with the base's other files.

    Returns the weight files written."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("*.safetensors")):
        raise ConfigError(f"{out} already holds weights; pass a new --out directory")
    for item in base.directory.iterdir():
        if (
            item.is_file()
            and not item.name.endswith(_WEIGHT_SUFFIXES)
            and item.name != WEIGHT_INDEX
        ):
            shutil.copy2(item, out / item.name)
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for name in sorted(base.files):
        tensor = merge(name).contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    written = []
    if len(shards) == 1:
        written.append(out / "model.safetensors")
        save_file(shards[0], str(written[0]), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            path = out / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, path.name))
            written.append(path)
        index = {"metadata": {}, "weight_map": weight_map}
        (out / WEIGHT_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
    (out / "merge_config.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return written
