"""The Ray Data engine: the plan's very steps, run as Ray Data maps over packets (see packets.py).

    vlmdata build recipe.yaml --engine ray          # or `engine: {kind: ray, address: ...}` in the recipe

How each kind of step runs (the engine looks at a step's base class and `runs_on_driver`, never its name):
- per-row steps (`MapStep`, `FilterStep`): fused into one `Dataset.map` per run of them, one packet
  (= one batch) per call; their rejects travel in the packet's log;
- a `GlobalStep`: `key` runs in the map before it, the dataset is materialized (rows stay in Ray's
  object store), the driver reads only the small columns (keys, logs, row counts) in `seq` order,
  numbers the rows (`_idx`, as the local engine does), calls `fit` once, and `ray.put`s the state for
  the `apply` that opens the next map;
- a step with `runs_on_driver` (synthesize: one request cache, one concurrency and rate limit, one
  budget for the whole build) runs in the driver over the packets in `seq` order, exactly as in the
  local engine; its input and output stream through the driver.
The driver writes the packets' rows in `seq` order, so the output is the local engine's, row for row.
Ray is imported here only: `vlmdata` without the `ray` extra never imports it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vlmdata.engines.base import Engine, fit_barrier, numbered, segments
from vlmdata.engines.packets import (
    Entry,
    absorb,
    guarded,
    guarded_key,
    in_order,
    loads,
    packet,
    run,
    run_steps,
    source_chunks,
)
from vlmdata.engines.spec import RayEngine
from vlmdata.output.rejects import RejectLog
from vlmdata.output.writer import ArrowWriter
from vlmdata.plan import Plan
from vlmdata.steps.base import GlobalStep, StageStats, Step


@dataclass
class Head:
    """A global step's `apply`, waiting for the next map: its stage, the step and `ray.put((state, offsets))`."""

    stage: int
    step: GlobalStep
    ref: Any


@dataclass
class StageFn:
    """One Ray map over packets: `apply` of the previous barrier, per-row steps, `key` of the next barrier."""

    head: Head | None
    steps: list[tuple[int, Step]]
    key_step: GlobalStep | None
    key_stage: int = 0  # the barrier's index in the plan (its funnel entry)

    def __call__(self, rec: dict[str, Any]) -> dict[str, Any]:
        import ray

        seq = int(rec["seq"])
        rows = loads(rec["rows"])
        log: list[Entry] = loads(rec.get("log"), default=[])
        if self.head is not None:
            state, offsets = ray.get(self.head.ref)
            for k, row in enumerate(rows):
                row["_idx"] = offsets[seq] + k
            step = self.head.step
            rows = run(self.head.stage, guarded(step.name, lambda part: step.apply(part, state), rows), rows_in=0,
                       log=log)
        rows = run_steps(rows, self.steps, log)
        keys = None
        if self.key_step is not None and rows:
            rows, cols = guarded_key(self.key_step, rows, log, self.key_stage)
            keys = pa.table(cols) if rows else None
        return packet(seq=seq, rows=rows, log=log, keys=keys)


def _connect(spec: RayEngine, *, progress: bool) -> bool:
    """Join the running Ray, `spec.address`, `RAY_ADDRESS`, or start a local one; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    address = spec.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=progress)
    else:
        ray.init(num_cpus=spec.num_cpus, include_dashboard=False, log_to_driver=progress)
    return True


def _put(packets: Iterator[dict[str, Any]]) -> Any:
    """Packets → a Ray dataset, one block per packet, streamed into the object store (not held here)."""
    import ray

    refs = [ray.put(pa.table({k: [v] for k, v in p.items()},
                             schema=pa.schema([("seq", pa.int64()), ("n", pa.int64()), ("rows", pa.large_binary()),
                                               ("log", pa.large_binary()), ("keys", pa.large_binary())])))
            for p in packets]
    if not refs:
        refs = [ray.put(pa.table({"seq": pa.array([], pa.int64()), "n": pa.array([], pa.int64()),
                                  "rows": pa.array([], pa.large_binary()), "log": pa.array([], pa.large_binary()),
                                  "keys": pa.array([], pa.large_binary())}))]
    return ray.data.from_arrow_refs(refs)


def _sources(plan: Plan, *, limit: int | None, reads: Counter[str]) -> Iterator[dict[str, Any]]:
    """The local engine's batches: each source in chunks of `batch_size`; read errors are stage-0 rejects."""
    for seq, (rows, log) in enumerate(source_chunks(plan, limit=limit, reads=reads)):
        yield packet(seq=seq, rows=rows, log=log)


