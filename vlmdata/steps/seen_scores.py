"""The scores a scored filter measured on every row it saw, kept and rejected, merged on the driver.

Why: the report's score histograms must show where the threshold cuts the distribution the filter
saw. The dataset alone cannot give that: it holds only the rows that survived every later stage (dedup,
other filters), and a mix may repeat rows. So each batch's entry carries its filter's scores from the
worker (engines/packets.py), the driver counts them here, and the manifest keeps a fixed-size histogram
per score. Values are counted at 3 significant digits, so memory is bounded by the distinct values, not
the rows, and the result is the same whatever the batch size or the number of workers.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

BINS = 60
Observed = dict[str, tuple[list[float], list[float]]]  # score name → (values of kept rows, of rejected rows)


def _round(value: float) -> float:
    return float(f"{value:.3g}")


class SeenScores:
    """Counts of (rounded score, kept?) per score name, over all batches of one stage."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[tuple[float, bool]]] = {}
        self.nonfinite: Counter[str] = Counter()

    def add(self, observed: Observed) -> None:
        for name, (kept, rejected) in observed.items():
            c = self.counts.setdefault(name, Counter())
            for values, flag in ((kept, True), (rejected, False)):
                for v in values:
                    if math.isfinite(v):
                        c[(_round(v), flag)] += 1
                    else:
                        self.nonfinite[name] += 1

    def to_json(self, *, bins: int = BINS) -> dict[str, Any]:
        """Per score: {min, max, kept, rejected, nonfinite, hist: {lo, hi, kept: [bins], rejected: [bins]}}."""
        out: dict[str, Any] = {}
        for name, c in sorted(self.counts.items()):
            values = [v for v, _ in c]
            lo, hi = min(values), max(values)
            width = (hi - lo) / bins if hi > lo else 1.0
            kept, rejected = [0] * bins, [0] * bins
            for (v, flag), n in c.items():
                i = min(int((v - lo) / width), bins - 1) if hi > lo else 0
                (kept if flag else rejected)[i] += n
            out[name] = {"min": lo, "max": hi, "kept": sum(kept), "rejected": sum(rejected),
                         "nonfinite": self.nonfinite[name],
                         "hist": {"lo": lo, "hi": hi if hi > lo else lo + 1.0, "kept": kept, "rejected": rejected}}
        return out
