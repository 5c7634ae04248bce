"""What every engine shares: the one method `build` calls, and the bookkeeping around the steps.

An engine runs a plan's steps over batches into the writer and returns the funnel. It decides only
*where* each batch runs; what runs is the same everywhere, so the output never depends on the engine:
- the plan is cut into the same segments (`segments`): a run of per-row steps, ended by a global
  step (a barrier: its `key` closes the segment, `fit` runs once over all keys), by a step that runs
  on the driver (synthesize: one cache, one rate limit, one budget), or by the end of the plan;
- a barrier numbers the rows (`_idx`) in batch order and fits once (`fit_barrier`);
- the funnel has one StageStats per step, and per-row steps add their `report()` at the end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vlmdata.output.rejects import RejectLog
from vlmdata.output.writer import ArrowWriter
from vlmdata.plan import Plan
from vlmdata.steps.base import GlobalStep, StageStats, Step


@dataclass(frozen=True)
class Segment:
    """Per-row `steps` (with their plan index) and what ends the run: a barrier, a driver step, or nothing."""

    steps: list[tuple[int, Step]]
    barrier: tuple[int, GlobalStep] | None = None
    driver: tuple[int, Step] | None = None


def segments(plan: Plan) -> list[Segment]:
    """The plan cut at every global step and every step that runs on the driver; the last one ends the plan."""
    out: list[Segment] = []
    run: list[tuple[int, Step]] = []
    for i, step in enumerate(plan.steps):
        if isinstance(step, GlobalStep):
            out.append(Segment(steps=run, barrier=(i, step)))
            run = []
        elif step.runs_on_driver:
            out.append(Segment(steps=run, driver=(i, step)))
            run = []
        else:
            run.append((i, step))
    out.append(Segment(steps=run))
    return out


def numbered(keys: pa.Table | None, *, start: int, rows: int) -> pa.Table:
    """A batch's key table (None or no columns: the step keys nothing) with `_idx` = start, start + 1, ...:
    each row's position in batch order, which `fit` and `apply` agree on."""
    idx = pa.array(range(start, start + rows), pa.int64())
    if keys is None or not keys.num_columns:
        return pa.table({"_idx": idx})
    return keys.append_column("_idx", idx)


def fit_barrier(step: GlobalStep, tables: list[pa.Table], *, rows: int, stats: StageStats) -> Any:
    """Fit `step` once over every batch's numbered keys (`tables` is emptied: the keys are not kept);
    counts the `rows` that reached it and records its report."""
    stats.rows_in += rows
    keys = pa.concat_tables(tables, promote_options="default") if tables else pa.table({"_idx": pa.array([], pa.int64())})
    tables.clear()
    state = step.fit(keys)
    del keys
    stats.details.update(step.report(state))
    return state


class Engine(ABC):
    """Runs a plan. `run` is the whole interface; subclasses implement `execute` over the shared funnel."""

    def run(self, plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None,
            progress: bool) -> list[StageStats]:
        """Run every step, write the rows, log the rejects; returns the funnel (one StageStats per step)."""
        stats = [StageStats(stage=step.name) for step in plan.steps]
        self.execute(plan, writer=writer, rejects=rejects, limit=limit, progress=progress, stats=stats)
        for step, st in zip(plan.steps, stats, strict=True):
            if not isinstance(step, GlobalStep):
                st.details.update(step.report())
        return stats

    @abstractmethod
    def execute(self, plan: Plan, *, writer: ArrowWriter, rejects: RejectLog, limit: int | None, progress: bool,
                stats: list[StageStats]) -> None:
        """Stream the plan's segments into `writer`, adding every batch's funnel entries to `stats`."""
