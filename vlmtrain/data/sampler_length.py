"""Length-grouped batching: batches of rows with similar token length, in a seeded random order.

Why: a padded batch costs as much as its longest row times its size. When answers vary from one
word to a paragraph, random batches are mostly padding; grouping rows of similar length removes most
of it, so the same rows train in fewer token-slots (`benchmarks/bench_train.py` measures the gain).

How (deterministic in `seed` and the epoch, so a resumed run sees the same order):
1. shuffle all indices;
2. cut the shuffle into mega-batches of `group` batches and sort each by length, longest first
   (sorting within a mega-batch, not globally, keeps batches different from epoch to epoch);
3. cut each mega-batch into batches and shuffle the order of the batches.
The sampler yields indices; the DataLoader (and accelerate's per-rank sharding) cut them into the
same batches of `batch_size`, so each rank gets whole groups.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Indices in length-grouped batches of `batch_size`; order fixed by (`seed`, epoch)."""

    def __init__(self, *, lengths: Sequence[int], batch_size: int, seed: int, group: int = 64) -> None:
        if batch_size < 1 or group < 1:
            raise ValueError(f"batch_size and group must be >= 1 (got {batch_size}, {group})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer at each epoch start: a new grouping each epoch, the same on resume."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def order(self) -> list[int]:
        """This epoch's indices (what `__iter__` yields)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        shuffled = rng.permutation(len(self.lengths))
        mega = self.batch_size * self.group
        batches: list[np.ndarray] = []
        for start in range(0, len(shuffled), mega):
            chunk = shuffled[start : start + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        # Keep a short last batch at the end, where the DataLoader expects it.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        picked = [full[i] for i in rng.permutation(len(full))] + short
        return [int(i) for b in picked for i in b]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())
