"""The lean decode loop: HF's logits step for step, and generate()'s rollouts token for token."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mgs.errors import ConfigError
from mgs.rl.fast_decode import fast_decode, fast_decode_unsupported, resolve_decode
from mgs.rl.hf_generate import HFGenerateBackend, _left_pad
from mgs.rl.logprobs import position_ids_from_mask
from mgs.rl.rollout import SamplingConfig
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy
from mgs.train.config import RolloutConfig

PROMPTS = ["What is 2+2?", "Hi", "Name a colour:", "x", "Tell me about cats, please."]


def _qwen2(tokenizer):
    small = TinyModelConfig(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )
    model = build_tiny_policy(tokenizer, small)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for layer in model.model.layers:  # initialised to zero: make the q/k/v biases count
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.5)
    return model


def _llama(tokenizer, *, llama3_rope: bool):
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if llama3_rope:  # Llama 3.1's scaling; a short original context so it changes frequencies
        rope = {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        }
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=256,
        rope_parameters=rope,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@pytest.fixture(scope="module", params=["qwen2", "llama", "llama3-rope"])
def model(request, tokenizer):
    if request.param == "qwen2":
        built = _qwen2(tokenizer)
    else:
        built = _llama(tokenizer, llama3_rope=request.param == "llama3-rope")
    return built.eval()


def _backends(model, tokenizer, micro_batch_size: int = 4):
    kwargs = {"max_prompt_tokens": 64, "micro_batch_size": micro_batch_size}
    slow = HFGenerateBackend(model, tokenizer, decode="generate", **kwargs)
    fast = HFGenerateBackend(model, tokenizer, decode="fast", **kwargs)
    assert (slow.decode_loop, fast.decode_loop) == ("generate", "fast")
    return slow, fast


def test_step_logits_equal_a_full_forward_on_the_prefix(model, tokenizer) -> None:
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ids, mask = _left_pad(rows, tokenizer.pad_token_id, torch.device("cpu"))  # [B, P]
    seen: list[torch.Tensor] = []

    def record(prefix: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen.append(scores.clone())
        return scores

    out = fast_decode(
        model, ids, mask, max_new_tokens=10, eos_ids=[-1], pad_id=0, logits_processor=record
    )  # [B, 10]: no row can finish (EOS id -1)
    assert out.shape == (len(PROMPTS), 10) and len(seen) == 10
    with torch.no_grad():
        for t, scores in enumerate(seen):
            full = torch.cat([ids, out[:, :t]], dim=1)  # [B, P + t]
            full_mask = torch.cat([mask, torch.ones_like(out[:, :t])], dim=1)
            logits = model(
                input_ids=full,
                attention_mask=full_mask,
                position_ids=position_ids_from_mask(full_mask),
            ).logits[:, -1]  # [B, V]
            torch.testing.assert_close(scores, logits.float(), rtol=0, atol=1e-5)


def test_greedy_rollouts_equal_generate(model, tokenizer) -> None:
    slow, fast = _backends(model, tokenizer)
    cfg = SamplingConfig(n=2, temperature=0.0, max_new_tokens=24, stop=[])
    expected = slow.generate(PROMPTS, cfg, seed=0).completions
    assert fast.generate(PROMPTS, cfg, seed=0).completions == expected
    # The same prompts, all of one length (no padding: no attention mask at all).
    same = ["abc", "xyz", "Hi!"]
    assert (
        fast.generate(same, cfg, seed=0).completions == slow.generate(same, cfg, seed=0).completions
    )


def test_keyed_sampled_rollouts_equal_generate(model, tokenizer) -> None:
    slow, fast = _backends(model, tokenizer, micro_batch_size=4)
    cfg = SamplingConfig(n=3, temperature=1.0, top_p=0.9, max_new_tokens=24, stop=[])
    keys = [10, 3, 7, 0, 42]
    expected = slow.generate(PROMPTS, cfg, seed=5, keys=keys).completions
    got = fast.generate(PROMPTS, cfg, seed=5, keys=keys).completions
    assert got == expected
    assert len({tuple(c.completion_ids) for c in got}) > len(PROMPTS)  # really sampled


def test_eos_and_stop_strings_end_rows_as_generate(model, tokenizer) -> None:
    slow, fast = _backends(model, tokenizer)
    free = SamplingConfig(n=2, temperature=1.0, max_new_tokens=20, stop=[])
    rows = [c.completion_ids for c in slow.generate(PROMPTS, free, seed=1).completions]
    # An extra EOS id and a stop string taken from the free rollouts, so that rows end early
    # at different steps (and the rest of the batch keeps going).
    marker = rows[0][5]
    stop = tokenizer.decode(rows[3][4:6])
    for backend in (slow, fast):
        backend.eos_ids = [tokenizer.eos_token_id, marker]
    cut = SamplingConfig(n=2, temperature=1.0, max_new_tokens=20, stop=[stop])
    expected = slow.generate(PROMPTS, cut, seed=1).completions
    got = fast.generate(PROMPTS, cut, seed=1).completions
    assert got == expected
    reasons = [c.finish_reason for c in got]
    assert "stop" in reasons and len({len(c.completion_ids) for c in got}) > 1
    assert any(c.completion_ids[-1] == marker for c in got)
    assert any(stop in c.text for c in got)


def test_fast_decode_stops_when_every_row_finished(tokenizer) -> None:
    model = _qwen2(tokenizer).eval()
    ids, mask = _left_pad([[5, 6, 7], [8]], tokenizer.pad_token_id, torch.device("cpu"))
    first = fast_decode(model, ids, mask, max_new_tokens=6, eos_ids=[-1], pad_id=0)[:, 0]
    out = fast_decode(model, ids, mask, max_new_tokens=6, eos_ids=first.tolist(), pad_id=0)
    assert out.tolist() == [[int(first[0])], [int(first[1])]]  # both end after one token


def test_auto_and_fast_selection_and_the_config_error(tokenizer) -> None:
    qwen = _qwen2(tokenizer)
    assert resolve_decode(qwen, "auto", sharded=False) == "fast"
    assert resolve_decode(qwen, "auto", sharded=True) == "generate"
    assert resolve_decode(qwen, "generate", sharded=False) == "generate"
    assert fast_decode_unsupported(qwen) is None

    class Wrapped(torch.nn.Module):  # not a supported Hugging Face class
        def __init__(self) -> None:
            super().__init__()
            self.inner = qwen

    other = Wrapped()
    assert resolve_decode(other, "auto", sharded=False) == "generate"
    with pytest.raises(ConfigError, match=r"Qwen2ForCausalLM, LlamaForCausalLM.*decode=generate"):
        resolve_decode(other, "fast", sharded=False)
    with pytest.raises(ConfigError, match="sharded"):
        resolve_decode(qwen, "fast", sharded=True)
    with pytest.raises(ConfigError, match="generate, fast or auto"):
        resolve_decode(qwen, "quick", sharded=False)
    assert RolloutConfig().decode == "generate"  # the default does not change any run
    auto = HFGenerateBackend(
        qwen, tokenizer, max_prompt_tokens=8, micro_batch_size=2, decode="auto"
    )
    assert auto.decode_loop == "fast"
