"""A process pool with a hard deadline per task: a task that runs too long has its worker killed.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it cannot kill one hung worker (a task
stuck in sympy keeps its process busy forever, and shutting the pool down waits for it). Why not
math-verify's own timeout: it is ``signal.alarm``, which only works on a process's main thread and
cannot interrupt C code. So each worker here owns a pipe, runs one task at a time, and the parent
waits on all pipes with the nearest deadline as timeout; a worker past its deadline is SIGKILLed
and replaced by a fresh one (which does not count against any task's deadline: a task is only
sent to a worker that has reported ready).

Workers are fresh interpreters (``python -m mgs.rewards.deadline_pool``) talking over a socket
pair, not :mod:`multiprocessing` children: ``fork`` would copy the trainer's threads and CUDA
state, and ``spawn`` / ``forkserver`` re-run the user's ``__main__`` script in every worker (so a
training script without an ``if __name__ == "__main__"`` guard would recurse). A worker imports the
task module in about half a second.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

Status = Literal["ok", "timeout", "error"]
_READY = "__ready__"
_START_TIMEOUT_S = 120.0  # a worker that cannot import its task module in this long is broken


@dataclass(frozen=True)
class Outcome:
    """Result of one task: ``value`` is set when ``status == "ok"``, ``error`` otherwise."""

    status: Status
    value: Any = None
    error: str = ""


def _worker_main(fd: int, target: str, memory_limit_mb: int) -> None:
    """Worker loop: import ``module:function``, report ready, then answer one task per message."""
    _die_with_parent()
    if memory_limit_mb > 0:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import importlib

    conn = Connection(fd)
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    conn.send(_READY)
    while True:
        try:
            index, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send((index, "ok", func(*args)))
        except BaseException as exc:  # MemoryError, RecursionError...: the sample fails, not us
            conn.send((index, "error", f"{type(exc).__name__}: {str(exc)[:200]}"))


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGKILL this worker when the trainer dies (even by SIGKILL),
    so a worker stuck in a pathological sample is never orphaned. Elsewhere: EOF on the socket."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Worker:
    def __init__(self, target: str, memory_limit_mb: int) -> None:
        parent, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mgs.rewards.deadline_pool",
                str(child.fileno()),
                target,
                str(memory_limit_mb),
            ],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None  # index of the task it is running
        self.deadline = float("inf")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.conn.close()


class DeadlinePool:
    """Run ``target(*args)`` for many argument tuples in worker processes, each within a deadline.

    ``target`` is ``"module:function"`` (imported inside the workers, so the parent never loads
    it; arguments and results must pickle). Workers start on the first :meth:`map` and are reused
    until :meth:`close`.
    """

    def __init__(
        self, target: str, num_workers: int, timeout_s: float, memory_limit_mb: int = 0
    ) -> None:
        self.target = target
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self._workers: list[_Worker] = []
        self.killed = 0  # workers killed for running past a deadline, over the pool's life

    def _start(self) -> None:
        while len(self._workers) < self.num_workers:
            self._workers.append(_Worker(self.target, self.memory_limit_mb))

    def map(self, tasks: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """One :class:`Outcome` per task, in order; never raises for a task's own failure."""
        if not tasks:
            return []
        self._start()
        results: list[Outcome | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        remaining = len(tasks)
        while remaining:
            now = time.monotonic()
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    index = pending.popleft()
                    worker.conn.send((index, tasks[index]))
                    worker.task, worker.deadline = index, now + self.timeout_s
            nearest = min(
                (w.deadline if w.ready else w.started + _START_TIMEOUT_S) for w in self._workers
            )
            ready_conns = wait([w.conn for w in self._workers], timeout=max(0.0, nearest - now))
            by_conn = {id(w.conn): w for w in self._workers}
            for conn in ready_conns:
                worker = by_conn[id(conn)]
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):  # the worker died (segfault, OOM killer...)
                    remaining -= self._replace(worker, results, "error", "worker process died")
                    continue
                if message == _READY:
                    worker.ready = True
                    continue
                index, status, payload = message
                if status == "ok":
                    results[index] = Outcome("ok", value=payload)
                else:
                    results[index] = Outcome("error", error=payload)
                worker.task, worker.deadline = None, float("inf")
                remaining -= 1
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.task is not None and now >= worker.deadline:
                    self.killed += 1
                    remaining -= self._replace(
                        worker, results, "timeout", f"no answer within {self.timeout_s:g} s"
                    )
                elif not worker.ready and now >= worker.started + _START_TIMEOUT_S:
                    worker.kill()
                    raise RuntimeError(
                        f"a reward worker process for {self.target} did not start within "
                        f"{_START_TIMEOUT_S:g} s (exit code {worker.proc.returncode})"
                    )
        return [r if r is not None else Outcome("error", error="lost") for r in results]

    def _replace(
        self, worker: _Worker, results: list[Outcome | None], status: Status, why: str
    ) -> int:
        """Kill ``worker``, mark its task, start a replacement; return how many tasks finished."""
        was_ready = worker.ready
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.target, self.memory_limit_mb)
        if worker.task is not None:
            results[worker.task] = Outcome(status, error=why)
            return 1
        if not was_ready:
            raise RuntimeError(
                f"a reward worker process for {self.target} exited while starting "
                f"(exit code {worker.proc.returncode}); run `python -c 'import "
                f"{self.target.split(':')[0]}'` to see the error"
            )
        return 0

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        for worker in self._workers:
            worker.kill()
        self._workers = []

    def __del__(self) -> None:  # best effort; close() is the real API
        with contextlib.suppress(Exception):
            self.close()


if __name__ == "__main__":  # a worker: python -m mgs.rewards.deadline_pool FD TARGET MEMORY_MB
    _worker_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