def _barrier(ds: Any, stage: int, step: GlobalStep, *, stats: list[StageStats],
             rejects: RejectLog) -> tuple[Any, Head]:
    """Materialize, number the rows in `seq` order, `fit` once; returns the rows (logs dropped) and the Head."""
    import ray

    ds = ds.materialize()
    small = sorted(ds.select_columns(["seq", "n", "log", "keys"]).take_all(), key=lambda r: r["seq"])
    offsets: dict[int, int] = {}
    tables = []
    n = 0
    for rec in small:
        absorb(loads(rec["log"], default=[]), stats=stats, rejects=rejects)
        offsets[int(rec["seq"])] = n
        if rec["keys"] is not None:
            t = loads(rec["keys"])
            tables.append(numbered(t, start=n, rows=t.num_rows))
        n += int(rec["n"])
    state = fit_barrier(step, tables, rows=n, stats=stats[stage])
    return ds.drop_columns(["log", "keys"]), Head(stage=stage, step=step, ref=ray.put((state, offsets)))


def _on_driver(ds: Any, stage: int, step: Step) -> Any:
    """Run `step` here over the packets in `seq` order (one cache, one rate limit); logs travel on."""
    def packets() -> Iterator[dict[str, Any]]:
        for rec in in_order(ds.iter_rows()):
            log = loads(rec["log"], default=[])
            rows = loads(rec["rows"])
            rows = run(stage, guarded(step.name, step.process, rows), rows_in=len(rows), log=log, step=step)
            yield packet(seq=int(rec["seq"]), rows=rows, log=log)

    return _put(packets())


class RayRunner(Engine):
    """The plan on Ray Data (`spec`: where the cluster is); Ray is imported when a build runs, not before."""

    def __init__(self, *, spec: RayEngine) -> None:
        self.spec = spec

    def execute(self, plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None, progress: bool,
                stats: list[StageStats]) -> None:
        try:
            import ray
            from ray.data import DataContext
        except ImportError as e:
            raise ImportError(f"engine kind 'ray' needs Ray Data: pip install 'vlmdata[ray]' ({e})") from None

        started = _connect(self.spec, progress=progress)
        ctx = DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        ctx.execution_options.preserve_order = True  # packets come back in seq order: `in_order` buffers nothing
        ctx.enable_progress_bars = progress
        try:
            self._stream(plan, writer=writer, rejects=rejects, limit=limit, stats=stats)
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
            if started:
                ray.shutdown()

    def _stream(self, plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None,
                stats: list[StageStats]) -> None:
        """One Ray map per segment; barriers and driver steps in between; the rows written in `seq` order."""
        ds = _put(_sources(plan, limit=limit, reads=rejects.reads))
        head: Head | None = None
        for seg in segments(plan):
            if seg.barrier is not None:
                i, step = seg.barrier
                ds, head = _barrier(ds.map(StageFn(head=head, steps=seg.steps, key_step=step, key_stage=i)), i, step,
                                    stats=stats, rejects=rejects)
            elif seg.driver is not None:
                ds = _on_driver(ds.map(StageFn(head=head, steps=seg.steps, key_step=None)), *seg.driver)
                head = None
            else:
                for rec in in_order(ds.map(StageFn(head=head, steps=seg.steps, key_step=None)).iter_rows()):
                    absorb(loads(rec["log"], default=[]), stats=stats, rejects=rejects)
                    rows = loads(rec["rows"])
                    if rows:
                        writer.write(rows)
