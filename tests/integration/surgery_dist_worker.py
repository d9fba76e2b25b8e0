"""torchrun worker: surgery under FSDP2 / DDP on CPU (gloo), or in one process for the reference.

Usage: torchrun --nproc_per_node 2 surgery_dist_worker.py MODE GRANULARITY OUT.pt [AGGREGATOR ...]
MODE is "fsdp2", "ddp", "ddp-mismatch" (rank 1 runs the domains in another order: the surgeon must
refuse) or "single". Each of the 3 domains has a global batch of 4 sequences per step; with 2
ranks each rank gets 2 of them. For every aggregator (default: pcgrad) a fresh surgeon runs 3 steps
on different batches (so stateful aggregators carry state from step to step); rank 0 (or the single
process) saves, per aggregator, the full combined gradients, the last coefficients and summary.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from mgs.surgery import GradientSurgeon
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

DOMAINS = ["math", "chat", "if"]
STEPS = 3


def main() -> None:
    mode, granularity, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    aggregators = sys.argv[4:] or ["pcgrad"]
    distributed = mode != "single"
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    torch.manual_seed(0)
    model = build_tiny_policy(
        build_tiny_tokenizer(),
        TinyModelConfig(
            hidden_size=32, num_layers=2, intermediate_size=64, num_heads=4, num_kv_heads=2
        ),
    )
    names = [n for n, _ in model.named_parameters()]
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        wrapped = model
    elif mode.startswith("ddp"):
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        wrapped = model
    gen = torch.Generator().manual_seed(1)
    batches = [
        [torch.randint(5, 100, (4, 10), generator=gen) for _ in DOMAINS] for _ in range(STEPS)
    ]
    order = list(range(len(DOMAINS)))
    if mode == "ddp-mismatch" and rank == 1:
        order.reverse()
    results = {}
    for aggregator in aggregators:
        surgeon = GradientSurgeon(
            wrapped, DOMAINS, aggregator=aggregator, granularity=granularity, seed=7
        )
        for step in range(STEPS):
            surgeon.zero_grad()
            for d in order:
                local = batches[step][d].chunk(world)[rank]
                with surgeon.domain(DOMAINS[d]):
                    loss = wrapped(input_ids=local, labels=local).loss
                    (loss * (1.0 if d % 2 == 0 else -0.6)).backward()
            try:
                stats = surgeon.apply(max_norm=10.0)
            except RuntimeError as exc:
                if rank == 0:
                    torch.save({"error": str(exc)}, out_path)
                # DDP may still hold work of the mismatched step; tearing the group down can block.
                os._exit(0)
        grads = {}
        for n, p in model.named_parameters():
            g = p.grad
            grads[n] = g.full_tensor() if hasattr(g, "full_tensor") else g.detach().clone()
        results[aggregator] = {
            "grads": {n: grads[n] for n in names if n in grads},
            "coef": stats.coef.cpu(),
            "summary": stats.summary(),
        }
        surgeon.zero_grad()  # the next surgeon must find no gradient of this one
    if rank == 0:
        torch.save(results, out_path)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
