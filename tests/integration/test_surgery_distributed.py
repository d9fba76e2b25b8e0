"""FSDP2- and DDP-sharded surgery equals the single-process result (torchrun, 2 ranks, gloo), for
PCGrad and for every family of the other aggregators (one launch per mode runs them all)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from launch import run_python

WORKER = Path(__file__).with_name("surgery_dist_worker.py")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]

# One family per solver: the dual-cone QP, Frank-Wolfe, CAGrad's face enumeration, the closed-form
# weightings, and the stateful methods (state carried over 3 steps on every rank).
FAMILIES = {
    "dual-cone": ["upgrad", "dualproj"],
    "mgda": ["mgda"],
    "cagrad": ["cagrad"],
    "closed-form": ["imtl_g", "aligned_mtl", "config"],
    "stateful": ["gradvac", "nash_mtl"],
}
ALL = [name for names in FAMILIES.values() for name in names]


def _run(mode: str, granularity: str, out: Path, nproc: int, aggregators=()) -> dict:
    args = [str(WORKER), mode, granularity, str(out), *aggregators]
    run_python(args, None if mode == "single" else nproc)
    return torch.load(out)


def _assert_same(got: dict, expected: dict) -> None:
    assert got["grads"].keys() == expected["grads"].keys()
    for name, value in expected["grads"].items():
        torch.testing.assert_close(got["grads"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(got["coef"], expected["coef"], rtol=1e-4, atol=1e-7)
    for key in ("surgery/cos/math__chat", "surgery/grad_norm", "surgery/projected_frac"):
        assert got["summary"][key] == pytest.approx(expected["summary"][key], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("granularity", ["tensor", "global"])
def test_fsdp2_surgery_matches_single_process(tmp_path: Path, granularity: str) -> None:
    single = _run("single", granularity, tmp_path / "single.pt", 1)
    fsdp = _run("fsdp2", granularity, tmp_path / "fsdp.pt", 2)
    _assert_same(fsdp["pcgrad"], single["pcgrad"])


def test_ddp_surgery_matches_single_process(tmp_path: Path) -> None:
    single = _run("single", "module", tmp_path / "single.pt", 1)
    ddp = _run("ddp", "module", tmp_path / "ddp.pt", 2)
    _assert_same(ddp["pcgrad"], single["pcgrad"])


def test_ranks_running_different_domain_orders_are_refused(tmp_path: Path) -> None:
    result = _run("ddp-mismatch", "tensor", tmp_path / "mismatch.pt", 2)
    assert "ranks disagree" in result["error"]


@pytest.fixture(scope="module")
def every_aggregator(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Single process, DDP and FSDP2 runs of all the new aggregators at module granularity."""
    tmp = tmp_path_factory.mktemp("aggregators")
    return {
        mode: _run(mode, "module", tmp / f"{mode}.pt", None if mode == "single" else 2, ALL)
        for mode in ("single", "ddp", "fsdp2")
    }


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_aggregator_family_matches_single_process(
    every_aggregator: dict[str, dict], mode: str, family: str
) -> None:
    for aggregator in FAMILIES[family]:
        _assert_same(every_aggregator[mode][aggregator], every_aggregator["single"][aggregator])
