"""A run killed with SIGKILL mid-step and resumed logs the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_run import tiny_run_config

pytestmark = pytest.mark.slow

CONFIG = tiny_run_config(
    steps=6,
    seed=3,
    rollout={"sampling": {"max_new_tokens": 24}},
    grpo={"micro_batch_size": 4},
    strategy={"name": "mgs"},
    logging={"checkpoint_every": 2, "keep_checkpoints": 2},
)


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mgs", "train", *args]


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith(("time/", "reward/time/"))}
        for line in lines
    ]


def test_kill_and_resume_matches_uninterrupted(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(
        _cmd("-c", str(config), "--run-dir", str(straight)), check=True, env=env, timeout=600
    )

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd("-c", str(config), "--run-dir", str(killed)), env=env)
    deadline = time.time() + 300
    metrics = killed / "metrics.jsonl"
    try:
        # Kill inside step 3: after step 2 was logged (the checkpoint of step 2 exists), before
        # step 3 is.
        while time.time() < deadline:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be killed")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(_metrics(killed)) < CONFIG["steps"]
    checkpoints = sorted(
        p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith(".")
    )
    assert checkpoints and checkpoints[-1] in ("step_000002", "step_000004")

    subprocess.run(_cmd("--resume", str(killed)), check=True, env=env, timeout=600)
    resumed, expected = _metrics(killed), _metrics(straight)
    assert [m["step"] for m in resumed] == list(range(CONFIG["steps"]))
    for got, want in zip(resumed, expected):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], key)


@pytest.mark.parametrize("aggregator", ["gradvac", "nash_mtl"])
def test_a_stateful_aggregator_resumes_where_it_stopped(tmp_path: Path, aggregator: str) -> None:
    # GradVac's cosine targets and Nash-MTL's last weights live in the checkpoint: steps 2-3 of
    # a run resumed from its step-2 checkpoint log exactly what the uninterrupted run logged.
    extra = {"steps": 4, "strategy": {"name": "mgs", "aggregator": aggregator}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, logging in (("straight", {}), ("resumed", {"checkpoint_every": 2})):
        config = tmp_path / f"{name}.yaml"
        cfg = {**CONFIG, **extra, "logging": {**CONFIG["logging"], **logging}}
        if not logging:
            cfg["logging"]["checkpoint_every"] = 0
        config.write_text(yaml.safe_dump(cfg))
        runs[name] = tmp_path / name
        subprocess.run(
            _cmd("-c", str(config), "--run-dir", str(runs[name])), check=True, env=env, timeout=600
        )
    assert (runs["resumed"] / "checkpoints" / "step_000002").is_dir()
    subprocess.run(_cmd("--resume", str(runs["resumed"])), check=True, env=env, timeout=600)
    resumed, expected = _metrics(runs["resumed"]), _metrics(runs["straight"])
    assert [m["step"] for m in resumed] == [0, 1, 2, 3]
    for got, want in zip(resumed[2:], expected[2:]):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (got["step"], key)
