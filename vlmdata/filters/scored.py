"""Filters that measure a score per row and compare it with thresholds from the recipe.

A scored filter keeps or rejects like any `FilterStep`, and records what it measured: kept rows
carry `meta.scores.<name>` into the dataset (so a user can re-threshold later without rebuilding),
rejects carry `scores` and the failed `threshold` in rejects.jsonl, and a thumbnail when they lie
near the threshold (or are in a small sample), so rejects.jsonl stays small on a large build. The HTML report draws each score's
distribution with its threshold line from these two places.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vlmdata.media.thumbnails import thumbnail_uri
from vlmdata.rows import Reject
from vlmdata.steps.base import FilterStep, Row

Check = tuple[str, str, float, str]  # (score name, "min" | "max", threshold, reject reason)
NEAR = 0.1  # a reject within 10 % of its threshold carries a thumbnail (for the report's "just below" row)
SAMPLE = 32  # ... and so does one reject in 32 (by id hash), so the report has some to show


def _shown(row_id: str, scores: dict[str, float], limit: float, checks: list[Check]) -> bool:
    """Whether a reject carries a thumbnail: decided by the row alone (its id and scores), so
    rejects.jsonl is the same whatever the batch size or the number of workers."""
    import hashlib

    name = next((c[0] for c in checks if c[2] == limit and c[0] in scores), None)
    if name is not None and abs(scores[name] - limit) <= NEAR * max(abs(limit), 1e-9):
        return True
    return int.from_bytes(hashlib.blake2b(row_id.encode(), digest_size=4).digest(), "little") % SAMPLE == 0


THRESHOLDS = "thresholds"  # the key of a scored filter's report: {score: {side: limit}}


def thresholds_of(details: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A stage's manifest details → its scored filter's thresholds ({} for any other stage)."""
    return details.get(THRESHOLDS) or {}


class ScoredFilter(FilterStep):
    """Subclasses give `checks` and `scores(row)`; rows whose scores are None (nothing to score) stay."""

    checks: list[Check]

    def scores(self, row: Row) -> dict[str, float] | None:
        raise NotImplementedError

    def report(self, state: Any = None) -> dict[str, Any]:
        """The thresholds, for the report's score distributions (read back by `thresholds_of`)."""
        out: dict[str, dict[str, float]] = {}
        for name, side, limit, _ in self.checks:
            out.setdefault(name, {})[side] = limit
        return {THRESHOLDS: out}

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
            if row.get("images") and _shown(row.get("id") or "", scores or {}, limit, self.checks):
                extra["thumb"] = thumbnail_uri(row["images"][0], size=96)
            yield Reject(source=row.get("source", ""), locator=meta.get("locator", ""), reason=reason,
                         detail=f"{self.name}: {reason} ({', '.join(f'{k}={v:.4g}' for k, v in scores.items())}; "
                                f"limit {limit:g})" if scores else f"{self.name}: {reason}",
                         stage=self.name, row_id=row.get("id"), extra=extra)
