"""FSDP2 loading (torchrun, 2 gloo ranks): rank 0 reads the weights, every rank holds only its shards
of the policy and of the KL reference, and the sharded model is the model one process loads.

One torchrun launch runs every case (fsdp_load_worker.py); each test checks one property of its
results against :func:`mgs.train.modeling.load_policy` in this process:

- tiny: the built-in tiny model (tied embeddings);
- hf: a Hugging Face directory written with ``save_pretrained`` and loaded by path through
  ``from_pretrained`` (untied LM head, a non-default rotary base, sdpa attention);
- hf_bf16: the same directory in bfloat16 with gradient checkpointing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mgs.dataclass_config import from_dict
from mgs.tiny.model import build_tiny_tokenizer
from mgs.train.config import ModelConfig
from mgs.train.modeling import checkpointing_enabled, load_policy, non_persistent_buffers

WORKER = Path(__file__).with_name("fsdp_load_worker.py")
sys.path.insert(0, str(WORKER.parent))
from fsdp_load_worker import INPUT_IDS  # noqa: E402
from launch import run_python  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
WORLD = 2
TINY = {"hidden_size": 32, "num_layers": 2, "intermediate_size": 64, "seed": 3}


def _save_hf_model(path: Path) -> None:
    """A small Qwen2 unlike the built-in one: untied LM head, rotary base 500 (not 10000)."""
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(11)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, ModelConfig]:
    tmp = tmp_path_factory.mktemp("fsdp_load")
    _save_hf_model(tmp / "hf")
    return {
        "tiny": from_dict(ModelConfig, {"name": "tiny", "tiny": TINY}),
        "hf": from_dict(ModelConfig, {"name": str(tmp / "hf"), "attn_implementation": "sdpa"}),
        "hf_bf16": from_dict(
            ModelConfig,
            {"name": str(tmp / "hf"), "dtype": "bfloat16", "gradient_checkpointing": True},
        ),
    }


@pytest.fixture(scope="module")
def results(cases, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("fsdp_load_out")
    spec = [
        {
            "name": name,
            "model": {
                "name": cfg.name,
                "tiny": TINY,
                "dtype": cfg.dtype,
                "attn_implementation": cfg.attn_implementation,
                "gradient_checkpointing": cfg.gradient_checkpointing,
            },
        }
        for name, cfg in cases.items()
    ]
    (tmp / "cases.json").write_text(json.dumps(spec))
    run_python([str(WORKER), str(tmp / "cases.json"), str(tmp / "out.pt")], WORLD)
    return torch.load(tmp / "out.pt", weights_only=False)


@pytest.fixture(scope="module")
def single(cases) -> dict[str, torch.nn.Module]:
    """What one process loads, per case."""
    return {name: load_policy(cfg, torch.device("cpu"))[0] for name, cfg in cases.items()}


NAMES = ["tiny", "hf", "hf_bf16"]


@pytest.mark.parametrize("name", NAMES)
def test_only_rank0_reads_the_weights_into_host_memory(results, name) -> None:
    assert results[name]["loaded_on"] == ["cpu", None]


@pytest.mark.parametrize("name", NAMES)
def test_gathered_weights_equal_the_single_process_weights(results, single, name) -> None:
    want = single[name].state_dict()
    for got in (results[name]["state"], results[name]["ref_state"]):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key].dtype == value.dtype, key
            assert torch.equal(got[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_rotary_and_other_unsaved_buffers_are_rank0s(results, single, name) -> None:
    # to_empty leaves them uninitialised and no state dict carries them.
    want = non_persistent_buffers(single[name])
    assert any(key.endswith("inv_freq") for key in want)
    for got in (results[name]["buffers"], results[name]["ref_buffers"]):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key].dtype == value.dtype, key
            assert torch.equal(got[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_sharded_forward_matches_the_single_process(results, single, name) -> None:
    model = single[name]
    with torch.no_grad():
        want = model(input_ids=INPUT_IDS).logits.float()  # [2, 9, V]
    # The same ops on the same values (FSDP2 all-gathers exact copies): equal, bfloat16 included.
    tol = {"rtol": 1e-6, "atol": 1e-6}
    for rank_logits in results[name]["logits"]:
        torch.testing.assert_close(rank_logits, want, **tol)
    torch.testing.assert_close(results[name]["ref_logits"], want, **tol)
    assert results[name]["generation_eos"] == model.generation_config.eos_token_id
    assert results[name]["gradient_checkpointing"] == checkpointing_enabled(model)
    assert results[name]["policy_training"] == model.training


def test_tied_embeddings_stay_tied_and_untied_stay_untied(results) -> None:
    assert results["tiny"]["tied"] is True
    assert results["hf"]["tied"] is False


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["sizes", "ref_sizes"])
def test_each_rank_holds_only_its_shard(results, name, which) -> None:
    per_rank = results[name][which]  # one {param: (local, shape, dtensor, requires_grad)} per rank
    assert len(per_rank) == WORLD
    totals = [0] * WORLD
    for param, (_, shape, _, _) in per_rank[0].items():
        full = math.prod(shape)
        assert sum(sizes[param][0] for sizes in per_rank) == full, param  # shards partition it
        for rank, sizes in enumerate(per_rank):
            local, _, is_dtensor, requires_grad = sizes[param]
            assert is_dtensor, param
            assert requires_grad == (which == "sizes"), param  # the reference is frozen
            # Sharded on dim 0: at most ceil(rows / world) rows on a rank.
            assert local <= math.ceil(shape[0] / WORLD) * full // shape[0], param
            totals[rank] += local
    full_total = sum(math.prod(shape) for _, shape, _, _ in per_rank[0].values())
    for total in totals:
        assert total <= 0.55 * full_total


@pytest.mark.parametrize("name", NAMES)
def test_reference_is_frozen_and_separate_from_the_policy(results, name) -> None:
    r = results[name]
    assert r["ref_training"] is False
    assert not torch.equal(r["stepped_logits"], r["ref_logits"])  # the policy moved
    assert torch.equal(r["ref_logits_after_step"], r["ref_logits"])  # the reference did not
