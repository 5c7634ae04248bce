"""Stopping a run whose numbers stop being numbers: a non-finite loss, gradient norm or weight.

Why: the stock Trainer replaces a NaN/inf loss by the running mean in its logs
(`logging_nan_inf_filter`) and steps on, so a diverged run would finish, save an all-NaN adapter
and exit 0. Here the run stops with `NonFiniteError` at the first sign, before the optimizer applies
the bad step, and no checkpoint or adapter is written from non-finite weights, so the last
`checkpoint-N` on disk is the last good state (`vlmtrain run --resume` continues from it after the
config is fixed).

Checks: the loss of every micro-batch (one process; under torchrun a NaN loss on any rank makes the
all-reduced gradient norm NaN on every rank, which every rank sees at once, so no rank waits on
another); the gradient norm of every optimizer step (not under fp16, whose loss scaler skips steps
with inf gradients by design); the trainable weights before anything is saved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vlmtrain.training.checkpoint import last_checkpoint


class NonFiniteError(RuntimeError):
    """Training produced inf or NaN; the message names what, at which step, and the last good checkpoint."""

    def __init__(self, *, what: str, step: int, value: float | str, run_dir: Path) -> None:
        self.what, self.step, self.value = what, step, value
        self.checkpoint = last_checkpoint(run_dir=run_dir)
        keep = (f"the last good checkpoint is {self.checkpoint} (`vlmtrain run --resume` continues from it)"
                if self.checkpoint is not None else "no checkpoint was written before it (train.save_every)")
        super().__init__(f"the {what} is {value} at step {step}: training stopped and nothing was saved from "
                         f"it; {keep}. Lower train.lr (or train.max_grad_norm), or use precision: fp32 / bf16")


def finite(value: Any) -> bool:
    """Whether a Python number or a tensor (every element) is finite."""
    if isinstance(value, int | float):
        return math.isfinite(value)
    import torch

    return bool(torch.isfinite(value).all())


def first_nonfinite_weight(model: Any) -> str | None:
    """The name of the first trainable parameter holding inf or NaN, or None when all are finite."""
    for name, param in model.named_parameters():
        if param.requires_grad and not finite(param.detach()):
            return name
    return None


def json_number(value: Any) -> float | None:
    """A float for `log.jsonl`, or None when it is not finite (strict JSON has no NaN or Infinity)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
