"""The local engine: stream each source in batches through the steps into the writer.

Per-row steps (map, filter) stream: a few batches are alive at a time. With `workers` > 1 each run of
per-row steps (plus the `key` of the global step right after it) runs in forked worker processes, a
batch per task, results taken back in order with a bounded number in flight (engines/pool.py), so the
output is byte-identical to one process and memory stays flat. A step with `runs_on_driver`
(synthesize: one cache, one rate limit, one budget) always runs here, in order.

A `GlobalStep` is a barrier: the engine collects `key` of each batch while spilling the rows (pickled
where they were produced, in the worker) to a file under the staging folder, calls `fit` once on the
compact keys, then replays the spilled rows through `apply` and the steps after it, numbering them
(`_idx`) in spill order. So memory holds the keys (a few bytes a row), never all rows. Every Reject
from a source or a step is counted under its stage and appended to rejects.jsonl, in batch order.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from vlmdata.engines.base import Engine, fit_barrier, numbered, segments
from vlmdata.engines.packets import Entry, absorb, guarded, guarded_key, run_steps, source_chunks
from vlmdata.engines.pool import WorkerPool
from vlmdata.output.rejects import RejectLog
from vlmdata.output.writer import ArrowWriter
from vlmdata.plan import Plan
from vlmdata.rows import Reject
from vlmdata.steps.base import GlobalStep, StageStats, Step


@dataclass
class Batch:
    """Rows between stages, with the funnel entries (and rejects) not yet absorbed by the driver."""

    rows: list[Any]
    log: list[Entry] = field(default_factory=list)


@dataclass
class Done:
    """A segment's result for one batch. Before a barrier `rows` is None and `blob` holds the pickled
    rows (written to the spill as they are) and `keys` the barrier's `key` columns."""

    log: list[Entry]
    n: int
    rows: list[Any] | None = None
    blob: bytes | None = None
    keys: dict[str, Any] | None = None


@dataclass
class SegmentTask:
    """A run of per-row steps and the `key` of the barrier after it: one worker task per batch."""

    steps: list[tuple[int, Step]]
    key_step: GlobalStep | None
    key_stage: int = 0  # the barrier's index in the plan (its funnel entry)

    def __call__(self, batch: Batch) -> Done:
        log = batch.log
        rows = run_steps(batch.rows, self.steps, log)
        if self.key_step is None:
            return Done(log=log, n=len(rows), rows=rows)
        keys = None
        if rows:
            rows, keys = guarded_key(self.key_step, rows, log, self.key_stage)
        return Done(log=log, n=len(rows), blob=pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL), keys=keys)


def _source_batches(plan: Plan, *, limit: int | None, progress: bool, reads: Counter[str]) -> Iterator[Batch]:
    """Each source in chunks of `batch_size`; read errors ride along as stage-0 rejects of their batch."""
    bars: dict[str, Any] = {}

    def tick(name: str, n: int) -> None:
        if name not in bars:
            for bar in bars.values():
                bar.close()
            bars[name] = tqdm(desc=f"load {name}", unit="row", disable=not progress, leave=False)
        bars[name].update(n)

    for rows, log in source_chunks(plan, limit=limit, reads=reads, on_chunk=tick):
        yield Batch(rows=rows, log=log)
    for bar in bars.values():
        bar.close()


def _segments(plan: Plan) -> list[tuple[SegmentTask, bool]]:
    """The shared segments as worker tasks (and whether each may run in workers): a driver step becomes
    a task of its own that runs here."""
    out: list[tuple[SegmentTask, bool]] = []
    for seg in segments(plan):
        if seg.driver is not None:
            if seg.steps:
                out.append((SegmentTask(steps=seg.steps, key_step=None), True))
            out.append((SegmentTask(steps=[seg.driver], key_step=None), False))
        elif seg.barrier is not None:
            out.append((SegmentTask(steps=seg.steps, key_step=seg.barrier[1], key_stage=seg.barrier[0]), bool(seg.steps)))
        else:
            out.append((SegmentTask(steps=seg.steps, key_step=None), bool(seg.steps)))
    return out


