"""`TaskSampler`: which rows a multi-task epoch trains on, by temperature over tasks, resumable mid-epoch.

Why a sampler and not a pre-mixed dataset: the mix is re-drawn every epoch (a small task is oversampled
with different repeats each time, a big task contributes different rows each time), and the trainer
can change `temperature` or `weights` without rebuilding the data. The probabilities come from
`vlmdata.sampling` (p_i ∝ n_i^(1/T), caps before the temperature, weights replace probabilities), the
same math as the data side's `mix`, so "T=2" means the same thing in both places.

Each epoch: `allocate` splits `num_samples` between tasks (largest remainder, so the realised counts
are round(num_samples · p_i), not noisy draws), `choose_rows` picks each task's rows (without
replacement while a task has enough rows, evenly repeated beyond), and a seeded permutation orders
them. Everything is a function of (seed, epoch): the same seed gives the same stream, and resuming from
`state_dict()` (epoch + position) continues it exactly.

With `batch_size`, every block of `batch_size` consecutive indices comes from one task (task-homogeneous
batches, e.g. for per-task heads or to keep very different sequence lengths apart); each task gets a
whole number of batches and the order of the batches is shuffled. Use the DataLoader's batch size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from vlmdata.sampling import allocate, choose_rows, seeded_hash, temperature_probs


class TaskSampler(Sampler[int]):
    """Indices into a dataset whose rows carry `tasks[i]` (and optionally `sources[i]`).

    Groups are tasks, or "source/task" when `sources` is given (several datasets that share task
    names are then balanced separately); `weights` and `caps` are keyed by the group name.
    `num_samples` (default: the dataset's length) is the length of one epoch.

    Resume: `state_dict()` is {"epoch", "position"}; `position` counts indices handed out in the
    current epoch. A DataLoader prefetches, so a trainer should save the position it has *consumed*
    (steps × batch size × accumulation), e.g. `{"epoch": e, "position": consumed}`.
    """

    def __init__(self, *, tasks: Sequence[str], sources: Sequence[str] | None = None,
                 num_samples: int | None = None, temperature: float = 1.0,
                 weights: Mapping[str, float] | None = None, caps: Mapping[str, int] | None = None,
                 batch_size: int | None = None, seed: int = 0) -> None:
        if sources is not None and len(sources) != len(tasks):
            raise ValueError(f"sources has {len(sources)} entries but tasks has {len(tasks)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        keys = list(tasks) if sources is None else [f"{s}/{t}" for s, t in zip(sources, tasks, strict=True)]
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        self.groups = {k: np.asarray(v, dtype=np.int64) for k, v in sorted(groups.items())}
        unknown = sorted((set(weights or {}) | set(caps or {})) - set(self.groups))
        if unknown:
            raise ValueError(f"weights/caps name unknown task(s) {unknown} (tasks: {sorted(self.groups)})")
        self.probs = temperature_probs(counts={k: len(v) for k, v in self.groups.items()},
                                       temperature=temperature, caps=caps, weights=weights)
        total = len(keys) if num_samples is None else num_samples
        if total < 1:
            raise ValueError(f"num_samples must be >= 1, got {total}")
        self.batch_size = batch_size
        self.num_samples = total if batch_size is None else (total // batch_size) * batch_size
        if self.num_samples == 0:
            raise ValueError(f"num_samples={total} is smaller than batch_size={batch_size}")
        self.seed = seed
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        return self.num_samples

    def counts(self, *, epoch: int) -> dict[str, int]:
        """Rows of each group in `epoch` (sums to `len(self)`; whole batches with `batch_size`)."""
        unit = self.batch_size or 1
        salt = seeded_hash(seed=self.seed, key=f"epoch:{epoch}")
        units = allocate(total=self.num_samples // unit, probs=self.probs, seed=salt)
        return {k: n * unit for k, n in units.items()}

    def indices(self, *, epoch: int) -> np.ndarray:
        """The whole stream of `epoch` (int64, length `len(self)`), a pure function of (seed, epoch)."""
        salt = seeded_hash(seed=self.seed, key=f"epoch:{epoch}")
        rng = np.random.default_rng([self.seed, salt])
        chosen: dict[str, np.ndarray] = {}
        for key, k in self.counts(epoch=epoch).items():
            rows = self.groups[key]
            copies = choose_rows(n=len(rows), k=k, seed=salt % (2**63), salt=key)
            chosen[key] = rng.permutation(np.repeat(rows, copies))
        if self.batch_size is None:
            return rng.permutation(np.concatenate(list(chosen.values())))
        batches = [rows.reshape(-1, self.batch_size) for rows in chosen.values() if len(rows)]
        stacked = np.concatenate(batches)
        return stacked[rng.permutation(len(stacked))].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        stream = self.indices(epoch=self.epoch)
        while self.position < len(stream):
            index = int(stream[self.position])
            self.position += 1
            yield index
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Jump to `epoch` (called by accelerate/Trainer); keeps the position when the epoch is unchanged."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        position = int(state["position"])
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"position {position} is outside the epoch (0..{self.num_samples})")
        self.epoch, self.position = int(state["epoch"]), position
