"""MGS inside TRL's GRPOTrainer, on a CPU, in well under 3 minutes.

    pip install 'mgs[trl]'                  # or: make setup (installs it)
    python examples/trl_mgs.py              # 12 steps, surgery "mgs" (PCGrad per tensor)
    python examples/trl_mgs.py --surgery mixed --steps 4

Three domains in one dataset with a ``domain`` column, as TRL's multi-task recipe has it:

- ``math`` (``What is 4 + 2?``, reference ``answer``): a plain TRL reward function built on mgs's
  math reward (math-verify on the last ``\\boxed{}``), plus 0.2 for a box, so that an untrained
  model gets a signal;
- ``if`` (``Write about tea. Use fewer than 5 words.``, IFEval's instruction ids and kwargs):
  routed to mgs's ``ifeval`` reward by name (fraction of instructions followed);
- ``chat`` (``Do you like tea?``): a plain TRL reward function (a toy: fraction of letters).

The policy is the project's tiny character-level Qwen2 (built in-process, randomly initialised:
nothing is downloaded), so this shows the wiring and the gradient telemetry, not a useful model.
The switch from TRL is the import, ``reward_funcs=domain_rewards(...)`` and the class name.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to download
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
import transformers
from datasets import Dataset
from trl import GRPOConfig

from mgs.data.generators import generate
from mgs.integrations.trl import MGSGRPOTrainer, domain_rewards
from mgs.rewards import get_reward
from mgs.tiny.config import TinyModelConfig
from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

SOURCES = {"math": "tiny_math", "if": "tiny_if", "chat": "tiny_chat"}


def build_dataset(per_domain: int, seed: int) -> Dataset:
    """Conversational prompts of the three tiny domains, interleaved, with their references."""
    rows = []
    tasks = {d: generate(source, per_domain, seed) for d, source in SOURCES.items()}
    for i in range(per_domain):
        for domain, domain_tasks in tasks.items():
            task = domain_tasks[i]
            rows.append(
                {
                    "prompt": [{"role": "user", "content": task.question}],
                    "domain": domain,
                    "answer": task.reference.get("answer"),
                    "instruction_id_list": task.reference.get("instruction_id_list", []),
                    "kwargs": task.reference.get("kwargs", []),
                }
            )
    return Dataset.from_list(rows)


def make_math_reward():
    """A plain TRL reward function on top of mgs's math reward: 1 right, 0.2 boxed, else 0."""
    verify = get_reward("math", num_workers=1)

    def math_reward(prompts, completions, answer, **kwargs):
        texts = [c[-1]["content"] for c in completions]  # conversational completions
        right = verify(prompts, texts, answer=answer)
        return [1.0 if r else (0.2 if "\\boxed{" in t else 0.0) for r, t in zip(right, texts)]

    return math_reward, verify


def chat_reward(prompts, completions, **kwargs):
    texts = [c[-1]["content"] for c in completions]
    return [sum(ch.isalpha() for ch in t) / max(len(t), 1) for t in texts]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--surgery", default="mgs", help="mgs, pcgrad or mixed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/trl_mgs_example")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_policy(tokenizer, TinyModelConfig(num_layers=3))
    math_reward, verify = make_math_reward()
    reward_funcs = domain_rewards({"math": math_reward, "if": "ifeval", "chat": chat_reward})
    config = GRPOConfig(
        output_dir=args.out,
        max_steps=args.steps,
        per_device_train_batch_size=24,  # 6 prompts x 4 completions per step
        num_generations=4,
        max_completion_length=32,
        learning_rate=1e-3,
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="dapo",
        gradient_checkpointing=False,
        use_cpu=True,
        logging_steps=1,
        report_to="none",  # or "wandb" / "tensorboard": the surgery metrics go there too
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = MGSGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=build_dataset(per_domain=2 * args.steps, seed=0),
        processing_class=tokenizer,
        surgery=args.surgery,
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        verify.close()
    print_log(trainer.state.log_history)
    print(
        f"{args.steps} steps in {time.perf_counter() - start:.0f} s; surgery "
        f"{args.surgery!r} over domains {trainer.surgeon.domains} "
        f"({int(trainer.state.log_history[0]['surgery/num_groups'])} groups)"
    )


def print_log(history: list[dict]) -> None:
    columns = [
        ("rewards/math/mean", "math"),
        ("rewards/if/mean", "if"),
        ("rewards/chat/mean", "chat"),
        ("surgery/cos/chat__if", "cos chat/if"),
        ("surgery/cos/chat__math", "cos chat/math"),
        ("surgery/cos/if__math", "cos if/math"),
        ("surgery/conflict_frac", "conflict"),
        ("surgery/projected_frac", "projected"),
        ("grad_norm", "grad norm"),
    ]
    print("step " + " ".join(f"{title:>13}" for _, title in columns))
    for log in history:
        if "surgery/conflict_frac" not in log:
            continue
        values = " ".join(
            f"{log[key]:13.3f}" if log.get(key) is not None else f"{'-':>13}" for key, _ in columns
        )
        print(f"{log['step']:4d} {values}")


if __name__ == "__main__":
    main()
