"""`torchrun --nproc_per_node 2 -m mgs train` (gloo) matches one process on the same global batch.

Rollouts are keyed by (seed, prompt, rollout), so both runs generate the same completions; the
loss normaliser spans all ranks; a rank short of a domain pads with zero-weight copies. So the
reward and loss trajectories agree to float tolerance, for mixed and mgs, under DDP and FSDP2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from launch import run_python
from tiny_run import merged, tiny_run_config

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

# 3 math + 2 if prompts: rank 0 gets 2 math, rank 1 gets 1 (+1 zero-weight copy).
CONFIG = tiny_run_config(data={"mixture": {"batch_size": 5, "proportions": {"math": 3, "if": 2}}})
COMPARED = (
    "reward/math/mean",
    "reward/if/mean",
    "response_length/math/mean",
    "response_length/if/mean",
    "loss/pg_loss",
    "loss/kl",
    "loss/entropy",
    "loss/grad_norm",
)


def _launch(args: list[str], dist: str | None) -> None:
    run_python(["-m", "mgs", "train", *args], 2 if dist else None, timeout=600)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _run(
    tmp: Path, name: str, strategy: str, dist: str | None, extra: dict | None = None
) -> list[dict]:
    cfg = merged(CONFIG, {"strategy": {"name": strategy}, **(extra or {})})
    if strategy == "mixed":
        cfg["strategy"]["track_conflicts"] = False
    if dist:
        cfg["distributed"] = {"strategy": dist}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp / name
    _launch(["-c", str(path), "--run-dir", str(run_dir)], dist)
    return _metrics(run_dir)


@pytest.mark.parametrize("strategy", ["mixed", "mgs"])
def test_two_ranks_match_one_process(tmp_path: Path, strategy: str) -> None:
    single = _run(tmp_path, "single", strategy, None)
    for dist in ("ddp", "fsdp2"):
        sharded = _run(tmp_path, dist, strategy, dist)
        assert len(sharded) == len(single) == CONFIG["steps"]
        for step, (got, want) in enumerate(zip(sharded, single)):
            for key in COMPARED:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (dist, step, key)
            if strategy == "mgs":
                assert got["surgery/cos/math__if"] == pytest.approx(
                    want["surgery/cos/math__if"], rel=1e-3, abs=1e-5
                )


def test_fsdp2_sharded_kl_reference_matches_one_process(tmp_path: Path) -> None:
    """The KL reference is FSDP2-sharded like the policy; a KL weight large enough to move the
    update (0.1) still gives the single process's KL, losses and rewards."""
    extra = {"grpo": {"loss": {"kl_coef": 0.1}}}
    single = _run(tmp_path, "single", "mixed", None, extra)
    sharded = _run(tmp_path, "fsdp2", "mixed", "fsdp2", extra)
    assert len(sharded) == len(single) == CONFIG["steps"]
    assert single[-1]["loss/kl"] > 0  # after one update the policy has left the reference
    for step, (got, want) in enumerate(zip(sharded, single)):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (step, key)


def test_fsdp2_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """An FSDP2 checkpoint (full state dicts gathered from the shards) resumes into a freshly
    sharded policy and optimizer: the resumed steps log the uninterrupted run's metrics."""
    extra = {"steps": 4, "logging": {"checkpoint_every": 2, "keep_checkpoints": 1}}
    straight = _run(tmp_path, "straight", "mgs", "fsdp2", extra)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "straight", resumed_dir)
    assert (resumed_dir / "checkpoints" / "step_000002").is_dir()
    _launch(["--resume", str(resumed_dir)], "fsdp2")
    resumed = _metrics(resumed_dir)
    assert [m["step"] for m in resumed] == list(range(4))
    for got, want in zip(resumed[2:], straight[2:]):
        for key, value in want.items():
            if not key.startswith(("time/", "reward/time/")):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], key)


