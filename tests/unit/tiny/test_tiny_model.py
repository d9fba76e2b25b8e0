"""The tiny tokenizer and models: round trips, single-token tags, reloading as saved."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mgs.models.loading import load_tokenizer
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

TEXT = 'User: <query>What is 2+3? Say "hi".</query>\nAssistant: <think>2 + 3 = 5</think> <response>\\boxed{5}</response>'


def test_every_printable_character_round_trips_and_tags_are_single_tokens() -> None:
    tok = build_tiny_tokenizer()
    printable = string.printable[:-2]
    assert tok.decode(tok(printable)["input_ids"], skip_special_tokens=True) == printable
    assert tok.decode(tok(TEXT)["input_ids"], skip_special_tokens=True) == TEXT
    for tag in ("<think>", "</think>", "<response>", "</response>", "\\boxed{"):
        assert len(tok(tag)["input_ids"]) == 1, tag
    assert tok.unk_token == "<|unk|>" and "?" in tok.decode(
        tok("?")["input_ids"], skip_special_tokens=True
    )


def test_saved_tokenizer_reloads_exactly_while_autotokenizer_would_drop_spaces(
    tmp_path: Path,
) -> None:
    tok = build_tiny_tokenizer()
    model = build_tiny_policy(
        tok, TinyModelConfig(hidden_size=32, num_layers=1, intermediate_size=32)
    )
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    ids = tok(TEXT)["input_ids"]
    assert loaded(TEXT)["input_ids"] == ids
    assert loaded.decode(ids, skip_special_tokens=True) == TEXT
    # The trap the loader avoids (transformers 5 picks Qwen2Tokenizer from the model type).
    auto = AutoTokenizer.from_pretrained(tmp_path)
    if type(auto).__name__ != type(loaded).__name__:
        assert auto(TEXT)["input_ids"] != ids
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_tiny_models_are_seeded() -> None:
    tok = build_tiny_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=1, intermediate_size=32, seed=3)
    a, b = build_tiny_policy(tok, cfg), build_tiny_policy(tok, cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
