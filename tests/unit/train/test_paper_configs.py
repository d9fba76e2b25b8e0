"""The paper-scale configs in configs/: they load, hold the paper's hyperparameters (docs/method.md
section 3), name their training data by hub id with a column preset (the presets are tested on each
dataset's layout in tests/unit/data/test_data_recipe_sources.py), and their documented variants and
not-yet-supported keys are valid. Only configs are loaded: no model, no download."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml

from mgs.data.readers import is_hub_id
from mgs.dataclass_config import from_dict
from mgs.rl.vllm_engine import VLLMConfig
from mgs.train.config import RolloutConfig, load_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = {  # file -> (policy, domains in source order)
    "qwen2.5-7b_math-chat_mgs.yaml": ("Qwen/Qwen2.5-7B", ["math", "chat"]),
    "qwen2.5-7b_math-chat-if_mgs.yaml": ("Qwen/Qwen2.5-7B", ["math", "chat", "if"]),
    "llama3.1-8b_math-chat_mgs.yaml": ("meta-llama/Llama-3.1-8B", ["math", "chat"]),
    "llama3.1-8b_math-chat-if_mgs.yaml": ("meta-llama/Llama-3.1-8B", ["math", "chat", "if"]),
}
ROUTES = {"math": "math", "chat": "reward_model", "if": "ifeval"}
TODO = "# TODO(lead): uncomment when TrainConfig has rollout.vllm / distributed"
VARIANT = re.compile(r"^#\s+(\w+):\s+mgs train --config (\S+) (.+)$")


@pytest.fixture(params=sorted(CONFIGS))
def name(request) -> str:
    return request.param


def _path(name: str) -> Path:
    return REPO / "configs" / name


def test_paper_hyperparameters(name) -> None:
    cfg = load_config(_path(name))
    sampling, loss, optim = cfg.rollout.sampling, cfg.grpo.loss, cfg.optim
    assert (cfg.data.mixture.batch_size, sampling.n, sampling.temperature) == (64, 8, 0.7)
    assert (sampling.top_p, sampling.top_k, sampling.stop) == (1.0, 0, ["</response>"])
    assert (cfg.grpo.advantage_scale, cfg.grpo.advantage_eps) == ("std", 1e-6)
    assert (loss.clip_eps_low, loss.clip_eps_high, loss.dual_clip) == (0.2, 0.2, 3.0)
    assert (loss.kl_kind, loss.kl_coef, loss.entropy_coef) == ("low_var_kl", 0.001, 0.001)
    assert (optim.lr, optim.schedule, optim.warmup_steps) == (1e-6, "constant", 0)
    assert (optim.weight_decay, optim.grad_clip) == (0.01, 1.0)
    assert (cfg.grpo.mini_batches, cfg.grpo.epochs) == (1, 1)  # one optimizer step per batch
    assert (cfg.data.max_prompt_tokens, sampling.max_new_tokens) == (896, 4096)
    assert cfg.data.template.name == "zero_think" and cfg.data.template.preamble is None
    assert cfg.rewards.extraction.template == "zero_think"  # rewards read the response part
    assert cfg.strategy.resolved() == ("pcgrad", "tensor")  # MGS as in the paper's code
    model, domains = CONFIGS[name]
    assert cfg.model.name == model
    assert [source.domain for source in cfg.data.sources] == domains
    assert cfg.rewards.routes == {d: ROUTES[d] for d in domains}
    assert cfg.rewards.ifeval.mode == "fraction"
    rm = cfg.rewards.reward_model
    assert rm.path == "Skywork/Skywork-Reward-V2-Llama-3.1-8B"
    assert rm.max_length >= 896 + 4096
    assert cfg.warmstart.sft.steps == 0 and cfg.eval.prompts_per_domain == 0
    # bf16 compute with float32 master weights (issue 13): FSDP2 reduces gradients in float32.
    precision = cfg.model.mixed_precision
    assert cfg.model.dtype == "float32" and precision.enabled
    assert (precision.param_dtype, precision.reduce_dtype) == ("bfloat16", "float32")
    assert cfg.model.lora is None  # full fine-tuning, as the paper


HUB_DATA = {  # domain -> (hub id, configuration, files, preset)
    "math": (
        "hkust-nlp/SimpleRL-Zoo-Data",
        None,
        "simplelr_qwen_level3to5/train.parquet",
        "simplerl_math",
    ),
    "chat": ("princeton-nlp/rl_tulu3_wildchat-if_prompts", None, None, "wildchat"),
    "if": ("argilla/ifeval-like-data", "filtered", None, "ifeval"),
}


def test_training_data_is_named_by_hub_id_with_its_columns(name) -> None:
    for source in load_config(_path(name)).data.sources:
        assert is_hub_id(source.path), source.path
        got = (source.path, source.hub_config, source.data_files, source.preset)
        assert got == HUB_DATA[source.domain]


def test_documented_variants_load(name) -> None:
    found = {}
    for line in _path(name).read_text().splitlines():
        match = VARIANT.match(line)
        if match:
            variant, path, rest = match.groups()
            assert path == f"configs/{name}"
            found[variant] = load_config(REPO / path, shlex.split(rest))
    assert sorted(found) == ["mixed", "pcgrad", "sequential"]
    for variant, cfg in found.items():
        assert cfg.strategy.name == variant
    _, domains = CONFIGS[name]
    phases = found["sequential"].data.mixture.phases
    assert [phase.domain for phase in phases] == domains
    assert phases[-1].steps is None and all(p.steps for p in phases[:-1])


def _uncomment_todo(text: str) -> str:
    """The config with the comment block under each TODO(lead) marker turned into YAML."""
    out, inside = [], False
    for line in text.splitlines():
        body = line.lstrip()
        if body == TODO:
            inside = True
            continue
        if inside and body.startswith("# "):
            line = line[: len(line) - len(body)] + body[2:]
        else:
            inside = False
        out.append(line)
    return "\n".join(out) + "\n"


def test_keys_for_vllm_and_fsdp2_are_valid(name) -> None:
    text = _path(name).read_text()
    data = yaml.safe_load(_uncomment_todo(text))
    assert data["rollout"]["backend"] == "vllm"
    vllm = from_dict(VLLMConfig, data["rollout"]["vllm"], "rollout.vllm")
    assert vllm.max_model_len is not None and vllm.max_model_len >= 896 + 4096
    assert vllm.enable_sleep_mode and vllm.tensor_parallel_size == 1  # one engine per rank
    cfg = load_config(_path(name))
    assert cfg.distributed.strategy == "fsdp2"
    # Once RolloutConfig has the vllm key, the configs must use it for real (drop the TODO).
    if "vllm" in {f.name for f in dataclasses.fields(RolloutConfig)}:
        assert cfg.rollout.backend == "vllm" and cfg.rollout.vllm == vllm
    else:
        assert "  # backend: vllm" in text
