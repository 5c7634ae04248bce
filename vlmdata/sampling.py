"""Temperature sampling over tasks, as pure math (no torch, no rows): shared by `mix` and a trainer's sampler.

    probs = temperature_probs(counts={"vqa": 9000, "caption": 1000}, temperature=2.0)
    targets = allocate(total=10000, probs=probs, seed=0)        # {"vqa": 7500, "caption": 2500}
    repeats = choose_rows(n=1000, k=2500, seed=0, salt="caption")  # per-row copies, sum 2500

p_i ∝ n_i^(1/T): T=1 keeps the natural proportions, T→∞ (YAML `.inf`) gives every task the same share,
so small tasks are not drowned by big ones (T5, mT5). `caps` clip n_i before the temperature (T5's K),
and `weights` replace a task's probability outright. Allocation is deterministic (largest remainder),
so the realised counts equal round(total · p_i) up to one row, instead of drifting with sampling noise.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: `vlmdata validate` imports this module
    import numpy as np


def seeded_hash(*, seed: int, key: str) -> int:
    """A 64-bit hash of `key` under `seed`: stable across runs, machines and Python's hash salt."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "little")


def temperature_probs(*, counts: Mapping[str, int], temperature: float, caps: Mapping[str, int] | None = None,
                      weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Sampling probability of each task with rows (tasks with no rows are left out, never p=0/0).

    `caps[t]` clips n_t before the temperature. `weights[t]` replaces task t's temperature probability
    (weights are on the probability scale; unnamed tasks keep theirs) and the result is renormalised,
    so `weights` naming every task means exactly "p ∝ weights". Weight 0 drops a task.
    Raises ValueError when every task with rows ends up with weight 0 (nothing could be sampled).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    caps = caps or {}
    weights = weights or {}
    sizes = {t: min(n, caps.get(t, n)) for t, n in counts.items() if n > 0}
    if not sizes:
        return {}
    inv_t = 0.0 if math.isinf(temperature) else 1.0 / temperature
    logs = {t: inv_t * math.log(n) for t, n in sizes.items()}  # log space: no overflow at small T
    top = max(logs.values())
    raw = {t: math.exp(v - top) for t, v in logs.items()}
    z = sum(raw.values())
    probs = {t: weights.get(t, r / z) for t, r in raw.items()}
    z = sum(probs.values())
    if z <= 0:
        raise ValueError(f"every task with rows has weight 0 (tasks: {sorted(sizes)})")
    return {t: p / z for t, p in sorted(probs.items())}


def allocate(*, total: int, probs: Mapping[str, float], seed: int) -> dict[str, int]:
    """Split `total` rows between tasks: floor(total·p_i), then the leftover rows to the largest remainders.

    Ties between equal remainders are broken by a seeded hash of the task name, so the result is
    deterministic under the seed and independent of the order of `probs`. Sums to `total` exactly.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if not probs:
        return {}
    exact = {t: total * p for t, p in probs.items()}
    out = {t: int(math.floor(x)) for t, x in exact.items()}
    left = total - sum(out.values())
    order = sorted(exact, key=lambda t: (-(exact[t] - out[t]), seeded_hash(seed=seed, key=t)))
    for t in order[:left]:
        out[t] += 1
    return dict(sorted(out.items()))


def choose_rows(*, n: int, k: int, seed: int, salt: str) -> np.ndarray:
    """How many copies of each of `n` rows make `k` rows (int64 array of length n, summing to k).

    k <= n: k distinct rows, without replacement. k > n: every row k // n times and k % n distinct
    rows once more — oversampling with replacement only as far as needed, each row within one copy of
    the others (lower variance than i.i.d. draws). `salt` (the task name) gives each task its own stream.
    """
    import numpy as np

    if n <= 0:
        if k > 0:
            raise ValueError(f"cannot draw {k} rows from an empty task {salt!r}")
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, seeded_hash(seed=seed, key=salt)])
    copies = np.full(n, k // n, dtype=np.int64)
    copies[rng.permutation(n)[: k % n]] += 1
    return copies
