"""``mgs train --estimate-memory``: parameter counts (hand-computed, and checked against the real
transformers models built from the same config.json), every budget line hand-computed on a tiny
config, config.json discovery, and the paper configs' comments being the estimate's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_errors import one_line_error
from mgs.cli import main
from mgs.errors import ConfigError
from mgs.train import memory_report
from mgs.train.config import load_config
from mgs.train.memory import Architecture, estimate_memory, layer_activation_bytes
from mgs.train.memory_report import budget_of

REPO = Path(__file__).resolve().parents[3]
TINY = {  # a Llama-layout decoder small enough to count by hand
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "vocab_size": 10,
}
REWARD = {**TINY, "architectures": ["LlamaForSequenceClassification"], "id2label": {"0": "L"}}


def _arch(**changes) -> Architecture:
    return Architecture.from_config({**TINY, **changes}, "test")


def test_parameters_counted_by_hand() -> None:
    arch = _arch()
    # q 8x8 + k 8x4 + v 8x4 + o 8x8 = 192; gate/up/down 3 x 8 x 16 = 384; two norms 16
    assert arch.layer_parameters == 192 + 384 + 16 == 592
    assert arch.root_parameters == 10 * 8 + 8 + 10 * 8 == 168  # embeddings, final norm, head
    assert arch.parameters == 2 * 592 + 168 == 1352
    assert _arch(model_type="qwen2").parameters == 1352 + 2 * (8 + 4 + 4)  # q, k, v biases
    assert _arch(model_type="qwen3").parameters == 1352 + 2 * (4 + 4)  # q and k RMSNorm
    assert _arch(tie_word_embeddings=True).parameters == 1352 - 80
    assert Architecture.from_config(REWARD, "rm").parameters == 1352 - 80 + 8  # 1-score head
    assert arch.kv_bytes_per_token == 2 * 2 * 1 * 4 * 2  # k and v, 2 layers, bf16
    # The published sizes: Qwen2.5-7B 7.62e9, Llama-3.1-8B 8.03e9 parameters.
    configs = REPO / "configs" / "architectures"
    counts = {
        name: Architecture.from_config(json.loads((configs / name).read_text()), name).parameters
        for name in ("qwen2.5-7b.json", "llama-3.1-8b.json")
    }
    assert counts == {"qwen2.5-7b.json": 7_615_616_512, "llama-3.1-8b.json": 8_030_261_248}


@pytest.mark.parametrize(
    ("model_type", "classes"),
    [
        ("llama", ("LlamaConfig", "LlamaForCausalLM")),
        ("qwen2", ("Qwen2Config", "Qwen2ForCausalLM")),
        ("qwen3", ("Qwen3Config", "Qwen3ForCausalLM")),
        ("llama", ("LlamaConfig", "LlamaForSequenceClassification")),
    ],
)
def test_parameters_equal_the_transformers_models(model_type, classes) -> None:
    import transformers

    config_cls, model_cls = (getattr(transformers, name) for name in classes)
    kwargs = {k: v for k, v in TINY.items() if k not in ("architectures", "model_type")}
    extra = {"num_labels": 1} if "Sequence" in model_cls.__name__ else {}
    config = config_cls(**kwargs, **extra, architectures=[model_cls.__name__])
    model = model_cls(config)
    arch = Architecture.from_config(config.to_dict(), "transformers")
    assert arch.model_type == model_type
    assert arch.parameters == model.num_parameters()


def _cfg(*overrides: str):
    base = [
        "model.name=Org/Tiny",  # the vLLM backend needs a Hugging Face model (not read here)
        "model.dtype=float32",
        "model.gradient_checkpointing=true",
        "grpo.micro_batch_size=2",
        "data.max_prompt_tokens=6",
        "rollout.sampling.max_new_tokens=4",
        "grpo.loss.kl_coef=0.1",
        "grpo.loss.entropy_coef=0",
        "distributed.strategy=fsdp2",
        "rollout.backend=vllm",
        "rollout.vllm.gpu_memory_utilization=0.5",
        "rollout.vllm.enable_sleep_mode=true",
    ]
    return load_config(None, [*base, *overrides])  # the tiny default: math, if, chat (an RM)


def _sizes(budget) -> dict[str, int]:
    return {item.name: item.size for item in budget.items}


GPU = 2**-20  # GiB: a 1 KiB GPU, so the vLLM share is 512 bytes


def test_every_line_of_the_budget_by_hand() -> None:
    rm = Architecture.from_config(REWARD, "rm")
    budget = estimate_memory(_cfg(), _arch(), rm, world_size=2, gpu_gib=GPU)
    # 20 tokens (2 x (6 + 4)); one layer keeps (4 x 8 + 2 x 8 + 2 x 4 + 4 x 16) x 4 B = 480 B a
    # token; checkpointing keeps each layer's input (2 x 8 x 4 B a token) + one layer recomputed.
    assert layer_activation_bytes(_arch(), 4) == 480
    assert _sizes(budget) == {
        "policy (float32)": 1352 * 4 // 2,
        "gradients": 1352 * 4 // 2,
        "AdamW state (2 moments)": 2 * 1352 * 4 // 2,
        "KL reference (frozen)": 1352 * 4 // 2,
        "MGS buffers (K=3)": 3 * 1352 * 4 // 2,
        "FSDP2 gathered weights": (2 * 168 + 3 * 592) * 4,
        "activations": 2 * 8 * 4 * 20 + 480 * 20,
        "logits": 2 * 5 * 10 * 4 * 3,  # [B=2, 4 + 1 positions, V=10] float32, 3 copies
        "reward model": 1280 * 2,  # bfloat16 (auto on a GPU)
        "vLLM engine": 512,
    }
    persistent = 2704 + 2704 + 5408 + 2704 + 8112 + 2560
    assert budget.peak("training") == persistent + 8448 + 10880 + 1200  # vLLM asleep
    assert budget.peak("generation") == persistent + 512
    assert budget.peak("training") == 44720  # the same sum, written out
    text = "\n".join(budget.lines())
    assert "training peak" in text and "OVER by" in text  # 44720 B on a 1 KiB GPU


def test_what_the_config_switches_change() -> None:
    rm = Architecture.from_config(REWARD, "rm")
    arch = _arch()
    off = _sizes(
        estimate_memory(
            _cfg("model.gradient_checkpointing=false"), arch, rm, world_size=2, gpu_gib=GPU
        )
    )
    assert off["activations"] == 2 * 480 * 20  # every layer in full
    entropy = _sizes(
        estimate_memory(_cfg("grpo.loss.entropy_coef=0.001"), arch, rm, world_size=2, gpu_gib=GPU)
    )
    assert entropy["logits"] == 2 * 5 * 10 * 4 * 4  # the entropy bonus keeps a softmax
    plain = estimate_memory(
        _cfg(
            "strategy.name=mixed",
            "strategy.track_conflicts=false",
            "grpo.loss.kl_coef=0",
            "strategy.buffer_dtype=bfloat16",
            "distributed.strategy=ddp",
        ),
        arch,
        None,
        world_size=2,
        gpu_gib=GPU,
    )
    sizes = _sizes(plain)
    assert "MGS buffers (K=3)" not in sizes and "KL reference (frozen)" not in sizes
    assert "FSDP2 gathered weights" not in sizes and sizes["policy (float32)"] == 1352 * 4  # DDP
    half = _sizes(
        estimate_memory(_cfg("strategy.buffer_dtype=bfloat16"), arch, rm, world_size=2, gpu_gib=GPU)
    )
    assert half["MGS buffers (K=3)"] == 3 * 1352 * 2 // 2
    awake = estimate_memory(
        _cfg("rollout.vllm.enable_sleep_mode=false"), arch, rm, world_size=2, gpu_gib=GPU
    )
    assert awake.peak("training") == 44720 + 512  # the engine keeps its share while training


@pytest.mark.parametrize(
    "targets", [["q_proj", "v_proj"], ["all-linear"], ["o_proj", "down_proj", "lm_head"]]
)
def test_lora_parameters_equal_peft_on_the_transformers_model(targets) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")
    import transformers

    from mgs.models.lora import LoRAConfig, apply_lora

    kwargs = {k: v for k, v in TINY.items() if k not in ("architectures", "model_type")}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs))
    policy = apply_lora(model, LoRAConfig(r=3, alpha=6, target_modules=targets))
    trained = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert _arch().lora_parameters(3, targets) == trained


def test_lora_and_bf16_compute_by_hand() -> None:
    # LoRA r=2 on q (8 -> 8) and v (8 -> 4): 2 x (8 + 8 + 8 + 4) per layer, 2 layers = 112.
    arch = _arch()
    assert arch.lora_parameters(2, ["q_proj", "v_proj"]) == 112
    assert arch.lora_parameters(1, ["all-linear"]) == 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)
    assert arch.lora_parameters(1, ["lm_head", "embed_tokens"]) == (8 + 10) + (10 + 8)
    with pytest.raises(ConfigError, match="target_modules has c_attn"):
        arch.lora_parameters(1, ["c_attn"])
    rm = Architecture.from_config(REWARD, "rm")
    lora = "model.lora={r: 2, target_modules: [q_proj, v_proj]}"
    budget = estimate_memory(
        _cfg(lora, "model.mixed_precision.enabled=true"), arch, rm, world_size=2, gpu_gib=GPU
    )
    assert _sizes(budget) == {
        "policy (float32)": 1352 * 4 // 2,  # the frozen base, float32 master weights
        "LoRA adapters": 112 * 4 // 2,
        "gradients": 112 * 4 // 2,  # of the adapters only
        "AdamW state (2 moments)": 2 * 112 * 4 // 2,
        "MGS buffers (K=3)": 3 * 112 * 4 // 2,  # K x the adapters
        # bf16 compute: the root (frozen: no gradients) and 3 layers gathered at 2 B
        "FSDP2 gathered weights": (168 + 3 * 592) * 2,
        "activations": 2 * 8 * 2 * 20 + layer_activation_bytes(arch, 2) * 20,
        "logits": 2 * 5 * 10 * (4 * 3 + 2),  # + the head's bfloat16 logits gradient
        "reward model": 1280 * 2,
        "vLLM engine": 512,
    }
    assert "KL reference (frozen)" not in _sizes(budget)  # the policy with adapters disabled
    assert any("adapters disabled" in note for note in budget.notes)
    assert "bf16 compute, LoRA r=2" in budget.title
    bf16 = _sizes(
        estimate_memory(
            _cfg("model.mixed_precision.enabled=true"), arch, rm, world_size=2, gpu_gib=GPU
        )
    )
    assert bf16["policy (float32)"] == 1352 * 4 // 2 and bf16["gradients"] == 1352 * 4 // 2
    assert bf16["FSDP2 gathered weights"] == (2 * 168 + 3 * 592) * 2  # root grads too
    # A bfloat16 base: peft keeps the adapters (and so their gradients, state, buffers) float32.
    half = _sizes(
        estimate_memory(_cfg(lora, "model.dtype=bfloat16"), arch, rm, world_size=2, gpu_gib=GPU)
    )
    assert half["policy (bfloat16)"] == 1352 * 2 // 2 and half["LoRA adapters"] == 112 * 4 // 2
    assert half["MGS buffers (K=3)"] == 3 * 112 * 4 // 2 and half["gradients"] == 112 * 4 // 2


def test_config_json_is_found_or_asked_for(tmp_path, monkeypatch) -> None:
    model_dir = tmp_path / "policy"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "rm.json").write_text(json.dumps(REWARD))
    monkeypatch.setattr(memory_report, "_cached_config", lambda repo: None)  # an empty hub cache
    args = {"world_size": 2, "gpu_gib": GPU, "model_config": None, "reward_model_config": None}
    cfg = _cfg(f"model.name={model_dir}")
    budget = budget_of(cfg, **args)  # the policy folder's config.json; the tiny RM is not counted
    assert "reward model" not in _sizes(budget)
    routed = _cfg("model.name=Org/Some-7B", "rewards.reward_model.path=Org/Some-RM")
    with pytest.raises(
        ConfigError, match=r"'Org/Some-7B' is no local model folder.*--model-config"
    ):
        budget_of(routed, **args)
    budget = budget_of(routed, **{**args, "model_config": str(model_dir)})
    assert _sizes(budget)["reward model"] == 1352 * 2  # not found: assumed the policy's size
    assert any("assumed the policy's size" in note for note in budget.notes)
    budget = budget_of(
        routed,
        **{
            **args,
            "model_config": str(model_dir / "config.json"),
            "reward_model_config": str(tmp_path / "rm.json"),
        },
    )
    assert _sizes(budget)["reward model"] == 1280 * 2
    cached = tmp_path / "cache" / "config.json"
    cached.parent.mkdir()
    cached.write_text(json.dumps(TINY))
    monkeypatch.setattr(
        memory_report, "_cached_config", lambda repo: cached if repo == "Org/Some-7B" else None
    )
    assert budget_of(routed, **args).items[0].size == 1352 * 4 // 2  # from the hub cache
    with pytest.raises(ConfigError, match=r"neither a config\.json nor a folder"):
        budget_of(routed, **{**args, "model_config": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="is for Hugging Face policies"):
        budget_of(_cfg("model.name=tiny", "rollout.backend=hf"), **args)


def test_bad_estimate_options_are_one_line_errors(tmp_path, monkeypatch, capsys) -> None:
    model = tmp_path / "config.json"
    model.write_text(json.dumps(TINY))
    base = ["train", "--estimate-memory", "--model-config", str(model), f"model.name={tmp_path}"]
    for extra, message in (
        (["--gpu-memory", "nan"], "--gpu-memory a finite number of GiB > 0 (got 1 and nan)"),
        (["--gpu-memory", "inf"], "(got 1 and inf)"),  # were a ValueError / OverflowError
    ):
        assert message in one_line_error(capsys, [*base, *extra])
    monkeypatch.setenv("WORLD_SIZE", "abc")  # was a ValueError traceback
    assert "WORLD_SIZE='abc' is not a whole number; pass --world-size N" in one_line_error(
        capsys, base
    )
    # the estimate's options without --estimate-memory: refused (they were ignored, and the
    # whole run trained); likewise --markdown without --help-config
    err = one_line_error(capsys, ["train", "--world-size", "2", "--gpu-memory", "40"])
    assert "--world-size, --gpu-memory only go(es) with --estimate-memory" in err
    err = one_line_error(capsys, ["train", "--markdown"])
    assert "--markdown only goes with --help-config" in err


PAPER = {  # config -> (policy config.json excerpt)
    "qwen2.5-7b_math-chat_mgs.yaml": "qwen2.5-7b.json",
    "qwen2.5-7b_math-chat-if_mgs.yaml": "qwen2.5-7b.json",
    "llama3.1-8b_math-chat_mgs.yaml": "llama-3.1-8b.json",
    "llama3.1-8b_math-chat-if_mgs.yaml": "llama-3.1-8b.json",
}


def regenerate_command(name: str) -> list[str]:
    return [
        "train",
        "--config",
        f"configs/{name}",
        "--estimate-memory",
        "--world-size",
        "8",
        "--model-config",
        f"configs/architectures/{PAPER[name]}",
        "--reward-model-config",
        "configs/architectures/skywork-reward-v2-llama-3.1-8b.json",
    ]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_carry_the_estimates_output(name, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    assert main(regenerate_command(name)) == 0
    printed = capsys.readouterr().out.splitlines()
    text = (REPO / "configs" / name).read_text()
    assert f"#   mgs {' '.join(regenerate_command(name))}" in text  # how to regenerate it
    block = [line[6:] for line in text.splitlines() if line.startswith("#   | ")]
    assert block == printed, "stale memory estimate: rerun the command in the config's header"
    assert "training peak" in text and "OVER" not in text  # the paper configs fit 80 GiB GPUs
