"""Worker processes for the local engine: an ordered map over batches with a bounded number in flight.

Why this shape:
- results come back in submission order, so rows, `_idx`, splits, ids, rejects.jsonl and the manifest
  are identical to a run without workers;
- at most `inflight` batches are submitted and not yet consumed, so memory stays flat however long
  the stream (`Executor.map` and `Pool.imap` read their whole input up front);
- the callables run in the workers are registered before the pool starts and the workers are forked,
  so steps reach the workers as they are, without being pickled (a Jinja template, a compiled regex or
  an open model need not be picklable); only batches and results cross the pipe. Where `fork` does not
  exist (Windows), `WorkerPool.start` returns None and the engine runs everything in-process;
- no worker outlives the build: on Linux each worker asks the kernel for SIGKILL when its parent dies
  (PR_SET_PDEATHSIG, so even a SIGKILLed driver leaves none behind), elsewhere a thread in the worker
  watches the parent's pid; workers ignore SIGINT (the driver handles Ctrl-C for them) and take the
  default SIGTERM, and a build that fails or is interrupted ends its workers instead of waiting.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

_TASKS: list[Callable[[Any], Any]] = []  # set in each worker only, by `_init` (inherited through fork, not pickled)


def _die_with_parent(parent: int) -> None:
    """End this worker when the process `parent` ends (a SIGKILLed driver cannot clean up after itself)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the prctl: nobody will signal us
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="vlmdata-parent-watch", daemon=True).start()


def _init(tasks: list[Callable[[Any], Any]], parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    _TASKS[:] = tasks


def _call(task: int, item: Any) -> Any:
    return _TASKS[task](item)


def default_workers() -> int:
    """min(4, usable CPUs): decoding scales with processes, but the driver (source parsing, spill,
    write) is one process, so past ~4 workers it is the bottleneck and more workers only cost memory."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


class WorkerPool:
    """`map(task, items)` in `workers` forked processes; `task` is an index from `register`."""

    def __init__(self, *, workers: int, inflight: int) -> None:
        self.workers = workers
        self.inflight = inflight
        self._executor: ProcessPoolExecutor | None = None
        self._tasks: list[Callable[[Any], Any]] = []

    def register(self, fn: Callable[[Any], Any]) -> int:
        """Make `fn` callable in the workers; call before the first `map` (the fork)."""
        if self._executor is not None:
            raise RuntimeError("WorkerPool.register after the workers started")
        self._tasks.append(fn)
        return len(self._tasks) - 1

    @classmethod
    def start(cls, *, workers: int, inflight: int | None = None) -> WorkerPool | None:
        """A pool, or None when `workers` <= 1 or this platform cannot fork."""
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        return cls(workers=workers, inflight=inflight or 2 * workers)

    def map(self, task: int, items: Iterable[Any]) -> Iterator[Any]:
        if self._executor is None:  # forks now: every task registered so far is in the workers
            self._executor = ProcessPoolExecutor(max_workers=self.workers, initializer=_init,
                                                 initargs=(self._tasks, os.getpid()), mp_context=multiprocessing.get_context("fork"))
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(self._executor.submit(_call, task, item))
            if len(pending) >= self.inflight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self, *, abort: bool = False) -> None:
        """Stop the workers: after the work (`abort=False`), or at once (a failed or interrupted build)."""
        if self._executor is None:
            return
        if abort:
            for proc in list((getattr(self._executor, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.kill()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None
