"""Keyed Gumbel-max sampling: the right distribution, and completions independent of the batch."""

from __future__ import annotations

import torch

from mgs.rl import HFGenerateBackend, SamplingConfig
from mgs.rl.gumbel import filtered_logprobs, keyed_uniform
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer


def _sample(logits: torch.Tensor, n: int, temperature: float, top_k: int = 0, top_p: float = 1.0):
    keys = torch.arange(n)
    logp = filtered_logprobs(logits.expand(n, -1), temperature, top_k, top_p)
    gumbel = -torch.log(-torch.log(keyed_uniform(0, keys, 0, logits.shape[-1])))
    return torch.bincount((logp.double() + gumbel).argmax(-1), minlength=logits.shape[-1]) / n


def test_keyed_uniforms_are_uniform_and_a_pure_function_of_the_key() -> None:
    u = keyed_uniform(3, torch.arange(20_000), 5, 8)  # [B, V]
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.std()) - (1 / 12) ** 0.5) < 0.005
    assert torch.equal(keyed_uniform(3, torch.tensor([7]), 5, 8), u[7:8])
    assert not torch.equal(keyed_uniform(3, torch.tensor([7]), 6, 8), u[7:8])  # position matters
    assert not torch.equal(keyed_uniform(4, torch.tensor([7]), 5, 8), u[7:8])  # seed matters


def test_gumbel_max_samples_the_tempered_softmax() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    freq = _sample(logits, 40_000, temperature=0.7)
    expected = torch.softmax(logits[0] / 0.7, -1)
    # 40k draws: standard error <= 0.0025; allow 4 sigma.
    assert torch.allclose(freq, expected, atol=0.01), (freq, expected)


def test_top_k_and_top_p_are_respected() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    assert float(_sample(logits, 5000, 1.0, top_k=2)[[2, 3, 4]].sum()) == 0.0
    # p = softmax(logits): [0.53, 0.19, 0.07, 0.03, 0.12]; top_p 0.6 keeps tokens 0 and 1.
    freq = _sample(logits, 5000, 1.0, top_p=0.6)
    assert float(freq[[2, 3, 4]].sum()) == 0.0 and float(freq[1]) > 0.2


def test_completions_do_not_depend_on_the_batch_they_are_generated_in() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_policy(
        tokenizer, TinyModelConfig(hidden_size=32, num_layers=2, intermediate_size=64)
    )
    prompts = ["What is 2 + 3?", "Hi", "Tell me about cats, please.", "x"]
    cfg = SamplingConfig(n=3, temperature=1.0, max_new_tokens=20, stop=[])
    whole = HFGenerateBackend(model, tokenizer, max_prompt_tokens=64, micro_batch_size=12).generate(
        prompts, cfg, seed=5
    )
    for micro in (1, 5):
        backend = HFGenerateBackend(model, tokenizer, max_prompt_tokens=64, micro_batch_size=micro)
        # Each prompt alone (as one rank of a sharded batch would see it), keyed by its global index.
        for i, prompt in enumerate(prompts):
            alone = backend.generate([prompt], cfg, seed=5, keys=[i])
            got = [c.completion_ids for c in alone.completions]
            want = [c.completion_ids for c in whole.completions[i * 3 : i * 3 + 3]]
            assert got == want, (micro, i)
    texts = [c.text for c in whole.completions]
    assert len(set(texts)) > 1, "sampling at temperature 1 should not be greedy"


def test_stop_strings_never_match_across_the_prompt_boundary() -> None:
    """A prompt ending in '?' with the stop '??' must not stop the completion at its first token."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_policy(
        tokenizer, TinyModelConfig(hidden_size=32, num_layers=2, intermediate_size=64)
    )
    backend = HFGenerateBackend(model, tokenizer, max_prompt_tokens=64, micro_batch_size=4)
    plain = backend.generate(
        ["What is 2+2?"], SamplingConfig(n=1, temperature=0, max_new_tokens=12, stop=[]), seed=0
    )
    ids = plain.completions[0].completion_ids
    stop = "??"
    if "?" in tokenizer.decode(ids[:1]):  # the untrained model's first token would complete '??'
        stop = "?!"
    out = backend.generate(
        ["What is 2+2?"], SamplingConfig(n=1, temperature=0, max_new_tokens=12, stop=[stop]), seed=0
    )
    got = out.completions[0]
    assert tokenizer.pad_token_id not in got.completion_ids
    assert stop in got.text or got.completion_ids == ids  # stopped inside the completion, or never
