"""torchrun worker: TRL's GRPOTrainer and MGSGRPOTrainer under DDP through accelerate (gloo, CPU).

Usage: torchrun --nproc_per_node 2 trl_ddp_worker.py OUT_DIR

Runs, one after the other in the same processes, plain ``trl.GRPOTrainer``, ``MGSGRPOTrainer``
with the sum aggregator and with PCGrad per tensor, each for 2 optimizer steps of 2 accumulated
micro-batches, from the same weights, seeds and data. The dataset comes in domain blocks, so in
some micro-batches a rank has no row of a domain the other rank has (it then runs a zero-mask
padding row). Each rank saves its final parameters, the log history and the number of padding
rows to OUT_DIR/<trainer>-rank<r>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "integrations"))

import transformers
import trl
from trl_tiny import digit_fraction, grpo_config, letter_fraction, tiny_dataset, tiny_policy

from mgs.integrations.trl import MGSGRPOTrainer, domain_rewards

# 8 prompts per optimizer step (2 ranks x 2 micro-batches x 4 rows / 2 generations): the first
# step's rank 0 sees only math and rank 1 only chat; the second step mixes them.
ORDER = ["math"] * 4 + ["chat"] * 4 + ["math", "chat"] * 4


def main() -> None:
    out_dir = Path(sys.argv[1])
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    runs = {
        "plain": (trl.GRPOTrainer, {}),
        "sum": (MGSGRPOTrainer, {"surgery": "mixed"}),
        "pcgrad": (MGSGRPOTrainer, {"surgery": "mgs"}),
    }
    for name, (cls, extra) in runs.items():
        torch.manual_seed(0)
        model, tokenizer = tiny_policy()
        trainer = cls(
            model=model,
            reward_funcs=domain_rewards({"math": digit_fraction, "chat": letter_fraction}),
            args=grpo_config(
                out_dir / name,
                max_steps=2,
                per_device_train_batch_size=4,
                gradient_accumulation_steps=2,
                loss_type="grpo",
            ),
            train_dataset=tiny_dataset(order=ORDER),
            processing_class=tokenizer,
            **extra,
        )
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        trainer.train()
        rank = trainer.accelerator.process_index
        torch.save(
            {
                "world": trainer.accelerator.num_processes,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
                "log_history": trainer.state.log_history,
                "padding_rows": getattr(trainer, "mgs_padding_rows", 0),
            },
            out_dir / f"{name}-rank{rank}.pt",
        )
        trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
