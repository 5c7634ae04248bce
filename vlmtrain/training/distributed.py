"""Leaving a torchrun run cleanly: every rank waits for rank 0's save, then the process group is closed.

Why: a rank that reaches interpreter exit with the process group still open can abort in the group's C++
destructor ("terminate called without an active exception", SIGABRT), and torchrun then reports the whole
run as failed although training and saving succeeded: gloo's worker threads still hold work objects with
tensors, and destroying them during interpreter finalisation aborts (pytorch/pytorch#190489, #179291).
Closing the group explicitly, after a barrier, while the interpreter is alive, is the shutdown PyTorch
documents. There is one shutdown: `vlmtrain.recipes.run.run` calls the recipe's `cleanup`, which closes the
group, however the run ended. Single-process runs never open a group, so all of this is a no-op there.
"""

from __future__ import annotations

import os


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

