"""PolicyUpdater: one update from a rollout batch, checked against a direct computation of the loss.

Oracle: the gradient of the GRPO loss of the whole mini-batch, computed in one forward / backward
with :func:`mgs.rl.grpo_loss` and the mini-batch's own normaliser. The updater splits that loss by
domain, micro-batches it and back-propagates each domain into the combiner; with the ``sum``
aggregator the step it takes must be the one the oracle gradient gives, whatever the
micro-batching, and padding rows must weigh nothing.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch

from mgs.rl import GRPOLossConfig, grpo_loss, loss_normalizer, response_logprobs
from mgs.rl.rollout import Completion, RolloutBatch
from mgs.strategy import StrategyConfig
from mgs.strategy.combiner import PlainSumCombiner, SurgeonCombiner, build_combiner
from mgs.train.config import GRPOConfig
from mgs.train.update import PolicyUpdater

DOMAINS = ["math", "chat"]
LOSS = GRPOLossConfig(kl_coef=0.0, entropy_coef=0.0)


def _batch(tokenizer, n_prompts: int = 4, n: int = 2, seed: int = 0) -> RolloutBatch:
    """Random prompts and completions of varied lengths (token ids of printable characters)."""
    rng = random.Random(seed)
    ids = tokenizer("abcdefghij klmnop", add_special_tokens=False)["input_ids"]
    completions = []
    for p in range(n_prompts):
        prompt = [rng.choice(ids) for _ in range(rng.randint(2, 5))]
        for _ in range(n):
            completion = [rng.choice(ids) for _ in range(rng.randint(1, 6))]
            completions.append(Completion(p, prompt, completion, "x", "stop"))
    return RolloutBatch(completions, n)


def _updater(policy, tokenizer, combiner_kind: str, **grpo) -> PolicyUpdater:
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if combiner_kind == "plain":
        combiner = PlainSumCombiner(policy, DOMAINS)
    else:
        strategy = StrategyConfig(name="custom", aggregator=combiner_kind, granularity="tensor")
        combiner = build_combiner(policy, DOMAINS, strategy, seed=0)
    return PolicyUpdater(
        policy,
        optimizer,
        scheduler,
        GRPOConfig(loss=LOSS, **grpo),
        domains=DOMAINS,
        combiner=combiner,
        reference=None,
        temperature=1.0,
        pad_token_id=tokenizer.pad_token_id,
        grad_clip=None,
        device=torch.device("cpu"),
        seed=0,
    )


def _oracle_step(policy, tokenizer, batch, advantages, rows) -> dict[str, torch.Tensor]:
    """Parameters after one SGD step (lr 0.1) on the whole mini-batch's loss, in one backward."""
    model = copy.deepcopy(policy)
    t = batch.to_tensors(tokenizer.pad_token_id, rows=rows)
    logp, _ = response_logprobs(model, t["input_ids"], t["attention_mask"], t["response_mask"])
    normalizer = loss_normalizer(t["response_mask"], LOSS.loss_agg).clamp(min=1).float()
    loss, _ = grpo_loss(
        logp, logp.detach(), advantages[rows], t["response_mask"], cfg=LOSS, normalizer=normalizer
    )
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    return dict(model.named_parameters())


def _domains(batch: RolloutBatch) -> list[str]:
    return [DOMAINS[c.prompt_index % 2] for c in batch.completions]  # prompts alternate domains


@pytest.mark.parametrize("combiner", ["plain", "sum"])
@pytest.mark.parametrize("micro", [1, 3, 16])
def test_one_update_takes_the_step_of_the_whole_mini_batch_loss(
    tiny_policy, tokenizer, combiner, micro
) -> None:
    policy = tiny_policy(seed=3)
    batch = _batch(tokenizer)
    advantages = torch.linspace(-1.0, 1.0, len(batch))
    expected = _oracle_step(policy, tokenizer, batch, advantages, list(range(len(batch))))
    updater = _updater(policy, tokenizer, combiner, micro_batch_size=micro)
    result = updater.update(batch, _domains(batch), advantages, step=0)
    assert result.skipped == 0
    assert (result.surgery is None) == (combiner == "plain")
    for name, p in policy.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_padding_rows_weigh_nothing(tiny_policy, tokenizer) -> None:
    # The batch of 4 prompts, and the same batch with prompt 3's rollouts marked as padding:
    # the second update must equal an update on prompts 0-2 alone.
    policy, batch = tiny_policy(seed=4), _batch(tokenizer)
    advantages = torch.linspace(-1.0, 1.0, len(batch))
    real = list(range(6))  # prompts 0-2 (n = 2)
    expected = _oracle_step(policy, tokenizer, batch, advantages, real)
    valid = [i in real for i in range(len(batch))]
    _updater(policy, tokenizer, "sum").update(
        batch, _domains(batch), advantages, step=0, valid=valid
    )
    for name, p in policy.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_each_domain_is_back_propagated_into_its_own_gradient(tiny_policy, tokenizer) -> None:
    # With the surgeon, the per-domain buffers hold each domain's part of the loss: their sum is
    # the whole mini-batch's gradient and each one is non-zero.
    policy, batch = tiny_policy(seed=5), _batch(tokenizer)
    updater = _updater(policy, tokenizer, "sum")
    assert isinstance(updater.combiner, SurgeonCombiner)
    result = updater.update(batch, _domains(batch), torch.linspace(-1, 1, len(batch)), step=0)
    norms = result.surgery.summary()
    assert norms["surgery/norm/math"] > 0 and norms["surgery/norm/chat"] > 0
    assert result.stats["grad_norm"] == pytest.approx(float(result.surgery.grad_norm))


def test_mini_batches_split_each_domain_evenly_and_step_once_each(tiny_policy, tokenizer) -> None:
    policy, batch = tiny_policy(seed=6), _batch(tokenizer, n_prompts=4, n=2)
    updater = _updater(policy, tokenizer, "plain", mini_batches=2)
    gen = torch.Generator().manual_seed(0)
    minis = updater._mini_batches(_domains(batch), len(batch), gen)
    assert len(minis) == 2 and sorted(r for m in minis for r in m) == list(range(len(batch)))
    for mini in minis:  # 4 math and 4 chat rows: 2 of each per mini-batch
        assert sorted(_domains(batch)[r] for r in mini) == ["chat", "chat", "math", "math"]
    steps = []
    updater.optimizer.register_step_post_hook(lambda *args: steps.append(1))
    updater.update(batch, _domains(batch), torch.linspace(-1, 1, len(batch)), step=0)
    assert len(steps) == 2
