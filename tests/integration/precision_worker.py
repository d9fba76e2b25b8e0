"""Worker: bf16-compute FSDP2 (MixedPrecisionPolicy, float32 master weights) or one process with
bf16 autocast, on the same global rollout batch, through the real PolicyUpdater and surgeon.

Usage: ``python precision_worker.py single OUT.pt VARIANT...`` (the whole batch, autocast) or
``torchrun --nproc_per_node 2 precision_worker.py fsdp2 OUT.pt VARIANT...`` (each rank its share).
VARIANT is ``full`` (every weight trains) or ``lora`` (peft adapters; KL reference = the policy with
its adapters disabled). The single process (or rank 0) saves, per variant and step: the surgery
Gram stacks (the per-domain gradient products; all-reduced over the shards under FSDP2), the loss
of the fixed batch under the current weights, the final full weights, the dtypes seen (sharded
parameters, surgeon buffers, a projection's weight during the forward) and the trainable names.
"""

from __future__ import annotations

import random
import sys
from contextlib import nullcontext

import torch
import torch.distributed as dist

from mgs.rl import GRPOLossConfig, loss_normalizer, response_logprobs
from mgs.rl.rollout import Completion, RolloutBatch
from mgs.strategy import StrategyConfig
from mgs.strategy.combiner import build_combiner
from mgs.surgery.distributed import reshard_fsdp
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer
from mgs.train.config import GRPOConfig
from mgs.train.distributed import DistContext, shard_module
from mgs.train.precision import MixedPrecisionConfig, fsdp_mixed_precision
from mgs.train.update import PolicyUpdater

DOMAINS = ["math", "chat"]
PROMPTS, N, STEPS = 8, 2, 4  # prompts 0-3 are math, 4-7 chat; each rank gets 2 of each
BF16 = torch.bfloat16
LR = 0.05  # SGD: small steps, so the two runs stay within bf16's reach of each other


def _global_batch(tokenizer) -> tuple[list[list[int]], list[list[list[int]]]]:
    rng = random.Random(0)
    ids = tokenizer("abcdefghij klmnop qrstuv", add_special_tokens=False)["input_ids"]
    prompts = [[rng.choice(ids) for _ in range(rng.randint(3, 6))] for _ in range(PROMPTS)]
    completions = [
        [[rng.choice(ids) for _ in range(rng.randint(3, 8))] for _ in range(N)] for _ in prompts
    ]
    return prompts, completions


