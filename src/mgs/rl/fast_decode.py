"""A lean single-token decode loop for Llama-family decoder-only models (Qwen2, Llama).

At the sizes the tiny domains use (a few layers, hidden ~100, ~100-token vocabulary), a decode
step of ``model.generate`` is dominated by per-call Python work (mask creation, cache classes,
keyword plumbing, logits-processor and stopping-criteria machinery), not by arithmetic. This loop
does one prefill with the Hugging Face model itself (so the prompt pass, and the first token, are
exactly ``generate``'s), copies its KV cache into preallocated per-layer tensors
``[B, kv_heads, P + R, head_dim]``, then runs each single-token step by calling the model's own
submodules (embedding, RMSNorms, q/k/v/o projections with their biases, rotary embedding with its
scaling, MLP, final norm, LM head), so the weights and every numerical convention are the model's.
The step mirrors Hugging Face's SDPA decode path op for op (grouped-query attention by packing the
query heads per KV head, a boolean padding mask that is omitted when there is no padding), which
is why on CPU it reproduces ``generate``'s tokens exactly (tests/unit/rl/test_rl_fast_decode.py).
Finished rows stay in the batch (fed the pad token, as ``generate`` does): dropping them would
change the matmul shapes, and with them the last bits of the other rows' logits.

Written by hand: no library offers a lean, cache-preallocated decode loop for Hugging Face models
on CPU (vLLM / SGLang need an accelerator; ``generate``'s static cache still runs its machinery).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mgs.errors import ConfigError

__all__ = [
    "FAST_DECODE_ARCHITECTURES",
    "fast_decode",
    "fast_decode_unsupported",
    "resolve_decode",
]

FAST_DECODE_ARCHITECTURES = ("Qwen2ForCausalLM", "LlamaForCausalLM")

# (input_ids [B, P + t], scores [B, V]) -> scores [B, V]: a generate-style logits processor.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (input_ids [B, P + t], scores [B, V]) -> done [B] bool: a generate-style stopping criterion.
StopCriterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fast_decode_unsupported(model: torch.nn.Module) -> str | None:
    """Why :func:`fast_decode` cannot run ``model`` (a sentence), or ``None`` when it can.

    Only the exact Hugging Face classes qualify (a subclass or wrapper may change the forward),
    with full attention in every layer and the SDPA / eager attention maths.
    """
    name = type(model).__name__
    if type(model).__module__.split(".")[0] != "transformers" or name not in (
        FAST_DECODE_ARCHITECTURES
    ):
        return f"the policy is a {name}; the fast decode loop supports " + ", ".join(
            FAST_DECODE_ARCHITECTURES
        )
    config = model.config
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or []):
        return f"the policy ({name}) uses sliding-window attention, which the fast loop lacks"
    return None


def resolve_decode(model: torch.nn.Module, decode: str, *, sharded: bool) -> str:
    """The decode loop to run: ``"generate"`` or ``"fast"``, for the option value ``decode``.

    ``auto`` picks ``fast`` for a supported architecture that is not sharded across ranks (a
    sharded forward is a collective: ``generate`` keeps every rank stepping, this loop does not),
    ``generate`` otherwise. ``fast`` on an unsupported model raises :class:`ConfigError`.
    """
    if decode not in ("generate", "fast", "auto"):
        raise ConfigError(f"rollout.decode must be generate, fast or auto; got {decode!r}")
    if decode == "generate":
        return "generate"
    reason = fast_decode_unsupported(model)
    if reason is None and sharded:
        reason = "the policy is sharded across ranks (FSDP / DTensor)"
    if reason is None:
        return "fast"
    if decode == "auto":
        return "generate"
    raise ConfigError(
        f"rollout.decode=fast: {reason}. Supported: "
        f"{', '.join(FAST_DECODE_ARCHITECTURES)}, unsharded; set rollout.decode=generate "
        "(or auto) for this model"
    )


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, the same ops as Hugging Face's ``apply_rotary_pos_emb``."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos) + (rotated * sin)


def fast_decode(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    logits_processor: LogitsProcessor | None = None,
    stop: StopCriterion | None = None,
) -> torch.Tensor:
    """Greedy decoding over processed scores, as ``generate(do_sample=False)``: ``[B, R]`` ids.

    ``input_ids`` / ``attention_mask`` ``[B, P]`` are left-padded. Each step takes the argmax of
    ``logits_processor(ids so far, float32 logits)`` (``None``: of the logits; pass a
    :class:`~mgs.rl.gumbel.KeyedGumbelSampler` for keyed sampling). A row finishes after an EOS
    id or when ``stop`` says so, and gets ``pad_id`` afterwards; the loop ends when every row has
    finished or after ``max_new_tokens`` tokens, so ``R <= max_new_tokens``. The caller puts the
    model in eval mode. Check the model with :func:`fast_decode_unsupported` first.
    """
    inner = model.model
    batch, width = input_ids.shape
    total = width + max_new_tokens
    device = input_ids.device
    eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
    with torch.inference_mode():
        real = attention_mask.bool()  # [B, P]
        positions = attention_mask.long().cumsum(-1) - 1  # [B, P], as generate's
        positions = positions.masked_fill(~real, 0)
        prefill = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = prefill.logits[:, -1, :].float()  # [B, V]
        # Preallocated KV: [B, kv_heads, P + R, head_dim] per layer, the prompt's written now.
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        # transformers 5 names the cache `cache` (reading `past_key_values` warns); older: the latter
        cache = prefill.cache if "cache" in prefill else prefill.past_key_values
        for layer in cache.layers:
            k, v = layer.keys, layer.values  # [B, kv_heads, P, head_dim]
            kb = k.new_empty(k.shape[0], k.shape[1], total, k.shape[3])
            vb = v.new_empty(v.shape[0], v.shape[1], total, v.shape[3])
            kb[:, :, :width] = k
            vb[:, :, :width] = v
            keys.append(kb)
            values.append(vb)
        del prefill
        # Generated tokens are always attended (finished rows too, as in generate), so the
        # mask is the prompt's padding followed by ones; no padding at all means no mask
        # (Hugging Face then passes none to SDPA either, which picks the same kernel).
        mask: torch.Tensor | None = None
        if not bool(real.all()):
            mask = torch.ones(batch, 1, 1, total, dtype=torch.bool, device=device)
            mask[:, 0, 0, :width] = real  # [B, 1, 1, P + R]
        ids = torch.full((batch, total), pad_id, dtype=torch.long, device=device)  # [B, P + R]
        ids[:, :width] = input_ids
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)  # [B]
        position = positions[:, -1:] + 1  # [B, 1]: the next token's position
        steps = 0
        for t in range(max_new_tokens):
            scores = (
                logits
                if logits_processor is None
                else logits_processor(ids[:, : width + t], logits)
            )
            token = torch.where(unfinished, scores.argmax(-1), pad_id)  # [B]
            ids[:, width + t] = token
            steps = t + 1
            done = torch.isin(token, eos)  # [B]
            if stop is not None:
                done = done | stop(ids[:, : width + steps], scores)
            unfinished = unfinished & ~done
            if steps == max_new_tokens or not bool(unfinished.any()):
                break
            logits = _step(model, inner, token, position, keys, values, mask, width + t)
            position = position + 1
    return ids[:, width : width + steps].clone()


def _step(
    model: torch.nn.Module,
    inner: torch.nn.Module,
    token: torch.Tensor,
    position: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    mask: torch.Tensor | None,
    slot: int,
) -> torch.Tensor:
    """One decode step: feed ``token`` [B] at ``position`` [B, 1] into KV slot ``slot``; return
    the next float32 logits [B, V]. Mirrors Hugging Face's decoder layer with SDPA attention."""
    batch = token.shape[0]
    length = slot + 1  # keys attended: the prompt, the earlier tokens and this one
    hidden = inner.embed_tokens(token[:, None])  # [B, 1, H]
    cos, sin = inner.rotary_emb(hidden, position)  # [B, 1, head_dim] each
    cos, sin = cos[:, None], sin[:, None]  # [B, 1, 1, head_dim]: broadcast over heads
    step_mask = None if mask is None else mask[..., :length]  # [B, 1, 1, L]
    for i, layer in enumerate(inner.layers):
        attn = layer.self_attn
        head_dim = attn.head_dim
        groups = attn.num_key_value_groups
        residual = hidden
        x = layer.input_layernorm(hidden)  # [B, 1, H]
        q = attn.q_proj(x).view(batch, 1, -1, head_dim).transpose(1, 2)  # [B, heads, 1, D]
        k = attn.k_proj(x).view(batch, 1, -1, head_dim).transpose(1, 2)  # [B, kv_heads, 1, D]
        v = attn.v_proj(x).view(batch, 1, -1, head_dim).transpose(1, 2)  # [B, kv_heads, 1, D]
        q = _rotate(q, cos, sin)
        keys[i][:, :, slot : slot + 1] = _rotate(k, cos, sin)
        values[i][:, :, slot : slot + 1] = v
        kv_heads = keys[i].shape[1]
        # GQA without repeating K/V: the query heads of a KV head become its query rows
        # ([B, kv_heads, groups, D]), as Hugging Face's pack_gqa does for one query token.
        # Without a mask it uses SDPA's enable_gqa instead, as Hugging Face does on CPU.
        packed = groups > 1 and step_mask is not None
        query = q.reshape(batch, kv_heads, groups, head_dim) if packed else q
        out = F.scaled_dot_product_attention(
            query,
            keys[i][:, :, :length],  # [B, kv_heads, L, D]
            values[i][:, :, :length],
            attn_mask=step_mask,
            dropout_p=0.0,
            scale=attn.scaling,
            enable_gqa=groups > 1 and not packed,
        )  # [B, kv_heads, groups, D] packed, else [B, heads, 1, D]
        out = out.reshape(batch, -1, 1, head_dim).transpose(1, 2).contiguous()  # [B, 1, heads, D]
        hidden = residual + attn.o_proj(out.reshape(batch, 1, -1).contiguous())  # [B, 1, H]
        residual = hidden
        hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
    hidden = inner.norm(hidden)  # [B, 1, H]
    return model.lm_head(hidden)[:, -1, :].float()  # [B, V]
