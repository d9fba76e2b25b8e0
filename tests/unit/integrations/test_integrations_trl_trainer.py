"""MGSGRPOTrainer against TRL's own GRPOTrainer (TRL 1.16) on a tiny in-process policy.

The oracles: plain ``trl.GRPOTrainer`` (with the sum aggregator the gradients and the updated
parameters must be TRL's, for every loss type and with accumulation, several generations per
batch, iterations and a KL term), and TRL's ``_compute_loss`` on the whole micro-batch with the
other domains' advantages zeroed (each domain's gradient, computed without any splitting),
combined by torchjd's PCGrad per tensor. Each run is one or a few optimizer steps (~0.5 s).
"""

from __future__ import annotations

import copy

import pytest
import torch

trl = pytest.importorskip(
    "trl", reason="TRL is not installed: pip install 'mgs[trl]' (make setup installs it)"
)
import transformers  # noqa: E402
from trl_tiny import digit_fraction, grpo_config, letter_fraction, tiny_dataset, tiny_policy  # noqa: E402

from mgs.errors import ConfigError, DataError  # noqa: E402
from mgs.integrations.trl import MGSGRPOTrainer, SurgeryConfig, domain_rewards  # noqa: E402
from mgs.integrations.trl_split import DOMAIN_KEY  # noqa: E402

transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny kernels: one thread is faster, and much faster on a busy machine (no thread waits
    for a descheduled sibling)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class GradCapture(transformers.TrainerCallback):
    """The gradients the optimizer is about to use, at every optimizer step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append(
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        )


def _train(cls, tmp_path, *, dataset=None, rewards=None, callbacks=(), **config):
    torch.manual_seed(0)
    model, tokenizer = tiny_policy()
    if config.get("beta"):  # TRL loads its reference model from the policy's path
        model.save_pretrained(tmp_path / "policy")
        model.config._name_or_path = str(tmp_path / "policy")
    capture = GradCapture()
    kwargs = {"surgery": config.pop("surgery")} if "surgery" in config else {}
    trainer = cls(
        model=model,
        reward_funcs=rewards or domain_rewards({"math": digit_fraction, "chat": letter_fraction}),
        args=grpo_config(tmp_path / cls.__name__, **config),
        train_dataset=dataset if dataset is not None else tiny_dataset(),
        processing_class=tokenizer,
        callbacks=[capture, *callbacks],
        **kwargs,
    )
    trainer.train()
    return trainer, capture.steps


def _assert_same_update(plain, mgs, plain_grads, mgs_grads) -> None:
    assert len(plain_grads) == len(mgs_grads) >= 1
    for expected, got in zip(plain_grads, mgs_grads):
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7, msg=name)
    for (name, p), q in zip(plain.model.named_parameters(), mgs.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)


LOSS_TYPES = [
    ("grpo", {}),
    ("dapo", {}),
    ("dr_grpo", {}),
    ("bnpo", {}),
    ("cispo", {}),
    ("sapo", {}),
    ("luspo", {"importance_sampling_level": "sequence"}),
    ("vespo", {}),
]


@pytest.mark.parametrize(("loss_type", "extra"), LOSS_TYPES, ids=[t for t, _ in LOSS_TYPES])
def test_sum_aggregator_step_equals_plain_trl(tmp_path, loss_type, extra) -> None:
    config = {"loss_type": loss_type, **extra}
    plain, plain_grads = _train(trl.GRPOTrainer, tmp_path, **config)
    mgs, mgs_grads = _train(MGSGRPOTrainer, tmp_path, surgery="mixed", **config)
    assert any(float(g.abs().max()) > 1e-4 for g in plain_grads[0].values())  # a real update
    _assert_same_update(plain, mgs, plain_grads, mgs_grads)
    # The parts add up to TRL's loss, which is what TRL logs.
    assert mgs.state.log_history[0]["loss"] == pytest.approx(
        plain.state.log_history[0]["loss"], rel=1e-4, abs=1e-7
    )


def test_accumulation_generations_iterations_and_kl_equal_plain_trl(tmp_path) -> None:
    # 2 micro-batches per step, one generation per 4 micro-batches (so old log-probs are
    # computed), each generation used twice, a KL term to a reference model, TRL's default
    # gradient checkpointing, 3 steps.
    config = {
        "gradient_checkpointing": True,
        "gradient_accumulation_steps": 2,
        "steps_per_generation": 4,
        "per_device_train_batch_size": 4,
        "num_iterations": 2,
        "beta": 0.04,
        "max_steps": 3,
        "loss_type": "grpo",
        "max_grad_norm": 0.0,  # no clipping: the surgery runs in _get_grad_norm
    }
    plain, plain_grads = _train(trl.GRPOTrainer, tmp_path, **config)
    mgs, mgs_grads = _train(MGSGRPOTrainer, tmp_path, surgery="mixed", **config)
    assert len(mgs_grads) == 3
    _assert_same_update(plain, mgs, plain_grads, mgs_grads)


class RecordingTrainer(MGSGRPOTrainer):
    """Keeps the micro-batch and the weights it was computed with (for the oracle)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if DOMAIN_KEY in inputs:
            self.recorded = (dict(inputs), copy.deepcopy(self.model.state_dict()))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _domain_gradient(trainer, inputs, weights, domain: int) -> dict[str, torch.Tensor]:
    """One domain's gradient without any splitting: TRL's loss on the whole micro-batch with
    the other domains' advantages set to 0 (their rows then add exactly 0 to the loss)."""
    model = copy.deepcopy(trainer.model)
    model.load_state_dict(weights)
    model.train()
    masked = {k: v for k, v in inputs.items() if k != DOMAIN_KEY}
    masked["advantages"] = inputs["advantages"] * (inputs[DOMAIN_KEY] == domain)
    loss = trl.GRPOTrainer._compute_loss(trainer, model, masked)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named])
    return {n: g for (n, _), g in zip(named, grads)}


