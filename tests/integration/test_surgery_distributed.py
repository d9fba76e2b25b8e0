"""FSDP2- and DDP-sharded surgery equals the single-process result (torchrun, 2 ranks, gloo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from launch import run_python

WORKER = Path(__file__).with_name("surgery_dist_worker.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _run(mode: str, granularity: str, out: Path, nproc: int) -> dict:
    run_python([str(WORKER), mode, granularity, str(out)], None if mode == "single" else nproc)
    return torch.load(out)


@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_fsdp2_surgery_matches_single_process(tmp_path: Path, granularity: str) -> None:
    single = _run("single", granularity, tmp_path / "single.pt", 1)
    fsdp = _run("fsdp2", granularity, tmp_path / "fsdp.pt", 2)
    assert single["grads"].keys() == fsdp["grads"].keys()
    for name, expected in single["grads"].items():
        torch.testing.assert_close(fsdp["grads"][name], expected, rtol=1e-4, atol=1e-6, msg=name)
    for key in ("surgery/cos/math__chat", "surgery/grad_norm", "surgery/projected_frac"):
        assert fsdp["summary"][key] == pytest.approx(single["summary"][key], rel=1e-4, abs=1e-7)


def test_ddp_surgery_matches_single_process(tmp_path: Path) -> None:
    single = _run("single", "module", tmp_path / "single.pt", 1)
    ddp = _run("ddp", "module", tmp_path / "ddp.pt", 2)
    for name, expected in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][name], expected, rtol=1e-4, atol=1e-6, msg=name)


def test_ranks_running_different_domain_orders_are_refused(tmp_path: Path) -> None:
    result = _run("ddp-mismatch", "tensor", tmp_path / "mismatch.pt", 2)
    assert "ranks disagree" in result["error"]
