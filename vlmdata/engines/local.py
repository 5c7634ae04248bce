"""The local engine: stream each source in batches through the steps into the writer.

Memory stays flat: one batch of rows is alive at a time (plus the Arrow writer's buffer). Every
Reject from a source or a step is counted under its stage and appended to rejects.jsonl at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from vlmdata.plan import Plan
from vlmdata.rows import Record, Reject
from vlmdata.sources import read_source
from vlmdata.steps.base import StageStats
from vlmdata.steps.write import ArrowWriter


class RejectLog:
    """Append-only rejects.jsonl, one JSON object per rejected row."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self.count = 0

    def add(self, reject: Reject) -> None:
        self._file.write(json.dumps(reject.to_json(), ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_local(plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None, progress: bool) -> list[StageStats]:
    """Run the plan; returns the funnel (one StageStats per step, in order)."""
    from tqdm.auto import tqdm

    stats = [StageStats(stage=step.name) for step in plan.steps]
    for spec in plan.sources:
        bar = tqdm(desc=f"{spec.name}", unit="row", disable=not progress, leave=False)
        for chunk in _batched(read_source(spec, limit=limit), plan.batch_size):
            batch: list[Any] = []
            for item in chunk:
                if isinstance(item, Reject):
                    stats[0].rows_in += 1
                    stats[0].rejected[item.reason] += 1
                    rejects.add(item)
                else:
                    assert isinstance(item, Record)
                    batch.append(item)
            for step, st in zip(plan.steps, stats, strict=True):
                st.rows_in += len(batch)
                kept = []
                for out in step.process(batch):
                    if isinstance(out, Reject):
                        st.rejected[out.reason] += 1
                        rejects.add(out)
                    else:
                        kept.append(out)
                st.rows_out += len(kept)
                batch = kept
            writer.write(batch)
            bar.update(len(chunk))
        bar.close()
    return stats
