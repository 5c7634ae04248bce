"""Experience replay: keep some rows of earlier tasks and train on them again with each new task.

The buffer stores row indices only (into the training table), never rows, so it costs a few bytes
per row.

- "reservoir": a uniform sample of every row seen so far, of at most `size` rows (Vitter's
  Algorithm R), so earlier tasks keep shares proportional to their sizes.
- "stratified": every task seen keeps the same number of rows (`size` split evenly, remainders to the
  earliest tasks), or `ratio` of its own rows; a task's rows are a prefix of a seeded permutation, so
  shrinking its quota as tasks arrive keeps a subset of what it had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from vlmdata.sampling import seeded_hash
from vlmtrain.config.multitask import ContinualSection
from vlmtrain.continual.strategy import Strategy


class ReplayBuffer:
    """Row indices of earlier tasks; deterministic under `seed`. Give `size` (rows) or `ratio` (stratified)."""

    def __init__(self, *, mode: Literal["reservoir", "stratified"] = "reservoir", size: int | None = None,
                 ratio: float | None = None, seed: int = 0) -> None:
        if mode not in ("reservoir", "stratified"):
            raise ValueError(f"replay.mode must be 'reservoir' or 'stratified', got {mode!r}")
        if (size is None) == (ratio is None):
            raise ValueError("give exactly one of replay.size and replay.ratio")
        if size is not None and size < 0:
            raise ValueError(f"replay.size must be >= 0, got {size}")
        if ratio is not None and not 0 <= ratio <= 1:
            raise ValueError(f"replay.ratio must be in [0, 1], got {ratio}")
        if mode == "reservoir" and ratio is not None:
            raise ValueError("replay.ratio needs mode 'stratified' (a reservoir has a fixed replay.size)")
        self.mode, self.size, self.ratio, self.seed = mode, size, ratio, seed
        self.reservoir: list[int] = []
        self.seen = 0
        self.tasks: dict[str, list[int]] = {}  # stratified: each task's rows in its seeded order

    def add(self, *, task: str, rows: Sequence[int]) -> None:
        """Offer task `task`'s rows (in order) to the buffer."""
        rng = np.random.default_rng([self.seed, seeded_hash(seed=self.seed, key=task)])
        if self.mode == "stratified":
            self.tasks[task] = [int(rows[i]) for i in rng.permutation(len(rows))]
            return
        assert self.size is not None
        for row in rows:
            self.seen += 1
            if len(self.reservoir) < self.size:
                self.reservoir.append(int(row))
            else:
                j = int(rng.integers(self.seen))
                if j < self.size:
                    self.reservoir[j] = int(row)

    def quotas(self) -> dict[str, int]:
        """Stratified: rows kept per task."""
        if self.ratio is not None:
            return {t: math.ceil(self.ratio * len(rows)) for t, rows in self.tasks.items()}
        assert self.size is not None
        n = len(self.tasks)
        return {t: self.size // n + (i < self.size % n) for i, t in enumerate(self.tasks)}

    def rows(self) -> list[int]:
        """The buffer's row indices (reservoir: in slot order; stratified: task by task)."""
        if self.mode == "reservoir":
            return list(self.reservoir)
        return [r for t, q in self.quotas().items() for r in self.tasks[t][:q]]


class ReplayStrategy(Strategy):
    """Before task k, adds the rows of tasks < k to the buffer; `extra_rows` returns the buffer to mix in."""

    def __init__(self, *, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.added = 0  # tasks already offered to the buffer

    @classmethod
    def from_config(cls, *, continual: ContinualSection, seed: int) -> ReplayStrategy:
        r = continual.replay
        return cls(buffer=ReplayBuffer(mode=r.mode, size=r.size, ratio=r.ratio, seed=seed))

    def before_task(self, *, task_index: int, model: Any, task_rows: Sequence[Sequence[int]]) -> None:
        for k in range(self.added, task_index):
            self.buffer.add(task=str(k), rows=task_rows[k])
        self.added = max(self.added, task_index)

    def extra_rows(self, *, task_index: int) -> list[int]:
        return self.buffer.rows() if task_index > 0 else []
