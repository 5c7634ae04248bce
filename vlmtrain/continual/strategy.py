"""The `Strategy` protocol of continual fine-tuning, and `Combined` to stack strategies.

The trainer owns the loop; a strategy only reacts to it:

    for k, rows in enumerate(task_rows):          # task_rows[k]: row indices of task k in the table
        strategy.before_task(task_index=k, model=model, task_rows=task_rows)
        train on rows + strategy.extra_rows(task_index=k), adding strategy.extra_loss(...) to each step
        strategy.after_task(task_index=k, model=model, dataloader=loader_of_task_k)

Why hooks and not subclasses of the Trainer: replay, EWC and LwF then combine freely
(`Combined([ReplayStrategy(...), LwFStrategy(...)])`) and each is tested without a Trainer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from vlmtrain.config.multitask import ContinualSection


class Strategy:
    """Does nothing: fine-tuning on each task in turn (the naive baseline). Subclasses override hooks."""

    @classmethod
    def from_config(cls, *, continual: ContinualSection, seed: int) -> Strategy:
        """The strategy as `continual:` configures it (its own options section); `seed` for any random choice."""
        return cls()

    def before_task(self, *, task_index: int, model: Any, task_rows: Sequence[Sequence[int]]) -> None:
        """Called before training task `task_index`; `task_rows[k]` are task k's row indices."""

    def extra_rows(self, *, task_index: int) -> list[int]:
        """Row indices (of earlier tasks) to train on together with task `task_index`'s own rows."""
        return []

    def extra_loss(self, *, model: Any, batch: Mapping[str, Any], outputs: Any) -> torch.Tensor | None:
        """A term added to the step's loss (scalar tensor with a graph), or None for nothing.

        `batch` is the collator's output (input_ids, labels (B, L), pixel_values, ...) and `outputs` the
        model's output on it (`outputs.logits` (B, L, V)), so no strategy runs the student twice.
        """
        return None

    def after_task(self, *, task_index: int, model: Any, dataloader: Iterable[Mapping[str, Any]]) -> None:
        """Called after training task `task_index`, with a loader over that task's training rows."""


class Combined(Strategy):
    """Several strategies as one: hooks run in order, extra rows are concatenated, extra losses summed."""

    def __init__(self, strategies: Sequence[Strategy]) -> None:
        self.strategies = list(strategies)

    def before_task(self, *, task_index: int, model: Any, task_rows: Sequence[Sequence[int]]) -> None:
        for s in self.strategies:
            s.before_task(task_index=task_index, model=model, task_rows=task_rows)

    def extra_rows(self, *, task_index: int) -> list[int]:
        return [i for s in self.strategies for i in s.extra_rows(task_index=task_index)]

    def extra_loss(self, *, model: Any, batch: Mapping[str, Any], outputs: Any) -> torch.Tensor | None:
        terms = [s.extra_loss(model=model, batch=batch, outputs=outputs) for s in self.strategies]
        present = [t for t in terms if t is not None]
        return torch.stack(present).sum() if present else None

    def after_task(self, *, task_index: int, model: Any, dataloader: Iterable[Mapping[str, Any]]) -> None:
        for s in self.strategies:
            s.after_task(task_index=task_index, model=model, dataloader=dataloader)
