"""Packets: how an engine carries a batch between processes, with the funnel log of what happened to it.

The helpers (`Entry`, `run_steps`, `absorb`, `batched`) are shared by the local engine's worker processes
and the Ray engine; the packet dict itself is the Ray engine's row.

A packet is one Ray Data row: `seq` (its batch number at load), `n` (rows), `rows` (the pickled list of
row dicts), `log` (the pickled funnel entries of the stages it went through since the last barrier) and
`keys` (the pickled `key` table of the global step ahead, if any). Why this shape:

- batch boundaries are the local engine's (each source read in chunks of `batch_size`), so a step whose
  output depends on its batch (synthesize yields a batch's source rows, then its new rows) gives the same
  rows in the same order, and (`seq`, position) is the local engine's row order: `_idx`, splits, ids
  and manifests come out identical;
- rows are pickled, not typed columns: they hold bytes, nested lists and free-form dicts (`fields`,
  `context`, `meta`) whose types differ between sources and batches; pickle round-trips them exactly
  (ints stay ints, tuples stay tuples, None stays None) where Arrow or pandas would need one schema;
- rejects never leave the packet until the driver reads it in `seq` order, so rejects.jsonl gets the
  local engine's lines in the local engine's order.
Ray Data still parallelises: one packet is one task's work, and packets stay in Ray's object store.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vlmdata.rows import Reject
from vlmdata.steps.base import Row, StageStats, Step


@dataclass
class Entry:
    """What one stage did to one batch: rows in and out, and its rejects in output order."""

    stage: int
    rows_in: int
    rows_out: int
    rejects: list[Reject] = field(default_factory=list)


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes | None, default: Any = None) -> Any:
    return default if blob is None else pickle.loads(blob)


def packet(*, seq: int, rows: list[Any], log: list[Entry], keys: Any = None) -> dict[str, Any]:
    return {"seq": seq, "n": len(rows), "rows": dumps(rows), "log": dumps(log),
            "keys": None if keys is None else dumps(keys)}


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(stage: int, outputs: Iterable[Row | Reject], *, rows_in: int, log: list[Entry]) -> list[Row]:
    """Split a step's outputs into kept rows and rejects, and log the stage's counts."""
    kept: list[Row] = []
    rejects: list[Reject] = []
    for out in outputs:
        (rejects if isinstance(out, Reject) else kept).append(out)
    log.append(Entry(stage=stage, rows_in=rows_in, rows_out=len(kept), rejects=rejects))
    return kept


def run_steps(batch: list[Any], steps: list[tuple[int, Step]], log: list[Entry]) -> list[Any]:
    """Per-row steps (map and filter alike) over one batch, as the local engine runs them."""
    for i, step in steps:
        batch = run(i, step.process(batch), rows_in=len(batch), log=log)
    return batch


def absorb(log: list[Entry], *, stats: list[StageStats], rejects: Any) -> None:
    """Add a packet's entries to the funnel and its rejects to rejects.jsonl (`rejects.add`)."""
    for e in log:
        st = stats[e.stage]
        st.rows_in += e.rows_in
        st.rows_out += e.rows_out
        for r in e.rejects:
            st.rejected[r.reason] += 1
            rejects.add(r)


def in_order(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Packets by `seq` 0, 1, 2, ... whatever order they arrive in (usually already in order)."""
    pending: dict[int, dict[str, Any]] = {}
    nxt = 0
    for rec in records:
        pending[int(rec["seq"])] = rec
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1
    if pending:
        raise RuntimeError(f"ray engine: packets {sorted(pending)[:5]} arrived without packet {nxt}")
