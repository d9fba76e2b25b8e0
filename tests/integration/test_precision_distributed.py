"""bf16 mixed precision: FSDP2 (MixedPrecisionPolicy, 2 gloo ranks) matches one process with bf16
autocast, through the real PolicyUpdater and gradient surgeon, for full fine-tuning and for LoRA.

The worker (precision_worker.py) trains 4 SGD steps on one fixed rollout batch of two domains. The
two runs compute in bfloat16 differently (autocast keeps a float32 residual stream; FSDP2 casts
every gathered weight), so they agree to bf16 tolerance, not bit for bit; the master weights, the
gradients and the surgeon's per-domain buffers are float32 in both.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import precision_worker
import pytest
import torch
from launch import run_python

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

WORKER = str(Path(__file__).with_name("precision_worker.py"))
VARIANTS = ["full", "lora"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    pytest.importorskip("peft", reason="the lora variant needs peft (pip install 'mgs[lora]')")
    tmp = tmp_path_factory.mktemp("precision")
    run_python([WORKER, "single", str(tmp / "single.pt"), *VARIANTS])
    run_python([WORKER, "fsdp2", str(tmp / "fsdp2.pt"), *VARIANTS], nproc=2)
    return torch.load(tmp / "single.pt"), torch.load(tmp / "fsdp2.pt")


def _deltas(run: dict, initial: dict) -> torch.Tensor:
    return torch.cat([(run["weights"][n] - initial[n]).flatten() for n in run["trainable"]])


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_compute_with_float32_master_weights(runs, variant) -> None:
    single, fsdp2 = runs[0][variant], runs[1][variant]
    for run in (single, fsdp2):
        assert run["compute_dtype"] == "torch.bfloat16"  # autocast / the gathered bf16 weights
        assert run["param_dtypes"] == ["torch.float32"]  # the (sharded) master weights
        assert run["buffer_dtype"] == "torch.float32"  # the surgeon's per-domain gradients


@pytest.mark.parametrize("variant", VARIANTS)
def test_fsdp2_matches_one_process_within_bf16_tolerance(runs, variant) -> None:
    single, fsdp2 = runs[0][variant], runs[1][variant]
    # The fixed batch's loss, step by step (the weights after each update agree).
    for a, b in zip(single["loss"], fsdp2["loss"]):
        assert b == pytest.approx(a, abs=0.01)
    # The update itself: the total change of the trained weights, direction and size.
    initial = _initial_weights(variant)
    a, b = _deltas(single, initial), _deltas(fsdp2, initial)
    assert float(a @ b / (a.norm() * b.norm())) > 0.999
    assert float(b.norm() / a.norm()) == pytest.approx(1.0, abs=0.02)


def _initial_weights(variant: str) -> dict[str, torch.Tensor]:
    """The weights both runs started from (the worker's own, deterministic builder)."""
    tokenizer = precision_worker.build_tiny_tokenizer()
    model = precision_worker._policy(tokenizer, variant == "lora")
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_per_domain_gradients_stay_separate(runs, variant) -> None:
    """The surgeon's Gram stacks (per parameter: |g_math|^2, <g_math, g_chat>, |g_chat|^2, summed
    over the shards) agree at every step; had the two domains' gradients mixed in a buffer, the
    FSDP2 run's entries would be far off, as swapping the domains shows."""
    single, fsdp2 = runs[0][variant], runs[1][variant]
    for step, (a, b) in enumerate(zip(single["gram"], fsdp2["gram"])):
        assert a.shape == b.shape and a.shape[1:] == (2, 2)
        assert float((a - b).norm() / a.norm()) < 0.08, step
        swapped = a.flip(1, 2)  # math <-> chat
        assert float((swapped - b).norm() / a.norm()) > 0.3, step


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_loss_goes_down(runs, variant) -> None:
    for run in runs:
        losses = run[variant]["loss"]
        assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses
        assert losses[-1] < losses[0] - 0.05


def test_lora_trains_the_adapters_only(runs) -> None:
    initial = _initial_weights("lora")
    for run in runs:
        lora = run["lora"]
        assert lora["trainable"] and all(".lora_" in n for n in lora["trainable"])
        for name, weight in lora["weights"].items():
            if name not in lora["trainable"]:
                assert torch.equal(weight, initial[name]), name
