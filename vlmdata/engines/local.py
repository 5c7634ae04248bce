"""The local engine: stream each source in batches through the steps into the writer.

Per-row steps (map, filter) stream: one batch is alive at a time. A `GlobalStep` is a barrier: the
engine runs `key` on each batch while spilling the rows to a file under the staging folder, calls
`fit` once on the compact keys, then replays the spilled rows through `apply` and the steps after it.
So memory holds the keys (a few bytes a row), never all rows. Every Reject from a source or a step is
counted under its stage and appended to rejects.jsonl at once.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from vlmdata.plan import Plan
from vlmdata.rows import Record, Reject
from vlmdata.sources import read_source
from vlmdata.steps.base import GlobalStep, StageStats, Step
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


def _keep(outputs: Iterable[Any], st: StageStats, rejects: RejectLog) -> list[Any]:
    kept = []
    for out in outputs:
        if isinstance(out, Reject):
            st.rejected[out.reason] += 1
            rejects.add(out)
        else:
            kept.append(out)
    st.rows_out += len(kept)
    return kept


def _source_batches(plan: Plan, *, first: StageStats, rejects: RejectLog, limit: int | None,
                    progress: bool) -> Iterator[list[Record]]:
    from tqdm.auto import tqdm

    for spec in plan.sources:
        bar = tqdm(desc=f"load {spec.name}", unit="row", disable=not progress, leave=False)
        for chunk in _batched(read_source(spec, limit=limit), plan.batch_size):
            batch = []
            for item in chunk:
                if isinstance(item, Reject):
                    first.rows_in += 1
                    first.rejected[item.reason] += 1
                    rejects.add(item)
                else:
                    batch.append(item)
            bar.update(len(chunk))
            yield batch
        bar.close()


def _map_steps(batches: Iterator[list[Any]], steps: list[Step], stats: list[StageStats],
               rejects: RejectLog) -> Iterator[list[Any]]:
    for batch in batches:
        for step, st in zip(steps, stats, strict=True):
            st.rows_in += len(batch)
            batch = _keep(step.process(batch), st, rejects)
        if batch:
            yield batch


def _barrier(batches: Iterator[list[Any]], step: GlobalStep, st: StageStats, rejects: RejectLog,
             spill: Path, progress: bool) -> Iterator[list[Any]]:
    """Spill rows + collect keys, fit once, then replay the spilled rows through `apply`."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    tables = []
    n = 0
    with spill.open("wb") as f:
        for batch in batches:
            for row in batch:
                row["_idx"] = n
                n += 1
            cols = step.key(batch)
            cols["_idx"] = [r["_idx"] for r in batch]
            tables.append(pa.table(cols))
            pickle.dump(batch, f, protocol=pickle.HIGHEST_PROTOCOL)
    st.rows_in += n
    keys = pa.concat_tables(tables, promote_options="default") if tables else pa.table({"_idx": pa.array([], pa.int64())})
    state = step.fit(keys)
    del keys, tables
    st.details.update(step.report(state))
    bar = tqdm(desc=step.name, total=n, unit="row", disable=not progress, leave=False)
    with spill.open("rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                break
            bar.update(len(batch))
            kept = _keep(step.apply(batch, state), st, rejects)
            if kept:
                yield kept
    bar.close()
    spill.unlink(missing_ok=True)


def run_local(plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None, progress: bool,
              spill_dir: Path) -> list[StageStats]:
    """Run the plan; returns the funnel (one StageStats per step, in order)."""
    stats = [StageStats(stage=step.name) for step in plan.steps]
    stream: Iterator[list[Any]] = _source_batches(plan, first=stats[0], rejects=rejects, limit=limit, progress=progress)
    i = 0
    while i < len(plan.steps):
        j = next((k for k in range(i, len(plan.steps)) if isinstance(plan.steps[k], GlobalStep)), len(plan.steps))
        stream = _map_steps(stream, plan.steps[i:j], stats[i:j], rejects)
        if j < len(plan.steps):
            spill_dir.mkdir(parents=True, exist_ok=True)
            g = plan.steps[j]
            assert isinstance(g, GlobalStep)
            stream = _barrier(stream, g, stats[j], rejects, spill_dir / f"{j:02d}-{g.name}.pkl", progress)
        i = j + 1
    for batch in stream:
        writer.write(batch)
    for step, st in zip(plan.steps, stats, strict=True):
        if not isinstance(step, GlobalStep):
            st.details.update(step.report())
    return stats
