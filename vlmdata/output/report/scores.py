"""The report's score section: for each scored filter (clip_score, image_quality, text_quality), the
distribution of each score with its threshold line, and thumbnails of the rows just below the
threshold (rejected) and just above it (kept), so a user can see whether the line is in the right place.

The distribution is that of every row the filter scored, before it cut (kept and rejected, stacked):
the filters record it in the manifest (`scores_seen`, steps/seen_scores.py), because the dataset holds
only the rows that also survived the later stages. Thumbnails: the rejects nearest the line (their
thumbnails are in rejects.jsonl) and the dataset's rows nearest it (`meta.scores`). Thresholds come from
the filter's manifest details. Two streaming passes over the dataset (metadata, then the images of the
few rows shown), so memory stays flat.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from vlmdata.filters.scored import thresholds_of
from vlmdata.media.thumbnails import thumbnail_uri
from vlmdata.output.arrow_io import iter_batches, splits

SHOWN = 4  # thumbnails on each side of a threshold


def _e(value: Any) -> str:
    return html.escape(str(value))


def _hist(kept: list[float], rejected: list[float], *, bins: int = 60) -> dict[str, Any]:
    """The manifest's histogram shape (steps/seen_scores.py) from raw values: manifests written before
    the filters recorded what they saw have only the dataset's and the rejects' scores."""
    values = np.array(kept + rejected, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    hi = hi if hi > lo else lo + 1.0
    return {"lo": lo, "hi": hi, "kept": np.histogram(kept, bins=bins, range=(lo, hi))[0].tolist(),
            "rejected": np.histogram(rejected, bins=bins, range=(lo, hi))[0].tolist()}


def _histogram(hist: dict[str, Any], limit: float, *, width: int = 520, height: int = 120) -> str:
    """An inline SVG histogram, kept rows (blue) under rejected ones (orange), with a red line at `limit`."""
    kept, rejected = hist["kept"], hist["rejected"]
    bins = len(kept)
    lo, hi = float(min(hist["lo"], limit)), float(max(hist["hi"], limit))
    if hi <= lo:
        hi = lo + 1.0
    step = (hist["hi"] - hist["lo"]) / bins
    top = max(max(k + r for k, r in zip(kept, rejected, strict=True)), 1)
    bw = max(width * step / (hi - lo), 1.0)
    bars = []
    for i, (k, r) in enumerate(zip(kept, rejected, strict=True)):
        x = width * (hist["lo"] + i * step - lo) / (hi - lo)
        hk, hr = height * k / top, height * r / top
        if k:
            bars.append(f"<rect x='{x:.1f}' y='{height - hk:.1f}' width='{max(bw - 1, 0.5):.1f}' height='{hk:.1f}' "
                        f"fill='#4c78a8'><title>{k} kept</title></rect>")
        if r:
            bars.append(f"<rect x='{x:.1f}' y='{height - hk - hr:.1f}' width='{max(bw - 1, 0.5):.1f}' "
                        f"height='{hr:.1f}' fill='#f58518'><title>{r} rejected</title></rect>")
    x = width * (limit - lo) / (hi - lo)
    line = f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height}' stroke='#e45756' stroke-width='2'/>"
    axis = (f"<text x='0' y='{height + 14}' font-size='11'>{lo:.3g}</text>"
            f"<text x='{width}' y='{height + 14}' font-size='11' text-anchor='end'>{hi:.3g}</text>"
            f"<text x='{x:.1f}' y='{height + 14}' font-size='11' text-anchor='middle' fill='#e45756'>{limit:.3g}</text>")
    return f"<svg width='{width}' height='{height + 18}' role='img'>{''.join(bars)}{line}{axis}</svg>"


def _seen(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, score) → what the filter saw (steps/seen_scores.py), from the manifest."""
    return {(st["stage"], name): value for st in manifest.get("stages", [])
            for name, value in ((st.get("details") or {}).get("scores_seen") or {}).items()}


def _thresholds(manifest: dict[str, Any]) -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(stage, score) → [(side, limit)] from the scored filters' manifest details."""
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for st in manifest.get("stages", []):
        for name, sides in thresholds_of(st.get("details") or {}).items():
            out[(st["stage"], name)] = [(side, float(v)) for side, v in sides.items()]
    return out


