"""`max_reject_ratio`: fail a build, instead of publishing it, when too many rows were rejected.

    max_reject_ratio: 0.2                          # every stage: at most 20 % of its rows rejected
    max_reject_ratio: {synthesize: 0.1, load: 0.5}  # per stage (the manifest's stage names)
    sources: [{name: scans, ..., max_reject_ratio: 0.05}]   # per source, over all stages

A dead synthesis endpoint turns most generated rows into `connection_error` rejects; without a budget
the build still "succeeds" and replaces the previous good dataset. With one, the build stops before
the swap, so the old dataset stays where it was, and the message names the stage, the ratio and the
commonest reasons. A stage's ratio is its rejects over the rows it tried (`Step.attempts`); a source's
is its rejects (any stage) over the records it yielded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from vlmdata.config.errors import did_you_mean
from vlmdata.rows import BuildError
from vlmdata.steps.base import StageStats, Step


class RejectBudgetExceeded(BuildError):
    """More rows were rejected than `max_reject_ratio` allows; the build was not published."""


def _top(reasons: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in reasons.most_common(3))


def over_budget(*, limit: float | dict[str, float] | None, steps: list[Step], stats: list[StageStats],
                sources: dict[str, float], source_rejects: Counter[str], source_reads: Counter[str],
                source_reasons: dict[str, Counter[str]] | None = None) -> list[str]:
    """One line per stage or source over its `max_reject_ratio` (empty when all are within)."""
    lines: list[str] = []
    if limit is not None:
        for i, st in enumerate(stats):  # the plan's steps, then a `write` stage when the writer rejected rows
            cap = limit.get(st.stage) if isinstance(limit, dict) else limit
            rejected = sum(st.rejected.values())
            tried = max(steps[i].attempts(st) if i < len(steps) else st.rows_in, rejected)
            if cap is None or not tried or rejected / tried <= cap:
                continue
            lines.append(f"stage '{st.stage}': {rejected} of {tried} rows rejected ({rejected / tried:.1%} > "
                         f"max_reject_ratio {cap:g}; {_top(st.rejected)})")
    for name, cap in sources.items():
        read = max(source_reads.get(name, 0), source_rejects.get(name, 0))
        bad = source_rejects.get(name, 0)
        if read and bad / read > cap:
            reasons = (source_reasons or {}).get(name)
            lines.append(f"source '{name}': {bad} of {read} rows rejected ({bad / read:.1%} > "
                         f"sources[].max_reject_ratio {cap:g}" + (f"; {_top(reasons)})" if reasons else ")"))
    return lines


def check_budget(**kwargs: Any) -> None:
    """Raise RejectBudgetExceeded listing every stage and source over its ratio."""
    lines = over_budget(**kwargs)
    if lines:
        raise RejectBudgetExceeded("the build was stopped and not published (the previous output is kept): "
                                   + "; ".join(lines) + ". See the reasons above, fix the input or the endpoint, "
                                   "or raise max_reject_ratio.")


def unknown_stages(limit: float | dict[str, float] | None, steps: list[Step]) -> list[str]:
    """Problems for `max_reject_ratio` keys that name no stage of this build (with a did-you-mean)."""
    if not isinstance(limit, dict):
        return []
    names = [s.name for s in steps] + ["write"]
    return [f"max_reject_ratio.{k}: no stage '{k}' in this build{did_you_mean(k, names)} "
            f"(stages: {', '.join(names)})" for k in limit if k not in names]
