"""report.html: a build you can look at, in one self-contained file (images inlined, no network).

Sections: the stage funnel (rows in/out per stage), rejects per reason with examples, the task mix
(before and after sampling when a mix stage ran), duplicate pairs side by side (when dedup dropped
rows and recorded thumbnails), score distributions of the scored filters with their thresholds
(report/scores.py), satellite scenes with their chip grid and document pages with their text layer
(`report/domains.py`), and random rows per task rendered as chats with their images and their chip or
page context.

    vlmdata report out/medical      # regenerate from the output folder alone
"""

from __future__ import annotations

import html
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from vlmdata.media.thumbnails import thumbnail_uri
from vlmdata.output.arrow_io import iter_batches, iter_rows, splits
from vlmdata.output.report.domains import context_lines, domains_html
from vlmdata.output.report.manifest import read_manifest
from vlmdata.output.report.scores import score_section
from vlmdata.steps.mix import mix_table

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:24px;color:#1d2330}
h1{margin:0 0 4px} h2{margin-top:36px;border-bottom:2px solid #e3e7ee;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0} td,th{padding:4px 10px;border-bottom:1px solid #e3e7ee;text-align:left}
.bar{background:#4c78a8;height:14px;display:inline-block;border-radius:2px} .bar.rej{background:#e45756}
.muted{color:#6b7280} .chat{border:1px solid #e3e7ee;border-radius:8px;padding:10px;margin:12px 0}
.turn{margin:6px 0;padding:6px 10px;border-radius:8px;white-space:pre-wrap}
.user{background:#eef2ff} .assistant{background:#ecfdf5} .system{background:#f3f4f6}
.role{font-weight:600;font-size:12px;text-transform:uppercase;color:#6b7280;display:block}
img.thumb{max-width:220px;max-height:220px;border-radius:4px;margin:4px;vertical-align:top}
.pair{display:flex;gap:12px;align-items:flex-start;margin:8px 0}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
img.overview{max-width:360px;border-radius:4px} .ctx{font-size:12px;color:#4b5563;margin:4px 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _funnel(manifest: dict[str, Any]) -> str:
    stages = manifest.get("stages", [])
    top = max([st["in"] for st in stages] + [1])
    rows = []
    for st in stages:
        rej = sum(st["rejected"].values())
        rows.append(
            f"<tr><td>{_e(st['stage'])}</td><td>{st['in']}</td><td>{st['out']}</td><td>{rej}</td>"
            f"<td><span class='bar' style='width:{300 * st['out'] / top:.0f}px'></span>"
            f"<span class='bar rej' style='width:{300 * rej / top:.0f}px'></span></td></tr>"
        )
    return ("<table><tr><th>stage</th><th>in</th><th>out</th><th>rejected</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _rejects(out_dir: Path, manifest: dict[str, Any], *, per_reason: int = 3) -> tuple[str, list[dict]]:
    examples: dict[str, list[dict]] = defaultdict(list)
    duplicates: list[dict] = []
    path = out_dir / "rejects.jsonl"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if len(examples[rec["reason"]]) < per_reason:
                    examples[rec["reason"]].append(rec)
                if rec.get("duplicate_of") and rec.get("thumb") and len(duplicates) < 12:
                    duplicates.append(rec)
    if not manifest.get("rejects"):
        return "<p>No row was rejected.</p>", duplicates
    parts = ["<table><tr><th>reason</th><th>rows</th><th>examples</th></tr>"]
    for reason, n in manifest["rejects"].items():
        ex = "<br>".join(f"<code>{_e(r.get('source'))}:{_e(r.get('locator'))}</code> {_e(r.get('detail', ''))[:200]}"
                         for r in examples.get(reason, []))
        parts.append(f"<tr><td>{_e(reason)}</td><td>{n}</td><td>{ex}</td></tr>")
    return "".join(parts) + "</table>", duplicates


def _mix(manifest: dict[str, Any]) -> str:
    table = mix_table(manifest)
    rows = []
    if table is not None:
        for g in table.groups:
            rows.append(f"<tr><td>{_e(g.group)}</td><td>{g.n}</td><td>{g.n_capped}</td><td>{g.p:.4f}</td>"
                        f"<td>{g.rows}</td><td>{g.dropped}</td><td>{g.repeated}</td></tr>")
        head = (f"<tr><th>{_e(table.by)}</th><th>n<sub>i</sub> (train)</th><th>after caps</th><th>p<sub>i</sub></th>"
                "<th>final rows</th><th>dropped</th><th>repeated</th></tr>")
        note = f"<p class='muted'>{_e(table.note)}</p>" if table.note else ""
        return (f"<p>Temperature {_e(table.temperature)}; {table.train_rows_in} train rows in, {table.total} out "
                f"(requested {table.requested_total}); {table.untouched_eval_rows} validation/test rows untouched."
                f"</p><table class='mix'>{head}{''.join(rows)}</table>{note}")
    for task, n in manifest.get("tasks", {}).items():
        rows.append(f"<tr><td>{_e(task)}</td><td>{n}</td></tr>")
    return f"<table><tr><th>task</th><th>rows</th></tr>{''.join(rows)}</table><p class='muted'>No mix stage ran.</p>"


def _chat(row: dict[str, Any]) -> str:
    images = iter(row["images"])
    turns = []
    for m in row["messages"]:
        body = []
        for part in m["content"]:
            if part["type"] == "image":
                im = next(images, None)
                if im is not None:
                    body.append(f"<img class='thumb' alt='image' src='{thumbnail_uri(im['bytes'])}'>")
            else:
                body.append(_e(part.get("text") or ""))
        turns.append(f"<div class='turn {_e(m['role'])}'><span class='role'>{_e(m['role'])}</span>{''.join(body)}</div>")
    answers = f"<div class='muted'>answers: {_e(row['answers'][:10])}</div>" if row["answers"] else ""

    lines = context_lines(json.loads(row["meta"] or "{}")) if row.get("meta") else []
    ctx = f"<div class='ctx'>{'<br>'.join(_e(x) for x in lines)}</div>" if lines else ""
    if row.get("chosen"):  # a preference pair: the prompt, then chosen and rejected side by side
        turns.append(_pair(row))
    return (f"<div class='chat'><div class='muted'>{_e(row['task'])} · {_e(row['source'])} · <code>{_e(row['id'])}</code>"
            f"</div>{ctx}{''.join(turns)}{answers}</div>")


def _pair(row: dict[str, Any]) -> str:
    import json

    how = (json.loads(row.get("meta") or "{}").get("preference") or {})
    label = " · ".join(_e(str(how[k])) for k in ("task", "kind", "level") if how.get(k))
    sides = []
    for name in ("chosen", "rejected"):
        text = " ".join(p.get("text") or "" for m in row[name] for p in m["content"] if p["type"] == "text")
        score = how.get(f"{name}_score")  # from: judge: the judge's score of each side
        role = f"{name} ({score:g})" if isinstance(score, int | float) else name
        sides.append(f"<div class='turn assistant' style='flex:1'><span class='role'>{_e(role)}</span>{_e(text)}</div>")
    return (f"<div class='muted'>pair: {label}</div>"
            f"<div class='prefpair' style='display:flex;gap:8px'>{''.join(sides)}</div>")


def _samples(out_dir: Path, *, per_task: int, seed: int) -> str:
    """`per_task` random rows of each task: reservoir sampling over the task column, then one more pass
    that keeps only the chosen rows (memory stays flat however large the split)."""
    names = splits(out_dir)
    split = "train" if "train" in names else names[0]
    rng = random.Random(seed)
    seen: dict[str, int] = defaultdict(int)
    chosen: dict[str, list[int]] = defaultdict(list)
    offset = 0
    for batch in iter_batches(out_dir, split, columns=["task"]):
        for i, task in enumerate(batch.column(0).to_pylist()):
            seen[task] += 1
            if len(chosen[task]) < per_task:
                chosen[task].append(offset + i)
            else:
                j = rng.randrange(seen[task])
                if j < per_task:
                    chosen[task][j] = offset + i
        offset += batch.num_rows
    wanted = {i for idx in chosen.values() for i in idx}
    rows = {i: row for i, row in enumerate(iter_rows(out_dir, split)) if i in wanted}
    parts = []
    for task in sorted(chosen):
        parts.append(f"<h3>{_e(task)} <span class='muted'>({seen[task]} rows in {split})</span></h3>")
        parts.extend(_chat(rows[i]) for i in sorted(chosen[task]))
    return "".join(parts)


def _kept_images(out_dir: Path, ids: set[str]) -> dict[str, str]:
    """Thumbnails of the kept rows that duplicates point at (one streaming pass over the ids)."""
    found: dict[str, str] = {}
    if not ids:
        return found
    for split in splits(out_dir):
        for batch in iter_batches(out_dir, split, columns=["id", "images"]):
            for rid, images in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if rid in ids and rid not in found and images:
                    found[rid] = thumbnail_uri(images[0]["bytes"], size=160)
    return found


def render_report(out_dir: Path, *, per_task: int = 3, seed: int = 0) -> str:
    manifest = read_manifest(out_dir)
    rejects_html, duplicates = _rejects(out_dir, manifest)
    samples_html = _samples(out_dir, per_task=per_task, seed=seed)
    kept = _kept_images(out_dir, {d["duplicate_of"] for d in duplicates})
    dup_html = "".join(
        f"<div class='pair'><img class='thumb' alt='dropped' src='{_e(d['thumb'])}'>"
        + (f"<img class='thumb' alt='kept' src='{kept[d['duplicate_of']]}'>" if d["duplicate_of"] in kept else "")
        + f"<div><b>{_e(d['reason'])}</b><br>dropped <code>{_e(d.get('id'))}</code> (left)<br>kept "
        f"<code>{_e(d['duplicate_of'])}</code> (right)</div></div>" for d in duplicates
    ) or "<p class='muted'>No duplicate pairs recorded.</p>"

    domains = domains_html(out_dir)
    split_rows = ", ".join(f"{k}: {v}" for k, v in manifest.get("splits", {}).items())
    body = f"""
<h1>{_e(manifest['name'])}</h1>
<div class='muted'>{manifest.get('rows', 0)} rows ({_e(split_rows)}) · recipe <code>{_e(manifest.get('recipe_sha256'))}</code>
 · built {_e(manifest.get('created'))} in {_e(manifest.get('wall_seconds'))} s</div>
<h2 id='funnel'>Stage funnel</h2>{_funnel(manifest)}
<h2 id='rejects'>Rejects</h2>{rejects_html}
<h2 id='mix'>Task mix</h2>{_mix(manifest)}
<h2 id='duplicates'>Duplicates</h2>{dup_html}
<h2 id='scores'>Scores</h2>{score_section(out_dir, manifest)}
{domains}
<h2 id='samples'>Samples</h2>{samples_html}
"""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(manifest['name'])} · vlmdata report"
            f"</title><style>{CSS}</style></head><body>{body}</body></html>")


def write_report(out_dir: Path, *, per_task: int = 3, seed: int = 0) -> Path:
    path = out_dir / "report.html"
    path.write_text(render_report(out_dir, per_task=per_task, seed=seed), encoding="utf-8")
    return path
