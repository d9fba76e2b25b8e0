"""Run a Python entry point in a child process, alone or under torchrun (gloo), as the integration
tests do: one OpenMP thread per process (two ranks share the 2-core machine), output captured, a
non-zero exit fails the test with the tail of the child's output."""

from __future__ import annotations

import os
import subprocess
import sys


def run_python(args: list[str], nproc: int | None = None, timeout: float = 300) -> None:
    """``python ARGS`` (``nproc`` None), or ``torchrun --standalone --nproc_per_node NPROC ARGS``.

    ``args`` start with a script path or ``-m module``.
    """
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [sys.executable, *(torchrun if nproc is not None else []), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
