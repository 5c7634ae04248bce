"""Filters that measure a score per row and compare it with thresholds from the recipe.

A scored filter keeps or rejects like any `FilterStep`, and records what it measured: kept rows
carry `meta.scores.<name>` into the dataset (so a user can re-threshold later without rebuilding),
rejects carry `scores` and the failed `threshold` in rejects.jsonl. The HTML report draws each score's
distribution with its threshold line from these two places.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vlmdata.rows import Reject
from vlmdata.steps.base import FilterStep, Row

Check = tuple[str, str, float, str]  # (score name, "min" | "max", threshold, reject reason)


class ScoredFilter(FilterStep):
    """Subclasses give `checks` and `scores(row)`; rows whose scores are None (nothing to score) stay."""

    checks: list[Check]

    def scores(self, row: Row) -> dict[str, float] | None:
        raise NotImplementedError

    def report(self, state: Any = None) -> dict[str, Any]:
        """The thresholds, for the report's score distributions."""
        out: dict[str, dict[str, float]] = {}
        for name, side, limit, _ in self.checks:
            out.setdefault(name, {})[side] = limit
        return {"thresholds": out}

    def verdict(self, scores: dict[str, float]) -> tuple[str, float] | None:
        """(reason, threshold) of the first failed check, or None."""
        for name, side, limit, reason in self.checks:
            value = scores[name]
            if (side == "min" and value < limit) or (side == "max" and value > limit):
                return reason, limit
        return None

    def keep(self, row: Row) -> bool | str:
        scores = self.scores(row)
        bad = self.verdict(scores) if scores is not None else None
        return True if bad is None else bad[0]

    def process(self, batch: list[Any]) -> Iterator[Row | Reject]:
        for row in batch:
            scores = self.scores(row)
            bad = self.verdict(scores) if scores is not None else None
            if bad is None:
                if scores is not None:
                    meta = dict(row.get("meta") or {})
                    meta["scores"] = {**meta.get("scores", {}), **{k: round(v, 4) for k, v in scores.items()}}
                    row["meta"] = meta
                yield row
                continue
            reason, limit = bad
            meta = row.get("meta") or {}
            extra: dict[str, Any] = {"scores": {k: round(v, 4) for k, v in (scores or {}).items()},
                                     "threshold": limit}
            if row.get("images"):
                from vlmdata.report.html import thumbnail_uri

                extra["thumb"] = thumbnail_uri(row["images"][0], size=96)
            yield Reject(source=row.get("source", ""), locator=meta.get("locator", ""), reason=reason,
                         detail=f"{self.name}: {reason} ({', '.join(f'{k}={v:.4g}' for k, v in scores.items())}; "
                                f"limit {limit:g})" if scores else f"{self.name}: {reason}",
                         stage=self.name, row_id=row.get("id"), extra=extra)
