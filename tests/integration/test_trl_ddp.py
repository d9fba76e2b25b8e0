"""MGSGRPOTrainer under DDP through accelerate: 2 processes, gloo, CPU (torchrun).

With the sum aggregator it must leave the parameters plain ``trl.GRPOTrainer`` leaves under the
same DDP run; with PCGrad both ranks must hold identical parameters (every domain's accumulated
gradient was all-reduced before the surgery), while micro-batches in which one rank has no row of
a domain (padding rows) do occur.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from launch import run_python

pytest.importorskip(
    "trl", reason="TRL is not installed: pip install 'mgs[trl]' (make setup installs it)"
)

WORKER = Path(__file__).with_name("trl_ddp_worker.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_mgs_trainer_under_ddp_matches_trl_and_keeps_ranks_in_sync(tmp_path: Path) -> None:
    run_python([str(WORKER), str(tmp_path)], nproc=2, timeout=600)
    runs = {
        (name, rank): torch.load(tmp_path / f"{name}-rank{rank}.pt", weights_only=False)
        for name in ("plain", "sum", "pcgrad")
        for rank in (0, 1)
    }
    assert all(r["world"] == 2 and "MULTI_CPU" in r["distributed_type"] for r in runs.values())
    for name in ("plain", "sum", "pcgrad"):
        assert _max_diff(runs[name, 0]["params"], runs[name, 1]["params"]) == 0.0, name
    plain, summed = runs["plain", 0]["params"], runs["sum", 0]["params"]
    for n in plain:
        torch.testing.assert_close(summed[n], plain[n], rtol=1e-5, atol=1e-6, msg=n)
    assert runs["sum", 0]["padding_rows"] > 0 and runs["sum", 1]["padding_rows"] > 0
    # PCGrad projected something, so its update is not the sum's.
    logs = [h for h in runs["pcgrad", 0]["log_history"] if "surgery/projected_frac" in h]
    assert len(logs) == 2 and max(h["surgery/projected_frac"] for h in logs) > 0
    assert _max_diff(runs["pcgrad", 0]["params"], summed) > 1e-4
