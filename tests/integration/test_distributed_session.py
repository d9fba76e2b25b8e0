"""``distributed_session`` leaves the process group it joined (torchrun, 2 ranks, gloo).

A rank that exits with its gloo group alive can abort in the interpreter's teardown
("terminate called without an active exception"), so ``mgs train`` destroys the group it made,
on success and on error, and leaves a group a user's own script made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("session_worker.py")
pytestmark = [pytest.mark.distributed]


def _ranks(mode: str, out: Path) -> list[dict]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(WORKER),
        mode,
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize(
    ("mode", "after", "raised"),
    [("ok", False, None), ("error", False, "a failing run"), ("pre-existing", True, None)],
)
def test_the_session_destroys_only_the_group_it_joined(tmp_path, mode, after, raised) -> None:
    for record in _ranks(mode, tmp_path):
        assert record["inside"] is True
        assert record["world_size"] == 2
        assert record["after"] is after
        assert record.get("raised") == raised
