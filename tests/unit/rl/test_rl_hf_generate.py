"""HFGenerateBackend on the tiny Qwen2: layout, masks, seeds, greedy, EOS, stop strings, errors."""

from __future__ import annotations

import pytest
import torch

from mgs.errors import DataError
from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.rollout import RolloutBackend, SamplingConfig

SMALL = dict(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)  # sizes of this file's tiny policies
PROMPTS = ["What is 2+2?", "Hi", "Name a colour:"]


@pytest.fixture(scope="module")
def model(tiny_policy):
    return tiny_policy(**SMALL)


def _backend(model, tokenizer, micro_batch_size: int = 4) -> HFGenerateBackend:
    return HFGenerateBackend(
        model, tokenizer, max_prompt_tokens=32, micro_batch_size=micro_batch_size
    )


def _greedy_reference(model, tokenizer, prompt: str, max_new: int) -> list[int]:
    """Argmax decoding by hand: full forward each step, no cache, no padding; stop after EOS."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] == tokenizer.eos_token_id:
                break
    return out


def test_layout_shapes_masks_and_text(model, tokenizer) -> None:
    backend = _backend(model, tokenizer)
    assert isinstance(backend, RolloutBackend)
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=10, stop=[])
    batch = backend.generate(PROMPTS, cfg, seed=0)
    assert len(batch) == 6 and batch.n == 2 and batch.prompt_index == [0, 0, 1, 1, 2, 2]
    for c in batch.completions:
        assert (
            c.prompt_ids
            == tokenizer(PROMPTS[c.prompt_index], add_special_tokens=False)["input_ids"]
        )
        assert 1 <= len(c.completion_ids) <= 10
        assert c.text == tokenizer.decode(c.completion_ids, skip_special_tokens=True)
        ended = c.completion_ids[-1] == tokenizer.eos_token_id
        assert c.finish_reason == ("stop" if ended else "length")
        assert (c.finish_reason == "length") == (len(c.completion_ids) == 10 and not ended)
        assert tokenizer.eos_token_id not in c.completion_ids[:-1]  # nothing after an EOS
    t = batch.to_tensors(tokenizer.pad_token_id)
    width_p = max(len(c.prompt_ids) for c in batch.completions)
    width_r = max(len(c.completion_ids) for c in batch.completions)
    assert t["input_ids"].shape == (6, width_p + width_r)
    assert t["response_mask"].sum(1).tolist() == [len(c.completion_ids) for c in batch.completions]
    assert (t["response_mask"][:, :width_p] == 0).all()
    assert ((t["response_mask"] == 1) <= (t["attention_mask"] == 1)).all()


def test_same_seed_same_rollouts_and_training_rng_untouched(model, tokenizer) -> None:
    backend = _backend(model, tokenizer)
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, stop=[])
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    first = backend.generate(PROMPTS[:2], cfg, seed=7)
    assert torch.equal(torch.rand(4), expected_next)  # the caller's RNG stream is unchanged
    again = backend.generate(PROMPTS[:2], cfg, seed=7)
    other = backend.generate(PROMPTS[:2], cfg, seed=8)
    assert again.completions == first.completions
    assert other.completions != first.completions
    # rollouts of one prompt differ from each other (they are samples, not copies)
    assert first.completions[0].completion_ids != first.completions[1].completion_ids


def test_greedy_equals_argmax_decoding(model, tokenizer) -> None:
    cfg = SamplingConfig(n=2, temperature=0.0, max_new_tokens=8, stop=[])
    batch = _backend(model, tokenizer, micro_batch_size=3).generate(PROMPTS, cfg, seed=0)
    for i, prompt in enumerate(PROMPTS):
        reference = _greedy_reference(model, tokenizer, prompt, 8)
        assert batch.completions[2 * i].completion_ids == reference
        assert batch.completions[2 * i + 1].completion_ids == reference
    # top-k 1 and a tiny top-p reduce sampling to greedy: the truncation is applied
    for cut in ({"top_k": 1}, {"top_p": 1e-6}):
        sampled = SamplingConfig(n=1, temperature=1.0, max_new_tokens=8, stop=[], **cut)
        out = _backend(model, tokenizer).generate(PROMPTS, sampled, seed=3)
        assert [c.completion_ids for c in out.completions] == [
            batch.completions[2 * i].completion_ids for i in range(3)
        ]


def test_eos_ends_a_completion_and_the_rest_is_padding(model, tokenizer) -> None:
    cfg = SamplingConfig(n=1, temperature=0.0, max_new_tokens=12, stop=[])
    free = _backend(model, tokenizer).generate(PROMPTS[:2], cfg, seed=0)
    row = free.completions[0].completion_ids
    marker = row[3]  # declare a token the greedy policy emits an EOS token
    end = row.index(marker) + 1
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, marker]
    try:
        backend = _backend(model, tokenizer)
    finally:
        model.generation_config.eos_token_id = saved
    assert backend.eos_ids == [tokenizer.eos_token_id, marker]
    batch = backend.generate(PROMPTS[:2], cfg, seed=0)
    first = batch.completions[0]
    assert first.completion_ids == row[:end] and first.finish_reason == "stop"
    t = batch.to_tensors(tokenizer.pad_token_id)
    width_p = max(len(c.prompt_ids) for c in batch.completions)
    assert t["response_mask"][0].sum() == end  # the EOS token is part of the response
    assert t["input_ids"][0, width_p + end - 1] == marker
    assert (t["input_ids"][0, width_p + end :] == tokenizer.pad_token_id).all()
    assert (t["attention_mask"][0, width_p + end :] == 0).all()


def test_stop_string_truncates_ids_and_text_together(model, tokenizer, monkeypatch) -> None:
    # Sample freely once; pick a string the policy wrote over two tokens (after the start); sample
    # again with the same seed and that stop string: the same draws, cut right after the stop.
    free = SamplingConfig(n=1, temperature=1.0, max_new_tokens=16, stop=[])
    prompt = PROMPTS[1]
    row = _backend(model, tokenizer).generate([prompt], free, seed=0).completions[0].completion_ids
    special = set(tokenizer.all_special_ids)
    k = next(
        i for i in range(3, len(row) - 1) if row[i] not in special and row[i + 1] not in special
    )
    stop = tokenizer.decode(row[k : k + 2])
    expected = next(j for j in range(1, len(row) + 1) if stop in tokenizer.decode(row[:j]))
    assert expected < len(row)  # the stop really cuts something off

    raw = []
    generate = model.generate

    def spy(**kwargs):
        out = generate(**kwargs)
        raw.append((kwargs, out.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    monkeypatch.setattr(model, "generate", spy)
    stopped = SamplingConfig(n=1, temperature=1.0, max_new_tokens=16, stop=[stop])
    c = _backend(model, tokenizer).generate([prompt], stopped, seed=0).completions[0]
    assert c.completion_ids == row[:expected] and c.finish_reason == "stop"
    assert c.text == tokenizer.decode(row[:expected], skip_special_tokens=True)
    assert c.text.endswith(stop)
    ((kwargs, generated),) = raw
    assert generated == expected  # generate() itself stopped there (a stop criterion was passed)
    (criterion,) = kwargs["stopping_criteria"]
    assert criterion.stops == [stop] and kwargs["generation_config"].use_cache


def test_checkpoint_generation_settings_do_not_leak(model, tokenizer) -> None:
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, stop=[])
    clean = _backend(model, tokenizer).generate(PROMPTS[:2], cfg, seed=5)
    saved = model.generation_config
    polluted = type(saved).from_dict(saved.to_dict())
    polluted.repetition_penalty, polluted.top_k, polluted.min_p = 50.0, 2, 0.5
    model.generation_config = polluted
    try:
        again = _backend(model, tokenizer).generate(PROMPTS[:2], cfg, seed=5)
        assert model.generation_config is polluted  # restored after generation
    finally:
        model.generation_config = saved
    assert again.completions == clean.completions


def test_eval_mode_during_generation_and_modes_restored(model, tokenizer, monkeypatch) -> None:
    model.train()
    model.model.layers[0].eval()  # a sub-module deliberately in eval mode stays so
    modes = []
    generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda **kw: modes.append(model.training) or generate(**kw)
    )
    _backend(model, tokenizer).generate(["Hi"], SamplingConfig(n=1, max_new_tokens=2), seed=0)
    assert modes == [False]
    assert model.training and model.model.layers[1].training
    assert not model.model.layers[0].training
    model.eval()


def test_sync_weights_copies_another_model(model, tokenizer, tiny_policy) -> None:
    student = tiny_policy(**SMALL)
    teacher = tiny_policy(**SMALL, seed=1)
    backend = _backend(student, tokenizer)
    backend.sync_weights(student)  # same object: nothing to do
    cfg = SamplingConfig(n=1, temperature=0.0, max_new_tokens=6, stop=[])
    backend.sync_weights(teacher)
    synced = backend.generate(PROMPTS, cfg, seed=0)
    direct = _backend(teacher, tokenizer).generate(PROMPTS, cfg, seed=0)
    assert synced.completions == direct.completions
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate(PROMPTS, cfg, seed=0)


def test_long_or_empty_prompts_are_refused(model, tokenizer) -> None:
    backend = HFGenerateBackend(model, tokenizer, max_prompt_tokens=5, micro_batch_size=2)
    cfg = SamplingConfig(n=1, max_new_tokens=2)
    with pytest.raises(DataError, match="prompt 1 has 12 tokens, more than max_prompt_tokens=5"):
        backend.generate(["Hi", "What is 2+2?"], cfg, seed=0)
    with pytest.raises(DataError, match="prompt 0 is empty"):
        backend.generate([""], cfg, seed=0)
    with pytest.raises(ValueError, match="at least one prompt"):
        backend.generate([], cfg, seed=0)
    with pytest.raises(ValueError, match="positive integers"):
        HFGenerateBackend(model, tokenizer, max_prompt_tokens=5, micro_batch_size=0)
