"""LoRA rollouts on vLLM: the engine serves the frozen base model with ``enable_lora`` and each
generation names the policy's current adapter in a ``LoRARequest`` (vLLM's LoRA support).

After every optimizer step :meth:`AdapterSync.push` writes the adapter (peft's
``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``) into a fresh
directory of this process and makes a new ``LoRARequest(lora_name, lora_int_id, lora_path)``
with the next id: vLLM caches adapters by id, so a new id makes it load the new weights (its
LRU evicts the previous adapter: ``max_loras=1``). The base weights never change, so nothing else
is pushed. Directories of older adapters are deleted once a newer one exists (vLLM reads an
adapter when a request first names it, during ``generate``).

Engine arguments: ``enable_lora=True``, ``max_loras=1`` and ``max_lora_rank`` = the smallest rank
vLLM accepts (``LoRAConfig``'s ``max_lora_rank`` literal: 1, 8, 16, 32, 64, 128, 256, 320, 512)
that holds the adapter's ``r``. vLLM applies LoRA to linear layers; adapters on the embeddings or
the output head (``embed_tokens``, ``lm_head``) are refused here, as vLLM refuses
``modules_to_save`` and DoRA.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mgs.errors import ConfigError

__all__ = ["VLLM_LORA_RANKS", "AdapterSync", "lora_engine_kwargs"]

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks
_NOT_LINEAR = ("embed_tokens", "lm_head")


def lora_engine_kwargs(config: Any) -> dict[str, Any]:
    """The ``EngineArgs`` fields that let the engine serve the adapter of peft's ``config``."""
    targets = config.target_modules
    names = [targets] if isinstance(targets, str) else list(targets or [])
    refused = [name for name in names if name in _NOT_LINEAR]
    if refused or config.modules_to_save or getattr(config, "use_dora", False):
        what = ", ".join(refused) or "modules_to_save / DoRA"
        raise ConfigError(
            f"rollout.backend: vllm serves LoRA adapters on linear layers only, and this "
            f"policy's adapter covers {what}; drop them from model.lora.target_modules, or use "
            "rollout.backend: hf"
        )
    rank = next((r for r in VLLM_LORA_RANKS if r >= config.r), None)
    if rank is None:
        raise ConfigError(
            f"model.lora.r is {config.r}, above vLLM's largest max_lora_rank "
            f"({VLLM_LORA_RANKS[-1]}); lower it or use rollout.backend: hf"
        )
    return {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}


class AdapterSync:
    """The adapters this process has written for its engine, and the request naming the newest."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mgs-vllm-lora-"))
        self.version = 0  # the lora_int_id of the newest adapter (vLLM's ids start at 1)
        self.request: Any = None
        self._written: list[Path] = []

    def push(self, model: Any, api: Any) -> Any:
        """Write ``model``'s adapter and return the ``LoRARequest`` that names it. Gathers FSDP2
        shards (a collective: every rank calls it; each writes its own copy)."""
        from mgs.models.lora import adapter_state, save_adapter

        state = adapter_state(model)
        path = self.root / f"adapter-{self.version + 1:06d}"
        save_adapter(model, path, state)
        self._written.append(path)
        return self._issue(api, path)

    def reissue(self, api: Any) -> Any:
        """The newest adapter under a new id: vLLM reloads it (after its weights were dropped)."""
        if not self._written:
            raise RuntimeError("no adapter was pushed yet")
        return self._issue(api, self._written[-1])

    def prune(self) -> None:
        """Delete the adapters older than the newest (call after a generation used the newest)."""
        for old in self._written[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        self._written = self._written[-1:]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._written, self.request = [], None

    def _issue(self, api: Any, path: Path) -> Any:
        self.version += 1
        self.request = api.LoRARequest(
            lora_name=f"mgs-policy-{self.version}", lora_int_id=self.version, lora_path=str(path)
        )
        return self.request
