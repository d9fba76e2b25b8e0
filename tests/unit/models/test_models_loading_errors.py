"""Model directories that cannot be loaded (issue 12, items 3 and 8): an empty folder, a truncated
safetensors file, a missing shard. Each is one error naming the file, in `mgs train`'s loader,
the reward model and `mgs eval`, instead of a tokenizer ValueError or a SafetensorError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mgs.cli import main
from mgs.errors import ConfigError
from mgs.models.loading import model_dir_problem


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer, tiny_policy) -> Path:
    """A tiny causal LM saved as a Hugging Face directory (safetensors)."""
    out = tmp_path_factory.mktemp("policy")
    sizes = dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=16)
    tiny_policy(**sizes, max_positions=64).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _truncated(saved: Path, tmp_path: Path) -> Path:
    damaged = _copy(saved, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # an interrupted copy
    return damaged


def test_an_intact_directory_has_no_problem(saved) -> None:
    assert model_dir_problem(saved) is None


def test_the_problems_are_named(saved, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json is missing" in model_dir_problem(empty)
    assert model_dir_problem(_truncated(saved, tmp_path)).startswith(
        "model.safetensors is damaged (Error while deserializing header"
    )
    sharded = _copy(saved, tmp_path / "sharded")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert model_dir_problem(sharded) == (
        "model.safetensors.index.json names weight files that are missing: "
        "model-00001-of-00002.safetensors"
    )
    bad_config = _copy(saved, tmp_path / "bad_config")
    (bad_config / "config.json").write_text("{not json")
    assert model_dir_problem(bad_config).startswith("config.json is not valid JSON")
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    (zipped / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(64)}, zipped / "pytorch_model.bin")  # zip format
    assert model_dir_problem(zipped) is None
    data = (zipped / "pytorch_model.bin").read_bytes()
    (zipped / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert "pytorch_model.bin is damaged" in model_dir_problem(zipped)


def test_a_lora_adapter_directory_is_checked_by_its_adapter_config(tmp_path) -> None:
    """A LoRA run's checkpoint holds peft's adapter (adapter_config.json, no config.json): intact
    is intact (a resume was refused before), damage is still named."""
    from safetensors.torch import save_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"lora_A.weight": torch.zeros(4, 16)}, adapter / "adapter_model.safetensors")
    assert model_dir_problem(adapter) is None
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    assert model_dir_problem(adapter).startswith("adapter_model.safetensors is damaged")
    (adapter / "adapter_config.json").write_text("{not json")
    assert model_dir_problem(adapter).startswith("adapter_config.json is not valid JSON")


def test_train_names_an_empty_model_directory(tmp_path) -> None:
    # Was: transformers' "Couldn't instantiate the backend tokenizer" ValueError (only OSError
    # was translated).
    from mgs.train.config import ModelConfig
    from mgs.train.modeling import load_policy

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"is not a loadable model directory: config\.json is"):
        load_policy(ModelConfig(name=str(empty)), torch.device("cpu"))


def test_train_names_a_truncated_weights_file(saved, tmp_path) -> None:
    from mgs.train.config import ModelConfig
    from mgs.train.modeling import load_policy

    damaged = _truncated(saved, tmp_path)
    with pytest.raises(ConfigError, match=r"model\.safetensors is damaged"):
        load_policy(ModelConfig(name=str(damaged)), torch.device("cpu"))
    # A loader error the pre-check cannot see is translated as well (not only OSError).
    with pytest.raises(ConfigError, match="could not be loaded"):
        from mgs.train.modeling import _or_config_error

        def broken(*_args, **_kwargs):
            raise ValueError("Unrecognized model in /x")

        _or_config_error(ModelConfig(name="x"), broken)


def test_the_reward_model_names_a_truncated_weights_file(saved, tmp_path) -> None:
    from mgs.rewards.reward_model import RewardModelScorer

    damaged = _truncated(saved, tmp_path)
    with pytest.raises(ConfigError, match=r"model\.safetensors is damaged .*rewards\.reward_model"):
        RewardModelScorer(damaged, device="cpu").score(["a"], ["b"])


def test_eval_names_a_truncated_weights_file(saved, tmp_path, capsys) -> None:
    damaged = _truncated(saved, tmp_path)
    out = tmp_path / "r.json"
    code = main(
        ["eval", str(damaged), "--bench", "tiny_math", "--device", "cpu", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"model directory '{damaged}' cannot be loaded: model.safetensors is damaged" in err
    assert not out.exists()


def test_data_tokenizer_from_an_empty_folder(tmp_path, capsys) -> None:
    code = main(["data", "--tokenizer", str(tmp_path), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --tokenizer '{tmp_path}': no tokenizer could")
