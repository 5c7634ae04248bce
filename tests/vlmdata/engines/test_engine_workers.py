"""The local engine's worker processes change speed, never the output: rows, ids, splits, rejects and
the funnel are identical with 1 and 2 workers (and with the setting in the recipe or on the command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmdata_kit import Workspace

SAME = ("stages", "splits", "tasks", "sources", "rows", "rejects", "rejected_total")


def _recipe(ws: Workspace) -> Path:
    """45 rows in batches of 4 (many batches in flight) through every kind of step, with planted rejects."""
    rows: list[Any] = []
    for i in range(40):
        ws.image(f"img/{i % 15}.png", seed=i % 15)
        rows.append({"image": f"img/{i % 15}.png", "question": f"What is in region {i % 23}?",
                     "answers": [str(i % 3), "Yes"]})
    ws.image("img/tiny.png", seed=99, size=(6, 6))
    rows += [{"image": "img/tiny.png", "question": "Tiny?", "answers": ["no"]},  # image_too_small
             {"image": "img/missing.png", "question": "Where?", "answers": ["x"]},  # image_missing
             "{not json",  # malformed_line (a source reject)
             dict(rows[3]), dict(rows[7])]  # duplicates
    ws.jsonl("a.jsonl", rows[:25])
    ws.jsonl("b.jsonl", rows[25:])
    return ws.recipe({
        "name": "workers", "seed": 5, "batch_size": 4,
        "sources": [{"name": "a", "kind": "jsonl", "path": "a.jsonl", "task": "vqa"},
                    {"name": "b", "kind": "jsonl", "path": "b.jsonl", "task": "count"}],
        "instruct": {"vqa": {"suffix": "Answer briefly."}, "count": {"suffix": "Answer with a number."}},
        "normalize": {"answers": "vqa", "yes_no": True},
        "filter": [{"image_size": {"min_side": 16}}],
        "dedup": {"text": {"method": "minhash", "threshold": 0.8}, "images": {"method": "phash", "max_distance": 4},
                  "vqa_composite": True},
        "split": {"validation": 0.2, "test": 0.1, "group_by": "image_cluster"},
        # 8 rows from a train split of at least 25 (validation + test take at most 30 % plus one group):
        # every task is undersampled whatever the split does, so mix_undersampled is planted by construction
        "mix": {"temperature": 2.0, "total": 8},
    })


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and (p.suffix == ".arrow" or p.name in ("rejects.jsonl", "state.json"))}


def test_one_and_two_workers_write_identical_datasets(ws: Workspace) -> None:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    recipe = _recipe(ws)
    one = build(load_recipe(recipe), out=ws.root / "w1", progress=False, workers=1).manifest
    two = build(load_recipe(recipe, overrides=["engine.kind=local", "engine.workers=2"]), out=ws.root / "w2", progress=False).manifest
    assert {k: one[k] for k in SAME} == {k: two[k] for k in SAME}
    assert set(one["rejects"]) >= {"malformed_line", "image_missing", "image_too_small", "mix_undersampled"}
    assert any(r.startswith("duplicate_") for r in one["rejects"])
    assert one["rows"] > 0 and len(one["splits"]) == 3
    a, b = _files(ws.root / "w1"), _files(ws.root / "w2")
    assert a.keys() == b.keys() and a == b  # same rows, ids, splits, order, bytes


def test_worker_count_comes_from_the_recipe_or_the_cli(ws: Workspace) -> None:
    from vlmdata.engines.pool import default_workers
    from vlmdata.recipe import load_recipe

    recipe = _recipe(ws)
    assert load_recipe(recipe).recipe.engine.workers is None  # build uses default_workers()
    assert 1 <= default_workers() <= 4
    assert load_recipe(recipe, overrides=["engine.kind=local", "engine.workers=3"]).recipe.engine.workers == 3
