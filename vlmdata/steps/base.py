"""The step contract, as small as datatrove's.

- A `MapStep` turns a batch of rows into rows and `Reject`s (one generator method).
- A `FilterStep` answers `keep(row) -> True | "reason"`; the base class turns reasons into rejects,
  so every dropped row is counted and kept in rejects.jsonl with its reason.
- A `GlobalStep` (dedup, split, mix) needs to see every row before deciding about any, in three parts:
  `key(batch)` maps rows to compact columns (hashes, ids, task names — never image bytes),
  `fit(keys)` is one reduce over all keys (a `pyarrow.Table`, one row per data row, in order, with
  the engine's `_idx` column), and `apply(batch, state)` maps each row (which carries `_idx`) using
  that state. Engines run `key` and `apply` in parallel and `fit` once.

Rows are plain dicts with the contract columns plus internal ones (`rows.INTERNAL_COLUMNS`). Steps
never import an engine, a process pool or ray; engines call `process(batch)` and count what comes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vlmdata.rows import Reject
from vlmdata.steps.seen_scores import SeenScores

Row = dict[str, Any]


@dataclass
class StageStats:
    """Rows in, rows out and rejects per reason of one stage (the manifest's funnel)."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)  # what a global step reports (checks, sizes)
    seen: SeenScores | None = None  # a scored filter's scores of every row it saw (the report's histograms)

    def to_json(self) -> dict[str, Any]:
        out = {"stage": self.stage, "in": self.rows_in, "out": self.rows_out,
               "rejected": dict(sorted(self.rejected.items()))}
        details = {**self.details, "scores_seen": self.seen.to_json()} if self.seen is not None else self.details
        if details:
            out["details"] = details
        return out


class Step:
    """A named stage. `name` is the registered (YAML) name and the stage name in the manifest."""

    name: ClassVar[str] = "step"
    # True for a step that owns state shared by the whole build (a request cache, a concurrency and
    # rate limit, a budget): an engine that spreads batches over workers must run it in one place,
    # over the batches in order, instead of copying it into every worker.
    runs_on_driver: ClassVar[bool] = False

    def process(self, batch: list[Any]) -> Iterator[Row | Reject]:
        raise NotImplementedError

    def report(self, state: Any = None) -> dict[str, Any]:
        """What the manifest records about this step (counts, costs); empty by default."""
        return {}

    def attempts(self, stats: StageStats) -> int:
        """Rows this step tried to make or keep (the base of its reject ratio): the rows that came in.
        A step that makes new rows (synthesize) counts what it tried to make instead."""
        return stats.rows_in


class MapStep(Step):
    """Batch in, rows and rejects out."""

    def map(self, batch: list[Any]) -> Iterator[Row | Reject]:
        raise NotImplementedError

    def process(self, batch: list[Any]) -> Iterator[Row | Reject]:
        return self.map(batch)


class FilterStep(Step):
    """Keep a row or give the reason it goes; rejects carry the row's id and source locator."""

    def keep(self, row: Row) -> bool | str:
        raise NotImplementedError

    def process(self, batch: list[Any]) -> Iterator[Row | Reject]:
        for row in batch:
            verdict = self.keep(row)
            if verdict is True:
                yield row
            else:
                reason = verdict if isinstance(verdict, str) else self.name
                meta = row.get("meta") or {}
                yield Reject(source=row.get("source", ""), locator=meta.get("locator", ""), reason=reason,
                             detail=f"{self.name}: {reason}", stage=self.name, row_id=row.get("id"))


class GlobalStep(Step):
    """A barrier: key → fit → apply. `apply` may drop (Reject), keep, or repeat rows, or set `split`."""

    def key(self, batch: list[Row]) -> dict[str, list[Any]]:
        """Compact columns for `fit`, one entry per row of `batch` (same order)."""
        raise NotImplementedError

    def fit(self, keys: Any) -> Any:
        """One reduce over all keys (a pyarrow.Table with `_idx`); returns the state `apply` needs."""
        raise NotImplementedError

    def apply(self, batch: list[Row], state: Any) -> Iterator[Row | Reject]:
        raise NotImplementedError

    def report(self, state: Any) -> dict[str, Any]:
        """What the manifest records about this step (counts, checks); empty by default."""
        return {}
