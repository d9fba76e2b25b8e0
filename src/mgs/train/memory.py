"""Per-GPU memory estimate of a run, from its config and the model's ``config.json``
(``mgs train --estimate-memory``, docs/memory.md). Pure arithmetic: nothing is loaded or allocated.

Sizes are bytes; ``N`` is a parameter count, ``W`` the number of ranks, ``e`` bytes per element of
the policy's dtype. What a GPU holds, by phase (training: rewards are scored and the update runs;
generation: the vLLM engine is awake):

- persistent (both phases): the policy's shard ``N e / W`` (FSDP2; DDP or one process: ``N e``),
  its gradients (same size), AdamW's two moments (``2 N e / W``), the frozen KL reference's shard
  (``N e / W``, when ``kl_coef > 0``), one MGS gradient buffer per domain (``K N e_buf / W``, when
  the strategy keeps per-domain gradients), and the reward model (its ``N_rm e_rm`` on every rank);
- training only: FSDP2's unsharded working set in backward (the root unit, embeddings + final norm
  + LM head, stays gathered with its gradients through the whole backward, as do the current and
  the prefetched decoder layer: ``(2 N_root + 3 N_layer) e``); the activations of one micro-batch
  of ``B`` sequences of ``T = max prompt + max new tokens`` tokens (see :func:`layer_activation_bytes`;
  with gradient checkpointing each layer keeps only its input, ``L H e`` per token, plus one layer
  recomputed in full); the logits of the response positions at the log-softmax
  (:func:`logits_bytes`); and the vLLM engine's share when it does not sleep;
- generation only: the vLLM engine's share, ``gpu_memory_utilization x GPU memory``.

bf16 mixed precision (``model.mixed_precision``) keeps the persistent items in ``model.dtype`` and
counts the training-phase items (gathered weights, activations) at 2 bytes, plus the model's
bfloat16 logits gradient beside the float32 ones. LoRA (``model.lora``) keeps the frozen base
weights, and counts gradients, AdamW state and MGS buffers for the ``N_a`` adapter parameters only
(:meth:`Architecture.lora_parameters`); its KL reference is the policy itself (no copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mgs.errors import ConfigError

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# model_type -> (q, k, v have a bias, o_proj has a bias, per-head q/k RMSNorm)
_ATTENTION = {"qwen2": (True, False, False), "qwen3": (False, False, True)}


@dataclass(frozen=True)
class Architecture:
    """The sizes of a decoder-only transformer (Llama / Qwen2 / Qwen3 / Mistral layout) that the
    estimate needs, read from its Hugging Face ``config.json``."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    num_labels: int | None = None  # a sequence-classification head (a reward model) instead
    notes: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> Architecture:
        """Read ``config.json``'s fields; a missing one is a ConfigError naming it and the file."""

        def need(key: str) -> int:
            if not isinstance(config.get(key), int):
                raise ConfigError(
                    f"{where} has no integer {key!r}; the memory estimate needs a decoder-only "
                    "model's config.json (hidden_size, intermediate_size, num_hidden_layers, "
                    "num_attention_heads, vocab_size)"
                )
            return int(config[key])

        model_type = str(config.get("model_type", "?"))
        hidden, heads = need("hidden_size"), need("num_attention_heads")
        qkv_default, o_default, qk_norm = _ATTENTION.get(model_type, (False, False, False))
        bias = bool(config.get("attention_bias", False))  # Llama / Mistral / Qwen3: q, k, v, o
        architectures = config.get("architectures") or []
        classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
        notes = ()
        if model_type not in ("llama", "mistral", "qwen2", "qwen3"):
            notes = (f"model_type {model_type!r}: counted as a Llama-style decoder",)
        return cls(
            model_type=model_type,
            hidden=hidden,
            intermediate=need("intermediate_size"),
            layers=need("num_hidden_layers"),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab=need("vocab_size"),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=qkv_default or bias,
            o_bias=o_default or bias,
            mlp_bias=bool(config.get("mlp_bias", False)),
            qk_norm=qk_norm,
            num_labels=int(config.get("num_labels") or len(config.get("id2label") or [0]))
            if classifier
            else None,
            notes=notes,
        )

    @property
    def layer_parameters(self) -> int:
        """Parameters of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = self.hidden * (q + 2 * kv) + q * self.hidden  # q, k, v, o projections
        attention += (q + 2 * kv) * self.qkv_bias + self.hidden * self.o_bias
        attention += 2 * self.head_dim * self.qk_norm
        mlp = 3 * self.hidden * self.intermediate  # gate, up, down (SwiGLU)
        mlp += (2 * self.intermediate + self.hidden) * self.mlp_bias
        return attention + mlp + 2 * self.hidden  # + input and post-attention RMSNorm

    @property
    def root_parameters(self) -> int:
        """Parameters outside the decoder layers: embeddings, final norm, output head."""
        if self.num_labels is not None:
            head = self.num_labels * self.hidden  # score head, no bias
        else:
            head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + self.hidden + head

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_parameters + self.root_parameters

    def lora_parameters(self, r: int, targets: list[str]) -> int:
        """Parameters of rank-``r`` LoRA adapters on ``targets`` (peft's target_modules: the
        decoder's projections, ``all-linear`` for all of them, ``lm_head``, ``embed_tokens``):
        ``r x (in + out)`` per adapted layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        per_layer = {
            "q_proj": h + q,
            "k_proj": h + kv,
            "v_proj": h + kv,
            "o_proj": q + h,
            "gate_proj": h + i,
            "up_proj": h + i,
            "down_proj": i + h,
        }
        once = {"lm_head": h + self.vocab, "embed_tokens": self.vocab + h}
        names = list(per_layer) if targets == ["all-linear"] else targets
        unknown = sorted(set(names) - set(per_layer) - set(once))
        if unknown:
            raise ConfigError(
                f"--estimate-memory counts LoRA on {', '.join([*per_layer, *once])} or "
                f"all-linear; model.lora.target_modules has {', '.join(unknown)}"
            )
        width = sum(per_layer.get(n, 0) for n in names) * self.layers
        return r * (width + sum(once.get(n, 0) for n in names))

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache of one token in a bfloat16 engine: keys and values of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


def layer_activation_bytes(arch: Architecture, element: int) -> int:
    """Bytes one decoder layer keeps for backward per token, without checkpointing: its input and
    the RMSNorm output (2H), q (heads x D), k and v (2 kv x D), the attention output (heads x D)
    for o_proj, the residual sum and the second RMSNorm output (2H), gate and up outputs, SiLU(gate)
    and the product fed to down_proj (4I). SDPA keeps no [T, T] score matrix."""
    q, kv = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
    return (4 * arch.hidden + 2 * q + 2 * kv + 4 * arch.intermediate) * element


def logits_bytes(
    batch: int, positions: int, vocab: int, with_entropy: bool, compute_bytes: int = 4
) -> int:
    """Peak bytes of the logits of ``positions`` response positions (``logits_to_keep``) in float32
    (mgs.rl.logprobs): the temperature-scaled logits autograd keeps, the log-sum-exp's exp and, in
    backward, the gradient: 3 copies of [B, R, V]; the entropy bonus keeps its softmax: one more.
    With bf16 compute (``compute_bytes`` 2) the head's bfloat16 logits gradient is one more, at 2 B."""
    extra = compute_bytes if compute_bytes < 4 else 0
    return batch * positions * vocab * (4 * (3 + int(with_entropy)) + extra)


@dataclass(frozen=True)
class MemoryItem:
    """One line of the budget: what, how many bytes per GPU, how, and in which phases."""

    name: str
    size: int
    how: str
    phases: tuple[str, ...] = ("training", "generation")


@dataclass
class MemoryBudget:
    """Every item a GPU holds, the GPU's memory, and what the numbers assume."""

    title: str
    gpu_bytes: int
    items: list[MemoryItem] = field(default_factory=list)
    host: list[MemoryItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def peak(self, phase: str) -> int:
        return sum(item.size for item in self.items if phase in item.phases)

    def lines(self) -> list[str]:
        """The budget as aligned text lines (what ``--estimate-memory`` prints)."""
        out = [self.title]
        width = max(len(item.name) for item in self.items)
        for item in self.items:
            phase = "" if len(item.phases) == 2 else f" [{item.phases[0]} only]"
            out.append(f"  {item.name:<{width}} {item.size / GIB:7.2f} GiB  {item.how}{phase}")
        gpu = self.gpu_bytes / GIB
        for phase in ("training", "generation"):
            peak = self.peak(phase) / GIB
            verdict = "fits" if peak <= gpu else f"OVER by {peak - gpu:.1f} GiB"
            out.append(f"  {phase + ' peak':<{width}} {peak:7.2f} GiB  of {gpu:g} GiB: {verdict}")
        for item in self.host:
            out.append(f"  host: {item.name}: {item.size / GIB:.1f} GiB ({item.how})")
        out += [f"  note: {note}" for note in self.notes]
        return out


def _gib(size: float) -> str:
    return f"{size / GIB:.2f} GiB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}e9" if n >= 1e9 else f"{n / 1e6:.2f}e6"


def trained_parameters(cfg: Any, arch: Architecture) -> int:
    """The parameters the optimizer steps: all of them, or the LoRA adapters'."""
    lora = cfg.model.lora
    return arch.parameters if lora is None else arch.lora_parameters(lora.r, lora.target_modules)


def _persistent(cfg: Any, arch: Architecture, shard: int) -> list[MemoryItem]:
    """Policy, gradients, AdamW state, KL reference, MGS buffers: ``N e / shard`` each (LoRA:
    gradients, AdamW state and buffers of the ``N_a`` adapter parameters)."""
    n, dtype, lora = arch.parameters, cfg.model.dtype, cfg.model.lora
    e = DTYPE_BYTES[dtype]
    ranks = f" / {shard} ranks" if shard > 1 else ""
    part = f"{_count(n)} params x {e} B{ranks}"
    items = [MemoryItem(f"policy ({dtype})", n * e // shard, part)]
    trained = trained_parameters(cfg, arch)
    if lora is not None:  # peft keeps adapters in float32 whatever the base's dtype
        e = DTYPE_BYTES["float32"]
        part = f"{_count(trained)} adapter params (r={lora.r}) x {e} B{ranks}"
        items.append(MemoryItem("LoRA adapters", trained * e // shard, part))
    items += [
        MemoryItem("gradients", trained * e // shard, part),
        MemoryItem("AdamW state (2 moments)", 2 * trained * e // shard, f"2 x {part}"),
    ]
    if cfg.grpo.loss.kl_coef > 0 and lora is None:
        items.append(MemoryItem("KL reference (frozen)", n * e // shard, part))
    if cfg.strategy.needs_surgeon:
        k = len({source.domain for source in cfg.data.sources})
        auto = dtype if lora is None else "float32"  # auto: the trained parameters' dtype
        buffer = cfg.strategy.buffer_dtype if cfg.strategy.buffer_dtype != "auto" else auto
        size = k * trained * DTYPE_BYTES[buffer] // shard
        how = f"{k} domains x {_count(trained)} x {DTYPE_BYTES[buffer]} B ({buffer})"
        items.append(
            MemoryItem(f"MGS buffers (K={k})", size, how + (f" / {shard}" if shard > 1 else ""))
        )
    return items


def compute_bytes(cfg: Any) -> int:
    """Bytes per element of the forward / backward compute: bf16 with mixed precision."""
    mp = cfg.model.mixed_precision
    return DTYPE_BYTES[mp.param_dtype] if mp.enabled else DTYPE_BYTES[cfg.model.dtype]


def _root_trains(cfg: Any) -> bool:
    """Whether the root unit (embeddings, final norm, head) has gradients (LoRA: only when an
    adapter sits on the embeddings or the head)."""
    lora = cfg.model.lora
    return lora is None or bool({"embed_tokens", "lm_head"} & set(lora.target_modules))


def _training(cfg: Any, arch: Architecture, shard: int) -> list[MemoryItem]:
    """FSDP2 working set, activations and logits of one micro-batch (training phase only), in
    the compute dtype (bf16 with mixed precision)."""
    e = compute_bytes(cfg)
    only = ("training",)
    items = []
    if shard > 1:
        root = 2 if _root_trains(cfg) else 1
        size = (root * arch.root_parameters + 3 * arch.layer_parameters) * e
        how = (
            f"unsharded in backward: root (embeddings + head, {arch.root_parameters / 1e9:.2f}e9) "
            f"params{' + grads' if root == 2 else ''}, 3 x a layer "
            f"({arch.layer_parameters / 1e9:.3f}e9), x {e} B"
        )
        items.append(MemoryItem("FSDP2 gathered weights", size, how, only))
    batch = cfg.grpo.micro_batch_size
    tokens = batch * (cfg.data.max_prompt_tokens + cfg.rollout.sampling.max_new_tokens)
    full = layer_activation_bytes(arch, e) * tokens
    kept = arch.layers * arch.hidden * e * tokens + full  # layer inputs + one layer recomputed
    everything = arch.layers * full
    if cfg.model.gradient_checkpointing:
        how = f"{tokens} tokens: checkpointing on ({_gib(everything)} with it off)"
        items.append(MemoryItem("activations", kept, how, only))
    else:
        how = f"{tokens} tokens: checkpointing off ({_gib(kept)} with model.gradient_checkpointing)"
        items.append(MemoryItem("activations", everything, how, only))
    positions = cfg.rollout.sampling.max_new_tokens + 1
    entropy = cfg.grpo.loss.entropy_coef > 0
    how = f"[{batch}, {positions}, {arch.vocab}] float32 x {3 + int(entropy)}" + (
        " + bfloat16 x 1" if e < 4 else ""
    )
    how += " (entropy bonus on)" if entropy else ""
    size = logits_bytes(batch, positions, arch.vocab, entropy, compute_bytes=e)
    items.append(MemoryItem("logits", size, how, only))
    return items


def estimate_memory(
    cfg: Any,
    policy: Architecture,
    reward_model: Architecture | None,
    *,
    world_size: int,
    gpu_gib: float,
    title: str = "",
) -> MemoryBudget:
    """The per-GPU budget of ``cfg`` (a :class:`~mgs.train.config.TrainConfig`) on ``world_size``
    ranks of ``gpu_gib`` GiB GPUs; ``reward_model`` is None when no reward model is routed (or, with
    a note saying so, when its config.json was not found: then it is assumed the policy's size)."""
    if world_size < 1 or not 0 < gpu_gib < math.inf:  # nan fails both comparisons
        raise ConfigError(
            f"--world-size must be >= 1 and --gpu-memory a finite number of GiB > 0 (got "
            f"{world_size} and {gpu_gib})"
        )
    strategy = cfg.distributed.strategy
    shard = world_size if strategy == "fsdp2" else 1
    layout = f"{world_size} rank(s), " + (
        "FSDP2" if shard > 1 else "DDP" if world_size > 1 else "one process"
    )
    extras = ", bf16 compute" if cfg.model.mixed_precision.enabled else ""
    extras += f", LoRA r={cfg.model.lora.r}" if cfg.model.lora is not None else ""
    budget = MemoryBudget(
        f"per-GPU memory estimate{': ' + title if title else ''} ({policy.parameters / 1e9:.2f}e9 "
        f"parameters, {layout}{extras}, {gpu_gib:g} GiB GPUs)",
        int(gpu_gib * GIB),
    )
    budget.items += _persistent(cfg, policy, shard)
    budget.items += _training(cfg, policy, shard)
    if cfg.model.lora is not None and cfg.grpo.loss.kl_coef > 0:
        budget.notes.append("KL reference: the policy with its LoRA adapters disabled (no copy)")
    budget.notes += list(policy.notes)
    routed = "reward_model" in cfg.rewards.routes.values()
    if routed and reward_model is not None:
        rm_dtype = cfg.rewards.reward_model.dtype
        rm_dtype = "bfloat16" if rm_dtype == "auto" else rm_dtype  # auto: bfloat16 on a GPU
        n = reward_model.parameters
        how = f"{n / 1e9:.2f}e9 params x {DTYPE_BYTES[rm_dtype]} B ({rm_dtype}) on every rank"
        budget.items.append(MemoryItem("reward model", n * DTYPE_BYTES[rm_dtype], how))
        budget.notes += list(reward_model.notes)
    _vllm(cfg, policy, budget, gpu_gib)
    if world_size == 1 and strategy == "fsdp2":
        budget.notes.append("FSDP2 over 1 rank shards nothing: pass --world-size (GPUs launched)")
    budget.host.append(
        MemoryItem(
            "rank 0 reads the full policy while loading",
            policy.parameters * DTYPE_BYTES[cfg.model.dtype],
            "freed once sharded",
        )
    )
    return budget


def _vllm(cfg: Any, policy: Architecture, budget: MemoryBudget, gpu_gib: float) -> None:
    """The vLLM engine's share; with sleep mode it is released during training."""
    if cfg.rollout.backend != "vllm":
        return
    vllm = cfg.rollout.vllm
    share = int(vllm.gpu_memory_utilization * gpu_gib * GIB)
    weights = policy.parameters * 2  # bfloat16 engine weights
    phases = ("generation",) if vllm.enable_sleep_mode else ("training", "generation")
    how = f"gpu_memory_utilization {vllm.gpu_memory_utilization} x {gpu_gib:g} GiB" + (
        ", asleep while training" if vllm.enable_sleep_mode else ", kept while training"
    )
    budget.items.append(MemoryItem("vLLM engine", share, how, phases))
    room = share - weights
    tokens = max(room, 0) // policy.kv_bytes_per_token
    longest = vllm.max_model_len or (
        cfg.data.max_prompt_tokens + cfg.rollout.sampling.max_new_tokens
    )
    budget.notes.append(
        f"vLLM share: bfloat16 weights {_gib(weights)}, leaving at most {_gib(max(room, 0))} for "
        f"the KV cache and its activations: {tokens} tokens at {policy.kv_bytes_per_token // 1024} "
        f"KiB each, {tokens // longest} sequences of {longest} tokens"
    )
    if cfg.model.lora is not None:
        budget.notes.append(
            "vLLM LoRA: the engine's adapter (bfloat16) and its LoRA buffers for max_lora_rank "
            "come out of the same share"
        )
    if vllm.enable_sleep_mode and vllm.sleep_level == 1:
        budget.host.append(
            MemoryItem("vLLM sleep level 1 keeps the engine's weights", weights, "per rank")
        )