def test_every_rank_stops_with_rank_0s_error(tmp_path: Path) -> None:
    """Rank 0 alone inspects the run directory and every rank raises what it found, so no rank
    waits at a collective for one that stopped: a used run directory, a damaged checkpoint."""
    run = tmp_path / "used"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(merged(CONFIG, {"distributed": {"strategy": "ddp"}})))
    state = run / "checkpoints" / "step_000001" / "trainer_state.pt"
    (state.parent / "model").mkdir(parents=True)
    (state.parent / "model" / "config.json").write_text("{}")
    state.write_bytes(b"PK\x03\x04 cut short")
    for args, error in (
        (["-c", str(config), "--run-dir", str(run)], f"--run-dir '{run}' already holds a run"),
        (["--resume", str(run)], f"--resume {run}: no intact checkpoint to continue from"),
    ):
        torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd = [sys.executable, *torchrun, "-m", "mgs", "train", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert output.count(f"error: {error}") == 2, output[-3000:]


# LoRA: adapters on every decoder projection, the KL reference = the policy with them disabled.
LORA = {
    "model": {"lora": {"r": 4, "alpha": 8}},
    "grpo": {"loss": {"kl_coef": 0.1}},
    "strategy": {"name": "mgs", "granularity": "module"},
}


def test_lora_two_ranks_match_one_process(tmp_path: Path) -> None:
    """Under DDP and FSDP2 (the base model sharded with its adapters and rebuilt from rank 0's on
    the meta device; generation through the sharded policy) a LoRA run logs the single process's
    rewards, losses and KL."""
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")
    single = _run(tmp_path, "single", "mgs", None, LORA)
    assert single[-1]["loss/kl"] > 0  # the adapters moved the policy off its base
    for dist in ("ddp", "fsdp2"):
        sharded = _run(tmp_path, dist, "mgs", dist, LORA)
        assert len(sharded) == len(single) == CONFIG["steps"]
        for step, (got, want) in enumerate(zip(sharded, single)):
            for key in COMPARED:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (dist, step, key)


def test_lora_bf16_fsdp2_resumes_and_saves_the_adapter_and_merged_policy(tmp_path: Path) -> None:
    """FSDP2 with LoRA and bf16 compute: checkpoints hold the adapter only, a resumed run logs the
    uninterrupted run's metrics, and the end saves the adapter and the merged policy (the tiny
    base is built in-process, so merged is saved), which loads as a plain Hugging Face model."""
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'mgs[lora]')")
    extra = merged(
        LORA,
        {
            "steps": 4,
            "model": {"mixed_precision": {"enabled": True}},
            "logging": {"checkpoint_every": 2, "keep_checkpoints": 1, "save_model": True},
        },
    )
    straight = _run(tmp_path, "straight", "mgs", "fsdp2", extra)
    checkpoint = tmp_path / "straight" / "checkpoints" / "step_000002" / "model"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "straight", resumed_dir)
    _launch(["--resume", str(resumed_dir)], "fsdp2")
    resumed = _metrics(resumed_dir)
    for got, want in zip(resumed[2:], straight[2:]):
        for key, value in want.items():
            if not key.startswith(("time/", "reward/time/")):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], key)
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from mgs.tiny.config import TinyModelConfig
    from mgs.tiny.model import build_tiny_policy, build_tiny_tokenizer

    run = tmp_path / "straight"
    merged_policy = AutoModelForCausalLM.from_pretrained(run / "model_merged")
    assert {str(p.dtype) for p in merged_policy.parameters()} == {"torch.float32"}
    # The two saves agree: the adapter in model/, put on the (deterministic) tiny base by peft and
    # merged, is the merged policy in model_merged/.
    base = build_tiny_policy(build_tiny_tokenizer(), TinyModelConfig(**CONFIG["model"]["tiny"]))
    oracle = peft.PeftModel.from_pretrained(base, str(run / "model")).merge_and_unload()
    want, got = oracle.state_dict(), merged_policy.state_dict()
    assert set(got) == set(want)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6, msg=name)
    untouched = build_tiny_policy(
        build_tiny_tokenizer(), TinyModelConfig(**CONFIG["model"]["tiny"])
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(got[name], untouched.state_dict()[name])  # the adapters were merged