@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_pcgrad_update_equals_pcgrad_of_separately_computed_domain_gradients(
    tmp_path, granularity
) -> None:
    from torchjd.aggregation import PCGrad

    max_norm = 0.05  # below the gradient's norm: the surgeon's clipping is exercised too
    mgs, grads = _train(
        RecordingTrainer,
        tmp_path,
        surgery=SurgeryConfig(aggregator="pcgrad", granularity=granularity),
        max_grad_norm=max_norm,
    )
    inputs, weights = mgs.recorded
    mgs.model.train()
    per_domain = [_domain_gradient(mgs, inputs, weights, k) for k in range(2)]
    names = list(per_domain[0])
    if granularity == "tensor":
        combined = {
            n: PCGrad()(torch.stack([g[n].flatten() for g in per_domain]).double()).view_as(
                per_domain[0][n]
            )
            for n in names
        }
    else:
        flat = torch.stack([torch.cat([g[n].flatten() for n in names]) for g in per_domain])
        out, start = PCGrad()(flat.double()), 0
        combined = {}
        for n in names:
            size = per_domain[0][n].numel()
            combined[n] = out[start : start + size].view_as(per_domain[0][n])
            start += size
    norm = torch.sqrt(sum((c**2).sum() for c in combined.values()))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    assert scale < 1.0
    for n in names:
        torch.testing.assert_close(
            grads[0][n].double(), combined[n] * scale, rtol=1e-4, atol=1e-8, msg=n
        )
    if granularity == "tensor":  # (globally the two domains' gradients happen not to conflict)
        assert mgs.state.log_history[0]["surgery/projected_frac"] > 0
        summed = {n: per_domain[0][n] + per_domain[1][n] for n in names}
        assert any(  # PCGrad changed the update: the oracle is not just the sum
            not torch.allclose(combined[n].float(), summed[n], rtol=1e-3, atol=1e-7) for n in names
        )