def _barrier(results: Iterator[Done], *, stage: int, step: GlobalStep, spill: Path, progress: bool,
             stats: list[StageStats], rejects: RejectLog) -> Iterator[Batch]:
    """Spill rows + collect keys, fit once, then replay the spilled rows (numbered) through `apply`."""
    tables = []
    n = 0
    with spill.open("wb") as f:
        for done in results:
            absorb(done.log, stats=stats, rejects=rejects)
            if not done.n:
                continue
            tables.append(numbered(pa.table(done.keys) if done.keys else None, start=n, rows=done.n))
            f.write(done.blob or b"")
            n += done.n
    state = fit_barrier(step, tables, rows=n, stats=stats[stage])
    bar = tqdm(desc=step.name, total=n, unit="row", disable=not progress, leave=False)
    i = 0
    with spill.open("rb") as f:
        while True:
            try:
                rows = pickle.load(f)
            except EOFError:
                break
            for row in rows:
                row["_idx"] = i
                i += 1
            bar.update(len(rows))
            log: list[Entry] = []
            yield Batch(rows=_apply(step, stage, rows, state, log), log=log)
    bar.close()
    spill.unlink(missing_ok=True)


def _apply(step: GlobalStep, stage: int, rows: list[Any], state: Any, log: list[Entry]) -> list[Any]:
    """`apply` over one replayed batch; its rows_in were counted at the barrier, so the entry adds 0."""
    kept: list[Any] = []
    rejects: list[Reject] = []
    for out in guarded(step.name, lambda part: step.apply(part, state), rows):
        (rejects if isinstance(out, Reject) else kept).append(out)
    log.append(Entry(stage=stage, rows_in=0, rows_out=len(kept), rejects=rejects))
    return kept


def _absorbed(results: Iterator[Done], stats: list[StageStats], rejects: RejectLog) -> Iterator[list[Any]]:
    for done in results:
        absorb(done.log, stats=stats, rejects=rejects)
        if done.rows:
            yield done.rows


class LocalRunner(Engine):
    """`workers` processes for per-row steps (1: all in this process); barrier rows spill under `spill_dir`."""

    def __init__(self, *, workers: int, spill_dir: Path) -> None:
        self.workers = workers
        self.spill_dir = spill_dir

    def execute(self, plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None, progress: bool,
                stats: list[StageStats]) -> None:
        tasks = _segments(plan)
        pool = WorkerPool.start(workers=self.workers)
        ids = {id(seg): pool.register(seg) for seg, parallel in tasks if parallel} if pool is not None else {}
        try:
            stream: Iterator[Batch] = _source_batches(plan, limit=limit, progress=progress, reads=rejects.reads)
            for seg, _ in tasks:
                results: Iterator[Done] = (pool.map(ids[id(seg)], stream) if pool is not None and id(seg) in ids
                                           else map(seg, stream))
                stream = self._after(seg, results, stats=stats, rejects=rejects, progress=progress)
            for batch in stream:
                writer.write(batch.rows)
        except BaseException:
            if pool is not None:
                pool.close(abort=True)  # a failed or interrupted build ends its workers now
                pool = None
            raise
        finally:
            if pool is not None:
                pool.close()

    def _after(self, seg: SegmentTask, results: Iterator[Done], *, stats: list[StageStats], rejects: RejectLog,
               progress: bool) -> Iterator[Batch]:
        """A segment's results as the next segment's input: through its barrier when it ends in one."""
        if seg.key_step is None:
            return (Batch(rows=rows) for rows in _absorbed(results, stats, rejects))
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        j, g = seg.key_stage, seg.key_step
        return _barrier(results, stage=j, step=g, spill=self.spill_dir / f"{j:02d}-{g.name}.pkl", progress=progress,
                        stats=stats, rejects=rejects)
