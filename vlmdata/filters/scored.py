"""Filters that measure a score per row and compare it with thresholds from the recipe.

A scored filter keeps or rejects like any `FilterStep`, and records what it measured: kept rows
carry `meta.scores.<name>` into the dataset (so a user can re-threshold later without rebuilding),
rejects carry `scores` and the failed `threshold` in rejects.jsonl, and a thumbnail when they lie
near the threshold, are among their batch's nearest to it, or are in a small sample, so rejects.jsonl
stays small on a large build. The HTML report draws each score's
distribution with its threshold line from what the filter saw: each batch's scores, kept and rejected,
travel with the batch's funnel entry (`seen_scores`) into the manifest (steps/seen_scores.py).
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
SHOWN = 4  # ... and the 4 of each batch nearest each threshold they failed (the report shows 4 a side)


def _shown(row_id: str, scores: dict[str, float], limit: float, checks: list[Check]) -> bool:
    """Whether a reject carries a thumbnail by the row alone (its id and scores); `_nearest_rejects`
    adds its batch's nearest to the line. Batches do not depend on the number of workers, so neither
    does rejects.jsonl."""
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

    def seen_scores(self, kept: list[Row], rejects: list[Reject]) -> dict[str, tuple[list[float], list[float]]]:
        """The engines' hook (engines/packets.run): this batch's scores, of the rows kept (`meta.scores`)
        and of those this filter rejected (`scores`), so the report's histograms cover every row scored."""
        names = dict.fromkeys(c[0] for c in self.checks)
        out: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
        for row in kept:
            for name, value in ((row.get("meta") or {}).get("scores") or {}).items():
                if name in out:
                    out[name][0].append(float(value))
        for r in rejects:
            if r.stage == self.name and r.extra:
                for name, value in (r.extra.get("scores") or {}).items():
                    if name in out:
                        out[name][1].append(float(value))
        return {n: v for n, v in out.items() if v[0] or v[1]}

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
        verdicts = []
        for row in batch:
            scores = self.scores(row)
            verdicts.append((scores, self.verdict(scores) if scores is not None else None))
        nearest = _nearest_rejects(verdicts, self.checks)
        for pos, (row, (scores, bad)) in enumerate(zip(batch, verdicts, strict=True)):
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
            if row.get("images") and (pos in nearest or _shown(row.get("id") or "", scores or {}, limit, self.checks)):
                extra["thumb"] = thumbnail_uri(row["images"][0], size=96)
            yield Reject(source=row.get("source", ""), locator=meta.get("locator", ""), reason=reason,
                         detail=f"{self.name}: {reason} ({', '.join(f'{k}={v:.4g}' for k, v in scores.items())}; "
                                f"limit {limit:g})" if scores else f"{self.name}: {reason}",
                         stage=self.name, row_id=row.get("id"), extra=extra)


def _nearest_rejects(verdicts: list[tuple[dict[str, float] | None, tuple[str, float] | None]],
                     checks: list[Check]) -> set[int]:
    """Positions of the batch's SHOWN rejects nearest each failed threshold (ties: first in the batch).

    The build's SHOWN rejects nearest a threshold are each among the SHOWN nearest of their own batch, so
    the report's "just below the line" always has its thumbnails; batches are the same with any number of
    workers, so rejects.jsonl is too."""
    by_reason: dict[str, list[tuple[float, int]]] = {}
    for k, (scores, bad) in enumerate(verdicts):
        if bad is None or scores is None:
            continue
        reason, limit = bad
        name = next(c[0] for c in checks if c[3] == reason and c[2] == limit)
        by_reason.setdefault(reason, []).append((abs(scores[name] - limit), k))
    return {k for found in by_reason.values() for _, k in sorted(found)[:SHOWN]}
