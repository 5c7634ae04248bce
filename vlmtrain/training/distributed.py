"""Leaving a torchrun run cleanly: every rank waits for rank 0's save, then the process group is closed.

Why: a rank that reaches interpreter exit with the process group still open can abort in the group's C++
destructor ("terminate called without an active exception", SIGABRT). torchrun then reports the whole
run as failed although training and saving succeeded; CI saw it happen on CPU/gloo with two ranks, where
rank 1 finished while rank 0 was still saving. The mechanism (pytorch/pytorch#190489, #179291): gloo's
worker threads still hold work objects with tensors, and destroying them during interpreter finalisation
aborts. Closing the group explicitly, after a barrier, while the interpreter is alive, is the shutdown
PyTorch documents. Single-process runs never open a group, so all of this is a no-op there.
"""

from __future__ import annotations

import atexit
import os

_registered = False


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """Rank 0, or no torchrun at all: the one process that writes files. Read from the environment that
    torchrun/accelerate set, so it is right before the process group exists."""
    return os.environ.get("RANK", "0") == "0"


def wait_for_everyone() -> None:
    """Barrier over all ranks (no-op without a process group): rank 1 leaves only once rank 0 has saved."""
    if _initialized():
        import torch.distributed as dist

        dist.barrier()


def close_process_group() -> None:
    """Destroy the default process group if one is open; safe to call twice and without torchrun."""
    if _initialized():
        import torch.distributed as dist

        dist.destroy_process_group()


def close_at_exit() -> None:
    """Register `close_process_group` to run at interpreter exit (once): a net for scripts that build a
    recipe and never call its `cleanup()`. No barrier there: a rank that exits on an error must not wait
    for ranks that are still training."""
    global _registered
    if not _registered and _initialized():
        atexit.register(close_process_group)
        _registered = True
