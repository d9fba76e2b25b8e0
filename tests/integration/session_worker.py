"""Worker for test_distributed_session.py: enters ``distributed_session`` under torchrun and
writes, per rank, whether the process group is alive inside it and after it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mgs.train.distributed import DistributedConfig, distributed_session


def main(mode: str, out_dir: str) -> None:
    cfg = DistributedConfig(backend="gloo")
    if mode == "pre-existing":
        dist.init_process_group("gloo")
    record: dict[str, object] = {}
    try:
        with distributed_session(cfg, torch.device("cpu")) as ctx:
            record["inside"] = dist.is_initialized()
            record["world_size"] = ctx.world_size
            if mode == "error":
                raise RuntimeError("a failing run")
    except RuntimeError as exc:
        record["raised"] = str(exc)
    record["after"] = dist.is_initialized()
    rank = ctx.rank
    if mode == "pre-existing":
        dist.destroy_process_group()  # the script's own group, left alone by the session
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
