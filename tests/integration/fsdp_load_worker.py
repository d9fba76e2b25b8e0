"""torchrun worker: FSDP2 loading (rank 0 reads the weights, every rank gets only its shards).

Usage: torchrun --nproc_per_node 2 fsdp_load_worker.py CASES.json OUT.pt

CASES.json is a list of ``{"name": ..., "model": {ModelConfig fields}}``. For each case every rank
runs ``load_policy_for`` + ``shard_from_rank0`` (policy and KL reference), then records what the
test compares with a single process: the gathered full state dict, the non-persistent buffers, the
logits of a forward on a fixed input (policy and reference), each parameter's local and full size,
and the reference's logits after one SGD step of the policy (it must not move). Rank 0 saves
``{case name: results}`` to OUT.pt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor

from mgs.dataclass_config import from_dict
from mgs.train.config import ModelConfig
from mgs.train.distributed import DistContext, gather_objects
from mgs.train.modeling import (
    checkpointing_enabled,
    load_policy_for,
    non_persistent_buffers,
    shard_from_rank0,
)

# Token ids below the tiny vocabulary (and every test model's): [2, 9].
INPUT_IDS = torch.tensor([[5, 17, 42, 8, 30, 11, 64, 3, 90], [7, 7, 21, 55, 40, 2, 19, 33, 12]])


def _sizes(model: torch.nn.Module) -> dict[str, tuple[int, tuple[int, ...], bool, bool]]:
    """name -> (local numel, full shape, is a DTensor, requires_grad)."""
    return {
        name: (
            p.to_local().numel() if isinstance(p, DTensor) else p.numel(),
            tuple(p.shape),
            isinstance(p, DTensor),
            p.requires_grad,
        )
        for name, p in model.named_parameters()
    }


def run_case(case: dict, ctx: DistContext) -> dict:
    cfg = from_dict(ModelConfig, case["model"])
    device = torch.device("cpu")
    full, _tokenizer = load_policy_for(cfg, device, ctx)
    loaded_on = None if full is None else str(next(full.parameters()).device)
    policy, reference = shard_from_rank0(full, device, ctx, reference=True)
    del full
    assert reference is not None
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(policy, options=options)  # rank 0 only
    with torch.no_grad():
        logits = policy(input_ids=INPUT_IDS).logits.float()  # [2, 9, V]
        ref_logits = reference(input_ids=INPUT_IDS).logits.float()
    # One SGD step of the policy: the reference must keep the initial weights.
    policy(input_ids=INPUT_IDS).logits.float().pow(2).mean().backward()
    torch.optim.SGD(policy.parameters(), lr=1.0).step()
    with torch.no_grad():
        stepped = policy(input_ids=INPUT_IDS).logits.float()
        ref_after = reference(input_ids=INPUT_IDS).logits.float()
    lm_head = getattr(policy, "lm_head", None)
    return {
        "loaded_on": gather_objects(loaded_on),  # per rank: where the full weights were read
        "state": state,
        "ref_state": get_model_state_dict(reference, options=options),
        "buffers": {k: v.clone() for k, v in non_persistent_buffers(policy).items()},
        "ref_buffers": {k: v.clone() for k, v in non_persistent_buffers(reference).items()},
        "logits": gather_objects(logits),
        "ref_logits": ref_logits,
        "stepped_logits": stepped,
        "ref_logits_after_step": ref_after,
        "sizes": gather_objects(_sizes(policy)),
        "ref_sizes": gather_objects(_sizes(reference)),
        "ref_training": reference.training,
        "policy_training": policy.training,
        "tied": lm_head is not None and lm_head.weight is policy.get_input_embeddings().weight,
        "generation_eos": policy.generation_config.eos_token_id,
        "gradient_checkpointing": checkpointing_enabled(policy),
    }


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out_path = sys.argv[2]
    dist.init_process_group("gloo")
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), dist.get_rank(), "fsdp2")
    results = {case["name"]: run_case(case, ctx) for case in cases}
    if ctx.is_main:
        torch.save(results, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
