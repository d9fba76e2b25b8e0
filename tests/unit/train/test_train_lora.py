"""A LoRA trainer (``model.lora``) on the tiny model: only the adapters change, the surgeon's buffers
hold K x the adapters, mgs with the sum aggregator equals mixed, the KL reference is the base
model, rollouts are the merged policy's, GRPO still learns, and the run saves / resumes / evaluates
from its adapter."""

from __future__ import annotations

import copy

import pytest
import torch

from mgs.rl.hf_generate import HFGenerateBackend
from mgs.rl.rollout import SamplingConfig
from mgs.run_dir import RunDir
from mgs.train.builder import build_trainer
from mgs.train.checkpoint import restore, save_checkpoint, save_policy
from mgs.train.config import load_config
from mgs.train.run import wants_merged
from mgs.train.trainer import seed_everything

peft = pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")

from mgs.models.lora import AdaptersDisabled, is_adapter_name  # noqa: E402

LORA = {"model.lora": "{r: 4, alpha: 8}"}


def _trainer(overrides, **extra):
    cfg = load_config(None, overrides(**{**LORA, **extra}))
    seed_everything(cfg.seed)
    return build_trainer(cfg)


def _steps(trainer, steps: int, start: int = 0) -> list[dict]:
    return [trainer.step(s).metrics for s in range(start, start + steps)]