def _share(prompts, completions, owned: list[int]):
    """The rollouts of the prompts ``owned`` (in order), their domains and advantages."""
    rows, domains, advantages = [], [], []
    for local, p in enumerate(owned):
        for j, completion in enumerate(completions[p]):
            rows.append(Completion(local, prompts[p], completion, "x", "stop"))
            domains.append(DOMAINS[p // 4])
            advantages.append((1.0 if j == 0 else -1.0) * (1 + p % 3))  # [B]: +/- per group
    return RolloutBatch(rows, N), domains, torch.tensor(advantages)


def _updater(model, tokenizer, ctx, compute_dtype, reference):
    # The combiner first: building the surgeon reshards the FSDP2 units (the dtype probe's
    # no-grad forward left the root unit's parameters gathered), so the optimizer below gets
    # the sharded parameters.
    strategy = StrategyConfig(name="custom", aggregator="sum", granularity="tensor")
    combiner = build_combiner(model, DOMAINS, strategy, seed=0)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    kl = 0.1 if reference is not None else 0.0
    return PolicyUpdater(
        model,
        optimizer,
        scheduler,
        GRPOConfig(loss=GRPOLossConfig(kl_coef=kl, entropy_coef=0.0), micro_batch_size=2),
        domains=DOMAINS,
        combiner=combiner,
        reference=reference,
        temperature=1.0,
        pad_token_id=tokenizer.pad_token_id,
        grad_clip=None,
        device=torch.device("cpu"),
        seed=0,
        ctx=ctx,
        compute_dtype=compute_dtype,
    )


def _surrogate(model, batch, advantages, pad, compute_dtype) -> torch.Tensor:
    """-sum(A * logp) / tokens of the fixed batch (the policy-gradient loss), summed over ranks."""
    t = batch.to_tensors(pad)
    ctx = torch.autocast("cpu", dtype=compute_dtype) if compute_dtype else nullcontext()
    with torch.no_grad(), ctx:
        logp, _ = response_logprobs(model, t["input_ids"], t["attention_mask"], t["response_mask"])
    total = -(advantages[:, None] * logp * t["response_mask"]).sum().double()
    tokens = loss_normalizer(t["response_mask"], "token-mean").double()
    both = torch.stack([total, tokens])
    if dist.is_initialized():
        dist.all_reduce(both)
    return both[0] / both[1]


def _run(model, batch, domains, advantages, tokenizer, ctx, compute_dtype, lora) -> dict:
    reference = None
    if lora:
        from mgs.models.lora import AdaptersDisabled

        reference = AdaptersDisabled(model)
    updater = _updater(model, tokenizer, ctx, compute_dtype, reference)
    out = {"gram": [], "loss": []}
    for step in range(STEPS):
        out["loss"].append(float(_surrogate(model, batch, advantages, updater.pad, compute_dtype)))
        result = updater.update(batch, domains, advantages, step)
        out["gram"].append(result.surgery.gram.clone())
    out["loss"].append(float(_surrogate(model, batch, advantages, updater.pad, compute_dtype)))
    out["buffer_dtype"] = str(updater.combiner.surgeon.buffers.dtype)
    reshard_fsdp(model)  # the last no-grad forward left the root unit gathered
    out["weights"] = {
        n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
        for n, p in model.named_parameters()
    }
    return out


def _policy(tokenizer, lora: bool):
    model = build_tiny_policy(
        tokenizer,
        TinyModelConfig(
            hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
        ),
    )
    if lora:
        from mgs.models.lora import LoRAConfig, apply_lora

        torch.manual_seed(1)  # lora_A's initialisation (lora_B starts at zero)
        model = apply_lora(model, LoRAConfig(r=4, alpha=8))
        with torch.no_grad():  # B = 0 would give A no gradient in the first step
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) / 10)
    return model


def _compute_dtype_seen(model, batch, pad, autocast: bool) -> str:
    """The dtype a decoder projection computes in: its output's (autocast) or its all-gathered
    weight's (FSDP2's MixedPrecisionPolicy)."""
    seen = []
    layer = next(m for n, m in model.named_modules() if n.endswith("layers.0.mlp.down_proj"))
    base = getattr(layer, "base_layer", layer)

    def record(module, args, output):
        seen.append(str(output.dtype if autocast else module.weight.dtype))

    hook = base.register_forward_hook(record)
    t = batch.to_tensors(pad)
    ctx = torch.autocast("cpu", dtype=BF16) if autocast else nullcontext()
    with torch.no_grad(), ctx:
        response_logprobs(model, t["input_ids"], t["attention_mask"], t["response_mask"])
    hook.remove()
    return seen[0]


def main() -> None:
    mode, out_path, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "fsdp2":
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        ctx = DistContext(rank, world, rank, "fsdp2")
    else:
        rank, world, ctx = 0, 1, DistContext()
    tokenizer = build_tiny_tokenizer()
    prompts, completions = _global_batch(tokenizer)
    mine = [p for p in range(PROMPTS) if (p % 4) % world == rank]  # math 0-3, chat 4-7 alike
    batch, domains, advantages = _share(prompts, completions, mine)
    results = {}
    for variant in variants:
        lora = variant == "lora"
        model = _policy(tokenizer, lora)
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        if mode == "fsdp2":
            shard_module(model, fsdp_mixed_precision(MixedPrecisionConfig(enabled=True)))
        seen = _compute_dtype_seen(model, batch, tokenizer.pad_token_id, mode == "single")
        dtype = BF16 if mode == "single" else None  # FSDP2: the MixedPrecisionPolicy casts
        results[variant] = _run(model, batch, domains, advantages, tokenizer, ctx, dtype, lora)
        results[variant].update(
            compute_dtype=seen,
            param_dtypes=sorted({str(_local(p).dtype) for p in model.parameters()}),
            trainable=trainable,
        )
    if rank == 0:
        torch.save(results, out_path)
    if mode == "fsdp2":
        dist.barrier()
        dist.destroy_process_group()


def _local(param: torch.Tensor) -> torch.Tensor:
    return param.to_local() if hasattr(param, "to_local") else param


if __name__ == "__main__":
    main()
