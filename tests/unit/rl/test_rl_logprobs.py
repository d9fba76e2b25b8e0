"""Response log-probs on the tiny Qwen2: naive full-softmax oracle, padding, chunks, generate()."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from mgs.rl.logprobs import position_ids_from_mask, response_logprobs
from mgs.rl.losses import entropy_from_logits
from mgs.rl.rollout import Completion, RolloutBatch

SMALL = dict(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)  # sizes of this file's tiny policies


@pytest.fixture(scope="module")
def model(tiny_policy):
    return tiny_policy(**SMALL).eval()


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    """Prompts of 3 different lengths, completions of 3 different lengths (both kinds of padding)."""
    enc = tokenizer(["What is 2+2?", "Hi", "Name a colour:"], add_special_tokens=False)
    completions = ["<think>4</think><response>4</response>", "Hello!", "red"]
    rows = [
        Completion(i, p, tokenizer(c, add_special_tokens=False)["input_ids"], c, "stop")
        for i, (p, c) in enumerate(zip(enc["input_ids"], completions))
    ]
    return RolloutBatch(rows, n=1).to_tensors(tokenizer.pad_token_id)


def _naive(model, input_ids, attention_mask, response_mask, temperature=1.0):
    """Full forward, full log_softmax over every position, shift by one, mask."""
    with torch.no_grad():
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        ).logits.float()  # [B, T, V]
    logprobs = torch.log_softmax(logits / temperature, dim=-1)  # [B, T, V]
    out = torch.zeros(input_ids.shape)
    ent = torch.zeros(input_ids.shape)
    for b in range(input_ids.shape[0]):
        for t in range(1, input_ids.shape[1]):
            if response_mask[b, t]:
                out[b, t] = logprobs[b, t - 1, input_ids[b, t]]
                ent[b, t] = -(logprobs[b, t - 1].exp() * logprobs[b, t - 1]).sum()
    return out, ent


def test_position_ids_count_real_tokens() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_naive_full_softmax(model, tokenizer, temperature: float) -> None:
    batch = _batch(tokenizer)
    with torch.no_grad():
        logp, ent = response_logprobs(model, **batch, temperature=temperature, with_entropy=True)
    ref_logp, ref_ent = _naive(model, **batch, temperature=temperature)
    assert logp.shape == batch["input_ids"].shape and logp.dtype == torch.float32
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    outside = batch["response_mask"] == 0
    assert (logp[outside] == 0).all() and (ent[outside] == 0).all()
    assert (logp[~outside] < 0).all()


def test_padding_does_not_change_a_row(model, tokenizer) -> None:
    batch = _batch(tokenizer)
    with torch.no_grad():
        logp, _ = response_logprobs(model, **batch)
        for b in range(3):
            real = batch["attention_mask"][b].bool()
            alone = {k: v[b : b + 1, real] for k, v in batch.items()}  # the row without padding
            logp_alone, _ = response_logprobs(model, **alone)
            torch.testing.assert_close(logp_alone[0], logp[b, real], atol=1e-5, rtol=1e-5)


def test_chunks_and_models_without_logits_to_keep_agree(model, tokenizer) -> None:
    class PlainForward(torch.nn.Module):  # a model whose forward has no logits_to_keep
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids, use_cache):
            seen.append((attention_mask, position_ids))
            return self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=use_cache,
            )

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    batch = _batch(tokenizer)
    with torch.no_grad():
        full, ent = response_logprobs(model, **batch, with_entropy=True)
        for chunk in (1, 2):
            part, ent_part = response_logprobs(model, **batch, chunk_size=chunk, with_entropy=True)
            torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ent_part, ent, atol=1e-5, rtol=1e-5)
        plain, _ = response_logprobs(PlainForward(model), **batch)
        torch.testing.assert_close(plain, full, atol=1e-5, rtol=1e-5)
    # positions are passed explicitly and count from each row's first real token
    ((mask, positions),) = seen
    for b in range(3):
        real = mask[b].bool()
        assert positions[b, real].tolist() == list(range(int(real.sum())))


def test_gradients_flow_and_are_finite(model, tokenizer) -> None:
    batch = _batch(tokenizer)
    model.zero_grad()
    logp, ent = response_logprobs(model, **batch, with_entropy=True)
    (logp.sum() + ent.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad()


def test_matches_generate_scores_under_the_sampling_temperature(model, tokenizer) -> None:
    # HF generate's processed scores at each step are logits / temperature (no top-k / top-p):
    # log_softmax(scores)[sampled token] must equal our log-prob of that token.
    prompts = tokenizer(["2+3=", "A long prompt here:"], add_special_tokens=False)["input_ids"]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    eos = tokenizer.eos_token_id
    gen_cfg = GenerationConfig(
        do_sample=True, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=12,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
    new = out.sequences[:, width:]  # [2, R]
    scores = torch.stack(out.scores, dim=1).float()  # [2, R, V]
    gen_logp = torch.log_softmax(scores, -1).gather(-1, new.unsqueeze(-1)).squeeze(-1)  # [2, R]
    response = torch.ones_like(new)
    for b in range(2):  # tokens after a finished row (its EOS) are padding
        hits = (new[b] == eos).nonzero()
        if len(hits):
            response[b, int(hits[0]) + 1 :] = 0
    full_mask = torch.cat([mask, response], dim=1)
    response_mask = torch.cat([torch.zeros_like(mask), response], dim=1)
    with torch.no_grad():
        logp, _ = response_logprobs(model, out.sequences, full_mask, response_mask, temperature=0.7)
    ours = logp[:, width:]
    keep = response.bool()
    torch.testing.assert_close(ours[keep], gen_logp[keep], atol=1e-4, rtol=1e-4)
    # and the temperature matters: at 1.0 they differ
    with torch.no_grad():
        logp1, _ = response_logprobs(model, out.sequences, full_mask, response_mask)
    assert not torch.allclose(logp1[:, width:][keep], gen_logp[keep], atol=1e-3)


def test_no_response_tokens_gives_zeros(model) -> None:
    ids = torch.tensor([[5, 6, 7]])
    ones = torch.ones_like(ids)
    logp, ent = response_logprobs(model, ids, ones, torch.zeros_like(ids), with_entropy=True)
    assert logp.abs().sum() == 0 and ent is not None and ent.abs().sum() == 0


def test_errors(model) -> None:
    ids = torch.tensor([[5, 6, 7]])
    ones = torch.ones_like(ids)
    resp = torch.tensor([[0, 1, 1]])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        response_logprobs(model, ids, ones, resp, temperature=0.0)
    with pytest.raises(ValueError, match=r"must all be \[B, T\]"):
        response_logprobs(model, ids, ones[:, :2], resp)
    with pytest.raises(ValueError, match="position 0"):
        response_logprobs(model, ids, ones, ones)
    with pytest.raises(ValueError, match="chunk_size"):
        response_logprobs(model, ids, ones, resp, chunk_size=0)


def test_entropy_helper_agrees_with_the_oracle_used_above() -> None:
    logits = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    logprobs = torch.log_softmax(logits, -1)
    torch.testing.assert_close(entropy_from_logits(logits), -(logprobs.exp() * logprobs).sum(-1))
