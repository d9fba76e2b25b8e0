"""The single-process pieces of FSDP2 loading: what each rank loads, the meta-device skeleton, the
buffers a state dict leaves out, and the device check under torchrun. The 2-rank loading itself is
tests/integration/test_fsdp_loading.py."""

from __future__ import annotations

import pytest
import torch

from mgs.errors import ConfigError
from mgs.tiny.config import TinyModelConfig
from mgs.train.config import ModelConfig
from mgs.train.distributed import DistContext, DistributedConfig, init_distributed
from mgs.train.modeling import (
    build_on_meta,
    checkpointing_enabled,
    load_policy,
    load_policy_for,
    model_spec,
    non_persistent_buffers,
)

TINY = TinyModelConfig(hidden_size=32, num_layers=2, intermediate_size=64)
SMALL = ModelConfig(name="tiny", tiny=TINY)


def test_under_fsdp2_only_rank0_loads_the_weights_into_host_memory() -> None:
    rank0, tok0 = load_policy_for(SMALL, torch.device("cpu"), DistContext(0, 2, 0, "fsdp2"))
    rank1, tok1 = load_policy_for(SMALL, torch.device("cpu"), DistContext(1, 2, 1, "fsdp2"))
    assert rank0 is not None and next(rank0.parameters()).device.type == "cpu"
    assert rank1 is None  # it receives its shards from rank 0
    assert tok0.get_vocab() == tok1.get_vocab() and tok1.padding_side == "left"
    ddp, _ = load_policy_for(SMALL, torch.device("cpu"), DistContext(1, 2, 1, "ddp"))
    assert ddp is not None  # DDP: every rank holds the whole model, as before


def test_meta_skeleton_has_the_loaded_models_layout_and_ties() -> None:
    cfg = ModelConfig(name="tiny", tiny=TINY, dtype="bfloat16", gradient_checkpointing=True)
    model, _ = load_policy(cfg, torch.device("cpu"))
    skeleton = build_on_meta(model_spec(model))
    assert type(skeleton) is type(model)
    want, got = model.state_dict(), skeleton.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].is_meta and got[key].shape == value.shape, key
        assert got[key].dtype == value.dtype, key
    assert skeleton.lm_head.weight is skeleton.model.embed_tokens.weight  # tied like the model
    assert skeleton.generation_config.eos_token_id == model.generation_config.eos_token_id
    # is_activation_checkpointing (transformers >= 5.2x) or is_gradient_checkpointing (<= 5.20)
    assert checkpointing_enabled(skeleton) and skeleton.training == model.training
    assert skeleton.config is not model.config  # building it did not touch the loaded config


def test_non_persistent_buffers_are_the_ones_no_state_dict_carries() -> None:
    model, _ = load_policy(SMALL, torch.device("cpu"))
    buffers = non_persistent_buffers(model)
    assert "model.rotary_emb.inv_freq" in buffers
    assert not set(buffers) & set(model.state_dict())


def test_a_fixed_gpu_index_under_torchrun_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"model\.device=auto"):
        init_distributed(DistributedConfig(), torch.device("cuda:1"))
