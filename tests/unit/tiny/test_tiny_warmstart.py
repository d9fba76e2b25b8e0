"""Warm-start artefacts: cached by what they depend on, built atomically, reused by a second run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mgs.errors import ConfigError
from mgs.tiny import warmstart
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer
from mgs.train.config import load_config


def test_cache_key_follows_the_payload_and_the_generators_code(monkeypatch):
    key = warmstart.cache_key("sft", {"steps": 10})
    assert key.startswith("sft-") and key == warmstart.cache_key("sft", {"steps": 10})
    assert key != warmstart.cache_key("sft", {"steps": 11})
    assert key != warmstart.cache_key("tiny-rm", {"steps": 10})
    monkeypatch.setattr(warmstart, "_generator_code", lambda: "edited")
    assert key != warmstart.cache_key("sft", {"steps": 10})  # edited domains: a fresh artefact


def test_atomic_dir_builds_once_and_leaves_nothing_behind_on_failure(tmp_path: Path):
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "weights").write_text("w")

    final = tmp_path / "sft-x"
    assert warmstart._atomic_dir(final, build) == final
    assert warmstart._atomic_dir(final, build) == final  # second run: cached, not rebuilt
    assert len(calls) == 1 and (final / "weights").read_text() == "w"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("h")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        warmstart._atomic_dir(tmp_path / "sft-y", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft-x"]  # no half-written artefact


def test_atomic_dir_accepts_an_artefact_another_run_finished_first(tmp_path: Path):
    final = tmp_path / "tiny-rm-x"

    def racing(tmp: Path) -> None:
        (tmp / "ours").write_text("o")
        final.mkdir()  # a concurrent run renames its copy into place before we do
        (final / "theirs").write_text("t")

    assert warmstart._atomic_dir(final, racing) == final
    assert [p.name for p in final.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-rm-x"]  # our copy was discarded


def _tiny_cfg(tmp_path: Path, *extra: str):
    return load_config(
        None,
        [
            "model.tiny.hidden_size=32",
            "model.tiny.num_layers=1",
            "model.tiny.intermediate_size=64",
            "warmstart.sft.steps=3",
            "warmstart.sft.batch_size=4",
            "warmstart.sft.demonstrations=20",
            f"warmstart.cache_dir={tmp_path}",
            *extra,
        ],
    )


def test_sft_warm_start_is_cached_and_a_second_run_loads_it(tmp_path: Path):
    cfg = _tiny_cfg(tmp_path)
    tokenizer = build_tiny_tokenizer()
    said: list[str] = []
    first = build_tiny_policy(tokenizer, cfg.model.tiny)
    path = warmstart.warm_start_policy(cfg, first, tokenizer, torch.device("cpu"), said.append)
    assert path is not None and (path / "model.safetensors").is_file()
    assert "SFT on 60 demonstrations" in said[-1]
    second = build_tiny_policy(tokenizer, cfg.model.tiny)
    assert warmstart.warm_start_policy(cfg, second, tokenizer, torch.device("cpu"), said.append)
    assert said[-1].startswith("warm-start: loaded cached SFT policy")
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    # LoRA and bf16 compute apply after SFT: the same artefact (was re-trained for each).
    lora = _tiny_cfg(tmp_path, "model.lora={r: 4}", "model.mixed_precision.enabled=true")
    fourth = build_tiny_policy(tokenizer, lora.model.tiny)
    assert warmstart.warm_start_policy(lora, fourth, tokenizer, torch.device("cpu"), said.append)
    assert said[-1].startswith("warm-start: loaded cached SFT policy")
    # A different recipe is a different artefact; steps=0 skips the warm start.
    other = _tiny_cfg(tmp_path, "warmstart.sft.careless_fraction=0.5")
    third = build_tiny_policy(tokenizer, other.model.tiny)
    assert warmstart.warm_start_policy(other, third, tokenizer, torch.device("cpu"), said.append)
    assert len(list(tmp_path.glob("sft-*"))) == 2
    off = _tiny_cfg(tmp_path, "warmstart.sft.steps=0")
    assert (
        warmstart.warm_start_policy(off, third, tokenizer, torch.device("cpu"), said.append) is None
    )


def test_builtin_demonstrations_carry_the_careless_fraction(tmp_path: Path):
    tokenizer = build_tiny_tokenizer()
    clean = warmstart.builtin_demonstrations(
        _tiny_cfg(tmp_path, "warmstart.sft.careless_fraction=0"), tokenizer
    )
    careless = warmstart.builtin_demonstrations(
        _tiny_cfg(tmp_path, "warmstart.sft.careless_fraction=0.5"), tokenizer
    )
    assert len(clean) == len(careless) == 60
    flawed = [c for (_, c), (_, k) in zip(clean, careless) if c != k]
    assert len(flawed) == 30  # 10 of each domain's 20
    assert not any("The answer is" in c or "I do not know." in c for _, c in clean)
    with pytest.raises(ConfigError, match="careless_fraction must lie in"):
        _tiny_cfg(tmp_path, "warmstart.sft.careless_fraction=1.5")
