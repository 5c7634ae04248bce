"""The report's score histograms show every row a scored filter saw (kept and rejected, before any
later stage dropped some), with the threshold line and thumbnails on both sides of it; torch-free."""

from __future__ import annotations

import io
import json
import re

import numpy as np
from vlmdata_kit import Workspace


def _noise(level: int, seed: int) -> bytes:
    """A sharp, varied image whose mean grey is about level + 20."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(level, level + 41, (48, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


LEVELS = [0, 10, 20, 30, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170]  # 4 dark (< 60), 10 bright enough


def _world(ws: Workspace) -> None:
    rows = []
    for i, level in enumerate(LEVELS):
        ws.write(f"img/{i}.png", _noise(level, i))
        rows.append({"image": f"img/{i}.png", "question": f"what is shown in picture {i}?",
                     "answers": [f"a pattern of grey dots number {i}"]})
    for i in range(4, 9):  # 5 copies of kept images: the filter keeps them, dedup (after it) drops them
        rows.append({"image": f"img/{i}.png", "question": f"and what about picture {i} again?",
                     "answers": [f"the same pattern of dots seen twice {i}"]})
    rows.append({"image": "img/13.png", "question": "what?", "answers": ["!!!! ???? ...."]})  # no letters
    ws.jsonl("qa.jsonl", rows)


def _recipe(**extra: object) -> dict:
    return {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}], "batch_size": 4,
            "filter": [{"image_quality": {"min_brightness": 60}}, {"text_quality": {}}],
            "dedup": {"images": {"method": "phash", "max_distance": 0}}, **extra}


def _bars(svg: str) -> tuple[int, int]:
    kept = sum(int(n) for n in re.findall(r"<title>(\d+) kept</title>", svg))
    rejected = sum(int(n) for n in re.findall(r"<title>(\d+) rejected</title>", svg))
    return kept, rejected


def test_histograms_count_every_row_the_filter_saw_with_rejects_and_later_drops(ws: Workspace) -> None:
    _world(ws)
    built = ws.build(_recipe())
    stages = {s["stage"]: s for s in built.manifest["stages"]}
    quality = stages["filter.image_quality"]
    seen = quality["details"]["scores_seen"]
    assert quality["in"] == len(LEVELS) + 6 == 20
    assert seen["brightness"]["kept"] == 16 and seen["brightness"]["rejected"] == 4  # 4 dark rows
    assert sum(seen["brightness"]["hist"]["kept"]) == 16 and sum(seen["brightness"]["hist"]["rejected"]) == 4
    assert seen["brightness"]["min"] < 60 < seen["brightness"]["max"]
    text = stages["filter.text_quality"]["details"]["scores_seen"]["alpha_ratio"]
    assert (text["kept"], text["rejected"]) == (15, 1)  # it saw the 16 rows image_quality kept
    assert len(built.rows) == 10  # dedup dropped the 5 copies after both filters had scored them
    assert [x["reason"] for x in built.rejects].count("duplicate_image") == 5

    page = (built.path / "report.html").read_text(encoding="utf-8")
    section = page[page.index("id='scores'"):page.index("id='samples'")]
    head = section.index("<h3>brightness <span class='muted'>(filter.image_quality, min 60")
    block = section[head:section.index("<h3>", head + 4)]
    assert "the 20 rows this filter scored: 16 kept (blue), 4 rejected (orange); 10 of the kept are in the dataset" \
        in block
    svg = block[block.index("<svg"):block.index("</svg>")]
    assert _bars(svg) == (16, 4)  # the dataset alone would give 10 kept
    # the red line at 60 lies right of every rejected bar and left of every kept one
    line = float(re.search(r"<line x1='([\d.]+)'", svg).group(1))
    rejected_x = [float(x) for x in re.findall(r"<rect x='([\d.]+)'[^>]*fill='#f58518'", svg)]
    kept_x = [float(x) for x in re.findall(r"<rect x='([\d.]+)'[^>]*fill='#4c78a8'", svg)]
    assert max(rejected_x) < line < min(kept_x)
    # thumbnails just below (rejected, from rejects.jsonl) and just above (kept, from the dataset)
    assert block.count("alt='rejected'") >= 1 and block.count("alt='kept'") == 4
    below = [float(v) for v in re.findall(r"alt='rejected' src='[^']*'><figcaption class='muted'>([\d.]+)<", block)]
    above = [float(v) for v in re.findall(r"alt='kept' src='[^']*'><figcaption class='muted'>([\d.]+)<", block)]
    assert all(v < 60 for v in below) and all(v >= 60 for v in above)
    kept_scores = sorted(r["meta"]["scores"]["brightness"] for r in built.rows)
    assert sorted(above) == [float(f"{v:.3g}") for v in kept_scores[:4]]  # the four nearest the line


def test_seen_scores_do_not_depend_on_workers_or_batch_size(ws: Workspace) -> None:
    _world(ws)
    one = ws.build(_recipe())
    two = ws.build(_recipe(batch_size=3, engine={"kind": "local", "workers": 2}), out="out2")

    def seen(b) -> list:  # noqa: ANN001 - the kit's Built
        return [s["details"].get("scores_seen") for s in b.manifest["stages"] if s["stage"].startswith("filter.")]

    assert seen(one) == seen(two) and all(seen(one))
    assert [sorted(x) for x in seen(one)] == [["brightness", "entropy", "sharpness"], ["alpha_ratio", "repeat_ratio"]]


def test_a_manifest_without_seen_scores_still_draws_from_rejects_and_rows(ws: Workspace) -> None:
    """Builds made before the filters recorded what they saw: the section falls back to the dataset's
    kept rows and the rejects, and says so."""
    from vlmdata.output.report.scores import score_section

    _world(ws)
    built = ws.build(_recipe())
    manifest = json.loads((built.path / "manifest.json").read_text(encoding="utf-8"))
    for st in manifest["stages"]:
        (st.get("details") or {}).pop("scores_seen", None)
    html = score_section(built.path, manifest)
    head = html.index("<h3>brightness <span class='muted'>(filter.image_quality, min 60")
    block = html[head:html.index("<h3>", head + 4)]
    assert "10 rows kept in the dataset (blue), 4 rejected by this filter (orange)" in block
    assert _bars(block[block.index("<svg"):block.index("</svg>")]) == (10, 4)


def test_seen_scores_merge_in_any_order_and_count_non_finite_values() -> None:
    from vlmdata.steps.seen_scores import SeenScores

    values = np.random.default_rng(0).normal(0.3, 0.1, 500).tolist()
    a, b = SeenScores(), SeenScores()
    a.add({"clip_score": (values[:300], values[300:400])})
    a.add({"clip_score": (values[400:], [float("nan")])})
    for lo in range(500, 0, -50):  # other batches, other order
        part = values[lo - 50:lo]
        b.add({"clip_score": ([v for i, v in enumerate(part, lo - 50) if not 300 <= i < 400],
                              [v for i, v in enumerate(part, lo - 50) if 300 <= i < 400])})
    b.add({"clip_score": ([], [float("nan")])})
    assert a.to_json() == b.to_json()
    out = a.to_json()["clip_score"]
    assert (out["kept"], out["rejected"], out["nonfinite"]) == (400, 100, 1)
    assert out["min"] == float(f"{min(values):.3g}") and out["max"] == float(f"{max(values):.3g}")
    one = SeenScores()
    one.add({"x": ([2.0, 2.0], [])})  # a single value: one bin, a valid range
    assert one.to_json()["x"]["hist"]["lo"] < one.to_json()["x"]["hist"]["hi"] and sum(one.to_json()["x"]["hist"]["kept"]) == 2