def score_section(out_dir: Path, manifest: dict[str, Any]) -> str:
    wanted = _thresholds(manifest)
    seen = _seen(manifest)
    if not wanted:
        return "<p class='muted'>No scored filter ran.</p>"
    stage_of = {}
    for stage, name in wanted:
        stage_of.setdefault(name, []).append(stage)
    kept: dict[str, list[tuple[float, str, str]]] = {name: [] for name in stage_of}  # (score, split, id)
    rejected: dict[tuple[str, str], list[tuple[float, dict]]] = {k: [] for k in wanted}
    path = out_dir / "rejects.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for name, value in (rec.get("scores") or {}).items():
                    if (rec.get("stage"), name) in rejected:
                        rejected[(rec["stage"], name)].append((float(value), rec))
    names = splits(out_dir)
    for split in names:
        for batch in iter_batches(out_dir, split, columns=["id", "meta"]):
            for rid, meta in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                for name, value in (json.loads(meta).get("scores") or {}).items():
                    if name in kept:
                        kept[name].append((float(value), split, rid))
    parts, show = [], {}
    plan = []
    for (stage, name), sides in wanted.items():
        for side, limit in sides:
            k = kept[name]
            r = [v for v, _ in rejected[(stage, name)]]
            if (stage, name) in seen:
                saw = seen[(stage, name)]
                hist, n_seen_kept, n_seen_rej = saw["hist"], saw["kept"], saw["rejected"]
            elif k or r:
                hist, n_seen_kept, n_seen_rej = _hist([v for v, _, _ in k], r), None, len(r)
            else:
                continue
            near_kept = sorted(k, key=lambda t: abs(t[0] - limit))[:SHOWN]
            fail = [(v, rec) for v, rec in rejected[(stage, name)]
                    if (v < limit if side == "min" else v > limit) and rec.get("thumb")]
            near_rej = sorted(fail, key=lambda t: abs(t[0] - limit))[:SHOWN]
            for _, _, rid in near_kept:
                show[rid] = ""
            plan.append((stage, name, side, limit, hist, n_seen_kept, n_seen_rej, len(k), near_kept, near_rej))
    ids = set(show)
    for split in names if ids else []:
        for batch in iter_batches(out_dir, split, columns=["id", "images"]):
            for rid, images in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if rid in ids and not show[rid] and images:
                    show[rid] = thumbnail_uri(images[0]["bytes"], size=96)
    for stage, name, side, limit, hist, n_seen_kept, n_seen_rej, n_in_data, near_kept, near_rej in plan:
        below = "".join(f"<figure style='display:inline-block;margin:2px'><img class='thumb' style='max-width:96px' "
                        f"alt='rejected' src='{_e(rec['thumb'])}'><figcaption class='muted'>{v:.3g}</figcaption></figure>"
                        for v, rec in near_rej) or "<span class='muted'>none</span>"
        above = "".join(f"<figure style='display:inline-block;margin:2px'><img class='thumb' style='max-width:96px' "
                        f"alt='kept' src='{show[rid]}'><figcaption class='muted'>{v:.3g}</figcaption></figure>"
                        for v, _, rid in near_kept if show.get(rid)) or "<span class='muted'>none</span>"
        counts = (f"the {n_seen_kept + n_seen_rej} rows this filter scored: {n_seen_kept} kept (blue), "
                  f"{n_seen_rej} rejected (orange); {n_in_data} of the kept are in the dataset"
                  if n_seen_kept is not None else
                  f"{n_in_data} rows kept in the dataset (blue), {n_seen_rej} rejected by this filter (orange)")
        parts.append(f"<h3>{_e(name)} <span class='muted'>({_e(stage)}, {side} {limit:g}; {counts})</span></h3>"
                     f"{_histogram(hist, limit)}"
                     f"<div><b>rejected, nearest the line:</b> {below}</div>"
                     f"<div><b>kept (in the dataset), nearest the line:</b> {above}</div>")
    return "".join(parts) or "<p class='muted'>No scores recorded.</p>"
