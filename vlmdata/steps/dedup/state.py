"""What the dedup step's `fit` decides, handed to `apply` on every worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Clusters:
    """The image_cluster strings, kept as one Arrow string array (no Python str per cluster until read)."""

    def __init__(self, values: Any = None) -> None:
        import pyarrow as pa  # here, not at the top: the plan imports this module, `vlmdata validate` needs no pyarrow

        self.values = pa.array([], pa.string()) if values is None else values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, k: int) -> str:
        return str(self.values[k].as_py())


@dataclass
class DedupState:
    reason: Any  # (n,) uint8 code into decide.REASONS, 0 = kept
    dup_of: dict[int, str] = field(default_factory=dict)  # dropped _idx → id of the row it duplicates
    eval_set: dict[int, str] = field(default_factory=dict)  # contaminated _idx → eval set name
    cosine: dict[int, float] = field(default_factory=dict)  # semantic: dropped _idx → cosine to the row it duplicates
    cluster: Any = None  # (n,) int64 index into clusters
    clusters: Clusters = field(default_factory=Clusters)
    summary: dict[str, Any] = field(default_factory=dict)
    show: set[int] = field(default_factory=set)  # the first dropped image duplicates (by _idx): get a thumbnail


SHOWN_DUPLICATES = 12  # how many image duplicates carry a thumbnail into rejects.jsonl (for report.html)
