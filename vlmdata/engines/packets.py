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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vlmdata.rows import BuildError, Record, Reject
from vlmdata.sources import read_source
from vlmdata.steps.base import GlobalStep, Row, StageStats, Step
from vlmdata.steps.seen_scores import Observed, SeenScores


@dataclass
class Entry:
    """What one stage did to one batch: rows in and out, and its rejects in output order."""

    stage: int
    rows_in: int
    rows_out: int
    rejects: list[Reject] = field(default_factory=list)
    scores: Observed | None = None  # a scored filter's scores of the batch's rows, kept and rejected


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


def run(stage: int, outputs: Iterable[Row | Reject], *, rows_in: int, log: list[Entry],
        step: Step | None = None) -> list[Row]:
    """Split a step's outputs into kept rows and rejects, and log the stage's counts (and, for a scored
    filter, the scores it measured on both)."""
    kept: list[Row] = []
    rejects: list[Reject] = []
    for out in outputs:
        (rejects if isinstance(out, Reject) else kept).append(out)
    seen = getattr(step, "seen_scores", None)
    log.append(Entry(stage=stage, rows_in=rows_in, rows_out=len(kept), rejects=rejects,
                     scores=seen(kept, rejects) if seen is not None else None))
    return kept


def internal_reject(stage: str, item: Any, exc: BaseException) -> Reject:
    """The reject of a row on which a step raised something it did not expect (a bug or a wild input)."""
    if isinstance(item, Record):
        source, locator, row_id = item.source, item.locator, None
    elif isinstance(item, dict):
        source, locator, row_id = item.get("source", ""), (item.get("meta") or {}).get("locator", ""), item.get("id")
    else:
        source, locator, row_id = "", "", None
    message = str(exc)
    if len(message) > 500:
        message = message[:500] + "..."
    return Reject(source=str(source), locator=str(locator), reason="internal_error",
                  detail=f"{stage}: {type(exc).__name__}: {message}", stage=stage, row_id=row_id,
                  extra={"exception": type(exc).__name__})


def guarded(stage: str, fn: Callable[[list[Any]], Iterable[Any]], batch: list[Any]) -> list[Any]:
    """`list(fn(batch))`, or, when that raises, `fn` over each row alone: a row that still raises becomes
    an `internal_error` reject and the others keep their output. This is the engines' per-row boundary, so
    no step (nor a source's record) can kill a build over one row. `BuildError`s (a missing API key, a
    refused one) and interrupts stop the build as they should."""
    if len(batch) == 1:
        try:
            return list(fn(batch))
        except BuildError:
            raise
        except Exception as e:
            return [internal_reject(stage, batch[0], e)]
    pristine = [_copy(item) for item in batch]  # steps change rows in place: a retry starts from these
    try:
        return list(fn(batch))
    except BuildError:
        raise
    except Exception:
        pass
    out: list[Any] = []
    for item in pristine:
        out.extend(guarded(stage, fn, [item]))
    return out


def _copy(item: Any) -> Any:
    """A row as it was before a step ran (the top-level keys and `meta`/`fields`, which steps set)."""
    if not isinstance(item, dict):
        return item  # a Record: the load step does not change it
    out = dict(item)
    for key in ("meta", "fields"):
        if isinstance(out.get(key), dict):
            out[key] = dict(out[key])
    return out


def guarded_key(step: GlobalStep, rows: list[Row], log: list[Entry], stage: int) -> tuple[list[Row], Any]:
    """`step.key(rows)` for a barrier; a row whose key raises is rejected (and left out of the spill)."""
    try:
        return rows, step.key(rows)
    except BuildError:
        raise
    except Exception:
        pass
    import pyarrow as pa

    kept: list[Row] = []
    parts = []
    bad: list[Reject] = []
    for row in rows:
        try:
            parts.append(pa.table(step.key([row])))
            kept.append(row)
        except BuildError:
            raise
        except Exception as e:
            bad.append(internal_reject(step.name, row, e))
    log.append(Entry(stage=stage, rows_in=len(bad), rows_out=0, rejects=bad))
    if not parts:
        return [], None
    table = pa.concat_tables(parts, promote_options="default")
    return kept, {name: table.column(name) for name in table.column_names}


def run_steps(batch: list[Any], steps: list[tuple[int, Step]], log: list[Entry]) -> list[Any]:
    """Per-row steps (map and filter alike) over one batch, as the local engine runs them."""
    for i, step in steps:
        batch = run(i, guarded(step.name, step.process, batch), rows_in=len(batch), log=log, step=step)
    return batch


def guarded_records(name: str, records: Iterator[Any]) -> Iterator[Any]:
    """A source's records; if its reader raises, one `internal_error` reject says where, and the source
    ends there (a generator cannot go on after it raised; readers turn their own row errors into rejects)."""
    n = 0
    try:
        for rec in records:
            n += 1
            yield rec
    except BuildError:
        raise
    except Exception as e:
        message = str(e)[:500]
        yield Reject(source=name, locator=f"after item {n}", reason="internal_error",
                     detail=f"reading source '{name}' stopped: {type(e).__name__}: {message}", stage="load",
                     extra={"exception": type(e).__name__})


def source_chunks(plan: Any, *, limit: int | None, reads: Counter[str] | None = None,
                  on_chunk: Callable[[str, int], None] | None = None) -> Iterator[tuple[list[Any], list[Entry]]]:
    """Each source of `plan` in chunks of `batch_size`: (records, log); read errors ride along as stage-0
    rejects of their chunk. `reads` counts what each source yielded (records and rejects)."""
    for spec in plan.sources:
        for chunk in batched(guarded_records(spec.name, read_source(spec, limit=limit)), plan.batch_size):
            if reads is not None:
                reads[spec.name] += len(chunk)
            if on_chunk is not None:
                on_chunk(spec.name, len(chunk))
            bad = [x for x in chunk if isinstance(x, Reject)]
            log = [Entry(stage=0, rows_in=len(bad), rows_out=0, rejects=bad)] if bad else []
            yield ([x for x in chunk if not isinstance(x, Reject)] if bad else chunk), log


def absorb(log: list[Entry], *, stats: list[StageStats], rejects: Any) -> None:
    """Add a packet's entries to the funnel and its rejects to rejects.jsonl (`rejects.add`)."""
    for e in log:
        st = stats[e.stage]
        st.rows_in += e.rows_in
        st.rows_out += e.rows_out
        for r in e.rejects:
            st.rejected[r.reason] += 1
            rejects.add(r)
        if e.scores:
            if st.seen is None:
                st.seen = SeenScores()
            st.seen.add(e.scores)


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
