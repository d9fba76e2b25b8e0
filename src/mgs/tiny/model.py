"""The built-in tiny architecture: a character-level tokenizer and a small Qwen2 built in-process.

Nothing is downloaded: the tokenizer is built with the ``tokenizers`` library from a fixed
character vocabulary and wrapped as a ``PreTrainedTokenizerFast`` (so ``save_pretrained`` /
``from_pretrained`` / chat templates work as for any Hugging Face tokenizer), and the models are
``Qwen2ForCausalLM`` / ``Qwen2ForSequenceClassification`` built from a config. Everything
downstream (rollouts, log-probs, the reward model, checkpoints) therefore runs exactly the code path
a real Hugging Face model uses.

The zero-think tags and ``\\boxed{`` are single tokens: they are what the tiny domains' answers are
made of, and a 4-layer model learns a 1-token tag far more easily than an 11-character one.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
)

from mgs.tiny.config import TinyModelConfig

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TINY_SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END, UNK]
# Multi-character pieces that are single tokens (decoded back to their text).
TINY_WORD_TOKENS = [
    "<think>",
    "</think>",
    "<response>",
    "</response>",
    "<query>",
    "</query>",
    "\\boxed{",
]
TINY_CHARS = string.printable[:-2]  # digits, letters, punctuation, space, \t, \n (no \r \x0b \x0c)

# A ChatML template, so that models with "their own chat template" can be exercised in tests.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer with the zero-think tags as single tokens; deterministic ids."""
    vocab: dict[str, int] = {}
    for tok in [*TINY_SPECIAL_TOKENS, *TINY_CHARS]:
        vocab.setdefault(tok, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Split into single characters; added tokens (tags) are matched before this runs.
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,  # a token of its own: decoding without specials must keep every character
        additional_special_tokens=[IM_START, IM_END],
    )
    tok.add_tokens(TINY_WORD_TOKENS)
    tok.chat_template = TINY_CHAT_TEMPLATE
    tok.padding_side = "left"  # generation pads on the left
    return tok


def _qwen2_config(tokenizer: PreTrainedTokenizerFast, cfg: TinyModelConfig) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_tiny_policy(
    tokenizer: PreTrainedTokenizerFast, cfg: TinyModelConfig | None = None
) -> Qwen2ForCausalLM:
    """A freshly initialised tiny causal LM (seeded, so the same config gives the same weights)."""
    import torch

    cfg = cfg or TinyModelConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(_qwen2_config(tokenizer, cfg))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_tiny_reward_model(
    tokenizer: PreTrainedTokenizerFast, cfg: TinyModelConfig | None = None
) -> Qwen2ForSequenceClassification:
    """A freshly initialised tiny scalar reward model (one label), scoring the last real token."""
    import torch

    cfg = cfg or TinyModelConfig()
    config = _qwen2_config(tokenizer, cfg)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Qwen2ForSequenceClassification(config)
    return model