def _move_adapters(policy, seed: int = 0) -> None:
    """Adapters away from their start (lora_B = 0: the base model), as training would move them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)


def test_only_the_adapters_change(overrides) -> None:
    trainer = _trainer(overrides, strategy__name="mgs", grpo__loss__kl_coef=0.1)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    metrics = _steps(trainer, 2)
    trainer.close()
    changed = {n for n, p in trainer.policy.named_parameters() if not torch.equal(p, before[n])}
    adapters = {n for n in before if is_adapter_name(n)}
    assert changed and changed <= adapters  # and every base weight is bit for bit the same
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for n, p in trainer.policy.named_parameters() if n in adapters
    }
    assert metrics[-1]["loss/kl"] > 0  # the reference (adapters off) is no longer the policy


def test_surgeon_buffers_are_k_times_the_adapters(overrides) -> None:
    trainer = _trainer(overrides, strategy__name="mgs", strategy__granularity="module")
    surgeon = trainer.surgeon
    adapters = sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad)
    # By hand (hidden 32; 4 heads of 8, 2 KV heads; MLP 64; r 4): q, o 4 x (32 + 32); k, v
    # 4 x (32 + 16); gate, up 4 x (32 + 64); down 4 x (64 + 32); 2 layers.
    assert adapters == 2 * 4 * (2 * 64 + 2 * 48 + 3 * 96) == 4096
    assert surgeon.numel == adapters and surgeon.buffers.shape[0] == 2  # math, chat
    assert surgeon.buffers.shape[1] - adapters < 512 * len(surgeon._slots)  # block padding
    # module granularity: one group per adapted module (7 linear layers x 2 layers)
    assert len(surgeon.groups) == 14
    assert all(g.param_names[0].endswith(".lora_A.weight") for g in surgeon.groups)
    trainer.close()


def test_mgs_with_the_sum_aggregator_equals_mixed(overrides) -> None:
    mixed = _trainer(overrides, strategy__name="mixed", strategy__track_conflicts="false")
    summed = _trainer(
        overrides,
        strategy__name="custom",
        strategy__aggregator="sum",
        strategy__granularity="module",
    )
    a_metrics, b_metrics = _steps(mixed, 2), _steps(summed, 2)
    mixed.close()
    summed.close()
    assert mixed.surgeon is None and summed.surgeon is not None
    for (name, a), (_, b) in zip(mixed.policy.named_parameters(), summed.policy.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(a_metrics, b_metrics):
        assert a["reward/math/mean"] == pytest.approx(b["reward/math/mean"])
        assert a["loss/pg_loss"] == pytest.approx(b["loss/pg_loss"], rel=1e-4, abs=1e-7)


def test_kl_reference_is_the_untouched_base_model(overrides) -> None:
    trainer = _trainer(overrides, grpo__loss__kl_coef=0.1)
    base = copy.deepcopy(trainer.policy).get_base_model()  # before training: B = 0
    _steps(trainer, 1)
    _move_adapters(trainer.policy)
    reference = trainer.updater.reference
    assert isinstance(reference, AdaptersDisabled)
    ids = torch.randint(5, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = base(input_ids=ids).logits
        torch.testing.assert_close(reference(input_ids=ids).logits, want, rtol=0, atol=1e-6)
        assert not torch.allclose(trainer.policy(input_ids=ids).logits, want, atol=1e-4)
    trainer.close()


@pytest.mark.parametrize("decode", ["generate", "fast"])
def test_rollouts_are_the_merged_policys(overrides, decode) -> None:
    trainer = _trainer(overrides, rollout__decode=decode)
    _move_adapters(trainer.policy)
    params = {n: (p, p.detach().clone()) for n, p in trainer.policy.named_parameters()}
    sampling = SamplingConfig(n=3, temperature=1.0, max_new_tokens=16)
    prompts = ["User: 2+3?\nAssistant:", "User: hello\nAssistant:"]
    got = trainer.backend.generate(prompts, sampling, seed=4)
    merged = copy.deepcopy(trainer.policy).merge_and_unload()
    oracle = HFGenerateBackend(
        merged, trainer.tokenizer, max_prompt_tokens=64, micro_batch_size=8, decode=decode
    )
    want = oracle.generate(prompts, sampling, seed=4)
    assert trainer.backend.decode_loop == decode  # the fast loop runs on the merged base model
    assert [c.completion_ids for c in got.completions] == [
        c.completion_ids for c in want.completions
    ]
    for name, param in trainer.policy.named_parameters():  # training goes on, unmerged
        assert param is params[name][0] and torch.equal(param, params[name][1]), name
    trainer.close()


def test_one_update_is_the_step_of_the_whole_mini_batch_loss(tiny_policy, tokenizer) -> None:
    """Oracle: one backward of the whole mini-batch's GRPO loss through the adapters, one SGD
    step; the updater (per-domain micro-batches into the surgeon, sum aggregator) must take it."""
    from mgs.models.lora import LoRAConfig, apply_lora
    from mgs.rl import GRPOLossConfig, grpo_loss, loss_normalizer, response_logprobs
    from mgs.rl.rollout import Completion, RolloutBatch
    from mgs.strategy import StrategyConfig
    from mgs.strategy.combiner import build_combiner
    from mgs.train.config import GRPOConfig
    from mgs.train.update import PolicyUpdater

    policy = apply_lora(tiny_policy(seed=2), LoRAConfig(r=4, alpha=8))
    with torch.no_grad():  # lora_B away from zero, so lora_A gets a gradient too
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(name)))
    ids = tokenizer("abcdefghij klmnop", add_special_tokens=False)["input_ids"]
    rows = [
        Completion(p, ids[p : p + 3], ids[2 * j + p : 2 * j + p + 4], "x", "stop")
        for p in range(4)
        for j in range(2)
    ]
    batch = RolloutBatch(rows, 2)
    domains = [["math", "chat"][c.prompt_index % 2] for c in rows]
    advantages = torch.linspace(-1.0, 1.0, len(rows))
    loss_cfg = GRPOLossConfig(kl_coef=0.0, entropy_coef=0.0)
    oracle = copy.deepcopy(policy)
    t = batch.to_tensors(tokenizer.pad_token_id)
    logp, _ = response_logprobs(oracle, t["input_ids"], t["attention_mask"], t["response_mask"])
    normalizer = loss_normalizer(t["response_mask"], loss_cfg.loss_agg).clamp(min=1).float()
    loss, _ = grpo_loss(
        logp, logp.detach(), advantages, t["response_mask"], cfg=loss_cfg, normalizer=normalizer
    )
    loss.backward()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    strategy = StrategyConfig(name="custom", aggregator="sum", granularity="module")
    updater = PolicyUpdater(
        policy,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        GRPOConfig(loss=loss_cfg, micro_batch_size=3),
        domains=["math", "chat"],
        combiner=build_combiner(policy, ["math", "chat"], strategy, seed=0),
        reference=None,
        temperature=1.0,
        pad_token_id=tokenizer.pad_token_id,
        grad_clip=None,
        device=torch.device("cpu"),
        seed=0,
    )
    updater.update(batch, domains, advantages, step=0)
    for (name, got), want in zip(policy.named_parameters(), oracle.parameters()):
        expected = want - 0.5 * want.grad if want.grad is not None else want
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
        assert (want.grad is not None) == is_adapter_name(name), name


@pytest.mark.slow
def test_a_resumed_run_continues_exactly(overrides, tmp_path) -> None:
    extra = dict(strategy__name="mgs", grpo__loss__kl_coef=0.1, optim__lr=3e-2)
    straight = _trainer(overrides, **extra)
    expected = _steps(straight, 4)
    run = RunDir(tmp_path)
    first = _trainer(overrides, **extra)
    _steps(first, 2)
    checkpoint = save_checkpoint(first, run, next_step=2)
    first.close()
    model_dir = RunDir.checkpoint_model(checkpoint)
    assert (model_dir / "adapter_config.json").is_file()
    assert not (model_dir / "model.safetensors").exists()  # the adapter only, not the base
    resumed = _trainer(overrides, **extra)
    assert restore(resumed, checkpoint) == 2
    got = _steps(resumed, 2, start=2)
    for want, have in zip(expected[2:], got):
        for key in ("reward/math/mean", "loss/pg_loss", "loss/kl", "loss/grad_norm"):
            assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    for (name, a), (_, b) in zip(
        straight.policy.named_parameters(), resumed.policy.named_parameters()
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    straight.close()
    resumed.close()


def test_saved_adapter_and_merged_policy_evaluate_alike(overrides, tmp_path) -> None:
    from mgs.eval.config import EvalConfig
    from mgs.eval.runner import load_model, resolve_model_dir

    trainer = _trainer(overrides)
    _move_adapters(trainer.policy)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config.write_text("seed: 0\n")
    save_policy(trainer, run.model, run.model_merged)
    assert run.has_adapter() and resolve_model_dir(run.path) == run.model_merged
    merged, _ = load_model(run.path, EvalConfig(device="cpu", dtype="float32"))
    ids = torch.randint(5, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = trainer.policy(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, want, rtol=0, atol=1e-5)
    # The adapter alone, on its base saved where the adapter config says it is.
    base_dir = tmp_path / "base"
    trainer.policy.get_base_model().save_pretrained(
        base_dir, state_dict=copy.deepcopy(trainer.policy).unload().state_dict()
    )
    trainer.tokenizer.save_pretrained(base_dir)
    config = run.model / "adapter_config.json"
    config.write_text(
        config.read_text().replace(
            '"base_model_name_or_path": null', f'"base_model_name_or_path": "{base_dir}"'
        )
    )
    adapter, _ = load_model(run.model, EvalConfig(device="cpu", dtype="float32"))
    with torch.no_grad():
        torch.testing.assert_close(adapter(input_ids=ids).logits, want, rtol=0, atol=1e-5)
    trainer.close()


def test_an_adapter_without_a_base_asks_for_the_merged_policy(overrides, tmp_path) -> None:
    from mgs.eval.config import EvalConfig
    from mgs.eval.runner import ModelLoadError, load_model

    trainer = _trainer(overrides)
    save_policy(trainer, tmp_path / "adapter")
    trainer.close()
    with pytest.raises(ModelLoadError, match=r"names no base model.*logging.save_merged"):
        load_model(tmp_path / "adapter", EvalConfig(device="cpu", dtype="float32"))


def test_when_the_merged_policy_is_saved(overrides) -> None:
    tiny = load_config(None, overrides(**LORA))
    assert wants_merged(tiny)  # the built-in base has no checkpoint to put the adapter on
    assert not wants_merged(load_config(None, overrides()))  # no LoRA: model/ is the policy
    hub = load_config(None, overrides(**LORA, model__name="Org/Base"))
    assert not wants_merged(hub)
    assert wants_merged(
        load_config(None, overrides(**LORA, model__name="Org/Base", logging__save_merged="true"))
    )
    assert wants_merged(
        load_config(None, overrides(**LORA, model__name="Org/Base", warmstart__sft__steps=5))
    )
