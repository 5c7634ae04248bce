"""What the report and `vlmdata inspect` show of satellite chips and document pages.

- `context_lines(meta)`: a row's context in a few lines (a chip's scene, window, centre, ground extent,
  CRS; a page's document, page number, lines and headings);
- `scene_overviews(out_dir)`: per scene, the chips pasted back at their windows into a small mosaic
  with the chip grid drawn on it (kept chips coloured by split, chips rejected for nodata in red), so
  one sees what was cut and what was skipped, from the output folder alone (the scene file is not needed);
- `page_layouts(out_dir)`: page thumbnails with the text layer's line boxes drawn (headings in orange).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from vlmdata.output.arrow_io import iter_batches, splits

SPLIT_COLOURS = {"train": (76, 120, 168), "validation": (245, 133, 24), "test": (84, 162, 75)}
REJECT_COLOUR = (228, 87, 86)
OVERVIEW_SIDE = 360
MAX_SCENES = 8
MAX_PAGES = 12


def context_lines(meta: dict[str, Any]) -> list[str]:
    """A chip's or a page's context, short; [] for rows of other sources."""
    ctx = meta.get("context") or {}
    out = []
    if "window" in meta and "scene_size" in ctx:
        w = meta["window"]
        out.append(f"scene {meta.get('scene')} ({ctx['scene_size'][0]}x{ctx['scene_size'][1]}), window "
                   f"x={w['col_off']} y={w['row_off']} {w['width']}x{w['height']}, crs {ctx.get('crs')}")
        geo = []
        if ctx.get("center_lonlat"):
            geo.append(f"centre lon/lat {ctx['center_lonlat'][0]:.4f}, {ctx['center_lonlat'][1]:.4f}")
        if ctx.get("extent_m"):
            geo.append(f"extent {ctx['extent_m'][0] / 1000:.2f} x {ctx['extent_m'][1] / 1000:.2f} km, gsd {ctx['gsd_m']} m")
        geo.append(f"nodata {ctx.get('nodata_fraction', 0):.1%}")
        out.append(", ".join(geo))
        bands = [f"{s['name']}: mean {s['mean']}" for s in ctx.get("band_stats") or [] if s.get("mean") is not None]
        if bands:
            out.append("bands " + "; ".join(bands))
    elif "page" in meta and "lines" in ctx:
        out.append(f"document {meta.get('scene')}, page {meta['page']} of {ctx.get('n_pages')}, "
                   f"{len(ctx['lines'])} lines, {len(ctx.get('words') or [])} words at {ctx.get('dpi')} dpi")
        if ctx.get("title"):
            out.append(f"title: {ctx['title']}")
        if ctx.get("headings"):
            out.append("headings: " + " | ".join(ctx["headings"][:8]))
        if ctx.get("line"):
            out.append(f"highlighted line box {ctx['line']['box']}")
    return out


def _png(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def scene_overviews(out_dir: Path) -> list[dict[str, Any]]:
    """[{scene, source, png, chips: {split: n}, rejected}] for up to MAX_SCENES scenes of the build."""
    from PIL import Image, ImageDraw

    scenes: dict[tuple[str, str], dict[str, Any]] = {}
    for split in splits(out_dir):
        for batch in iter_batches(out_dir, split, columns=["source", "images", "meta"]):
            for source, images, meta_s in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
                meta = json.loads(meta_s or "{}")
                size = (meta.get("context") or {}).get("scene_size")
                if "window" not in meta or not size or not images:
                    continue
                key = (source, str(meta.get("scene")))
                if key not in scenes and len(scenes) >= MAX_SCENES:
                    continue
                sc = scenes.setdefault(key, {"size": size, "chips": {}, "rejected": []})
                win = tuple(meta["window"][k] for k in ("col_off", "row_off", "width", "height"))
                if win not in sc["chips"]:
                    sc["chips"][win] = (split, images[0]["bytes"])
    rejects = out_dir / "rejects.jsonl"
    if rejects.is_file():
        with rejects.open(encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                key = (rec.get("source", ""), str(rec.get("scene")))
                if rec.get("window") and key in scenes:
                    scenes[key]["rejected"].append(tuple(rec["window"][k] for k in ("col_off", "row_off", "width", "height")))
    out = []
    for (source, scene), sc in scenes.items():
        width, height = sc["size"]
        scale = min(1.0, OVERVIEW_SIDE / max(width, height))
        canvas = Image.new("RGB", (max(1, round(width * scale)), max(1, round(height * scale))), (40, 40, 40))
        for (x, y, w, h), (_, data) in sc["chips"].items():
            with Image.open(io.BytesIO(data)) as chip:
                canvas.paste(chip.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale)))),
                             (round(x * scale), round(y * scale)))
        draw = ImageDraw.Draw(canvas)
        for x, y, w, h in sc["rejected"]:
            draw.rectangle((round(x * scale), round(y * scale), round((x + w) * scale) - 1, round((y + h) * scale) - 1),
                           outline=REJECT_COLOUR, width=1)
        for (x, y, w, h), (split, _) in sc["chips"].items():
            draw.rectangle((round(x * scale), round(y * scale), round((x + w) * scale) - 1, round((y + h) * scale) - 1),
                           outline=SPLIT_COLOURS.get(split, (255, 255, 255)), width=2)
        counts: dict[str, int] = {}
        for split, _ in sc["chips"].values():
            counts[split] = counts.get(split, 0) + 1
        out.append({"scene": scene, "source": source, "png": _png(canvas), "chips": counts,
                    "rejected": len(sc["rejected"])})
    return out


def page_layouts(out_dir: Path) -> list[dict[str, Any]]:
    """[{doc, page, png}] for up to MAX_PAGES pages: the page with its line boxes (headings orange)."""
    from PIL import Image, ImageDraw

    out: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for split in splits(out_dir):
        for batch in iter_batches(out_dir, split, columns=["images", "meta"]):
            for images, meta_s in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                meta = json.loads(meta_s or "{}")
                ctx = meta.get("context") or {}
                if "page" not in meta or "line" in meta or "lines" not in ctx or not images:
                    continue
                key = (str(meta.get("scene")), int(meta["page"]))
                if key in seen:
                    continue
                seen.add(key)
                with Image.open(io.BytesIO(images[0]["bytes"])) as page:
                    im = page.convert("RGB")
                im.thumbnail((300, 300))
                draw = ImageDraw.Draw(im)
                for ln in ctx["lines"]:
                    x0, y0, x1, y1 = ln["box"]
                    draw.rectangle((x0 * im.width, y0 * im.height, x1 * im.width, y1 * im.height),
                                   outline=(245, 133, 24) if ln.get("heading") else (76, 120, 168), width=1)
                out.append({"doc": key[0], "page": key[1], "png": _png(im)})
                if len(out) >= MAX_PAGES:
                    return out
    return out


def domains_html(out_dir: Path) -> str:
    """The report's satellite and document section ('' when the build has neither)."""
    import base64
    import html

    def uri(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    parts = []
    scenes = scene_overviews(out_dir)
    if scenes:
        legend = " ".join(f"<span style='color:rgb{c}'>■ {s}</span>" for s, c in SPLIT_COLOURS.items())
        parts.append(f"<h2 id='scenes'>Scenes and chips</h2><p class='muted'>Chips pasted back at their windows; "
                     f"outline = split ({legend}); <span style='color:rgb{REJECT_COLOUR}'>■ rejected</span> "
                     f"(mostly nodata).</p>")
        for sc in scenes:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(sc["chips"].items()))
            parts.append(f"<div class='pair'><img class='overview' alt='{html.escape(sc['scene'])}' src='{uri(sc['png'])}'>"
                         f"<div><b>{html.escape(sc['source'])}: {html.escape(sc['scene'])}</b><br>chips {html.escape(counts)}"
                         f"<br>rejected {sc['rejected']}</div></div>")
    pages = page_layouts(out_dir)
    if pages:
        parts.append("<h2 id='pages'>Pages and their text layer</h2><p class='muted'>Line boxes of the text "
                     "layer (headings in orange).</p><div>")
        parts += [f"<figure style='display:inline-block;margin:4px'><img class='thumb' alt='page' src='{uri(p['png'])}'>"
                  f"<figcaption class='muted'>{html.escape(p['doc'])} p.{p['page']}</figcaption></figure>" for p in pages]
        parts.append("</div>")
    return "".join(parts)
