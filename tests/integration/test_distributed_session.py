"""``distributed_session`` leaves the process group it joined (torchrun, 2 ranks, gloo).

A rank that exits with its gloo group alive can abort in the interpreter's teardown
("terminate called without an active exception"), so ``mgs train`` destroys the group it made,
on success and on error, and leaves a group a user's own script made.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch import run_python

WORKER = Path(__file__).with_name("session_worker.py")
pytestmark = [pytest.mark.distributed]


def _ranks(mode: str, out: Path) -> list[dict]:
    run_python([str(WORKER), mode, str(out)], nproc=2)
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