class LogCapture(transformers.TrainerCallback):
    """What reporting callbacks (W&B, TensorBoard) receive: the logs of ``on_log``."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_surgery_summary_is_in_trl_logs(tmp_path) -> None:
    trainer, _ = _train(MGSGRPOTrainer, tmp_path, max_steps=2, callbacks=[LogCapture()])
    steps = [log for log in trainer.state.log_history if "loss" in log]
    assert len(steps) == 2
    reported = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, LogCapture))
    assert [log["surgery/conflict_frac"] for log in reported.logs if "loss" in log] == [
        log["surgery/conflict_frac"] for log in steps
    ]
    for log in steps:
        assert -1.0 <= log["surgery/cos/chat__math"] <= 1.0
        assert 0.0 <= log["surgery/conflict_frac"] <= 1.0
        assert 0.0 <= log["surgery/projected_frac"] <= 1.0
        assert log["surgery/norm/math"] > 0 and log["surgery/norm/chat"] > 0
        assert log["surgery/num_groups"] == len(list(trainer.model.parameters()))  # tensor
        assert log["grad_norm"] == pytest.approx(log["surgery/grad_norm"])
        assert "rewards/math/mean" in log and "rewards/chat/mean" in log
    assert trainer.surgeon.domains == ["chat", "math"]


def test_three_domains_and_a_micro_batch_missing_one(tmp_path) -> None:
    # Domains come in blocks, so some micro-batches hold one or two of the three.
    order = ["math"] * 4 + ["chat"] * 4 + ["if"] * 4 + ["math"] * 4
    rewards = domain_rewards(
        {"math": digit_fraction, "chat": letter_fraction, "if": letter_fraction}
    )
    config = {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 4, "max_steps": 2}
    dataset = tiny_dataset(order=order)
    plain, plain_grads = _train(
        trl.GRPOTrainer, tmp_path, dataset=dataset, rewards=rewards, **config
    )
    mgs, mgs_grads = _train(
        MGSGRPOTrainer, tmp_path, dataset=dataset, rewards=rewards, surgery="mixed", **config
    )
    _assert_same_update(plain, mgs, plain_grads, mgs_grads)
    assert mgs.surgeon.domains == ["chat", "if", "math"]


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"entropy_coef": 0.01}, "entropy_coef=0.0"),
        ({"use_adaptive_entropy": True}, "use_adaptive_entropy=False"),
        ({"top_entropy_quantile": 0.5}, "top_entropy_quantile=1.0"),
        ({"remove_unused_columns": True}, "remove_unused_columns=False"),
        ({"surgery": "sequential"}, "surgery='mixed'"),
        ({"surgery": {"aggregator": "pcgrd"}}, "pcgrad"),
    ],
)
def test_unsupported_settings_give_one_clear_error(tmp_path, config, needle) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        _train(MGSGRPOTrainer, tmp_path, **config)


def test_dataset_without_domain_column_names_the_option(tmp_path) -> None:
    dataset = tiny_dataset().remove_columns("domain")
    with pytest.raises(DataError, match=r"domain_column="):
        _train(MGSGRPOTrainer, tmp_path, dataset=dataset)


def test_a_domain_not_in_the_configured_domains_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"'math' of a training row is not one of"):
        _train(MGSGRPOTrainer, tmp_path, surgery=SurgeryConfig(domains=["chat"]))


def test_optimizer_never_steps_on_uncombined_gradients(tmp_path, monkeypatch) -> None:
    # As if a transformers release stopped calling the clipping hooks the surgery runs in.
    monkeypatch.setattr(MGSGRPOTrainer, "_clip_grad_norm", transformers.Trainer._clip_grad_norm)
    monkeypatch.setattr(MGSGRPOTrainer, "_get_grad_norm", transformers.Trainer._get_grad_norm)
    with pytest.raises(RuntimeError, match=r"surgeon did not combine"):
        _train(MGSGRPOTrainer, tmp_path)


def test_evaluation_runs_trl_loss_without_splitting(tmp_path) -> None:
    trainer, _ = _train(MGSGRPOTrainer, tmp_path)
    metrics = trainer.evaluate(tiny_dataset(rows=4))
    assert "eval_loss" in metrics
