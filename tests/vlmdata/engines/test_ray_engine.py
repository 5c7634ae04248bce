"""The Ray Data engine gives the local engine's output, row for row: the medical recipe, a dedup-heavy
recipe (real near-duplicate images and texts, split, mix, every kind of reject) and synthesis through the
loopback server (one cache: a rerun under Ray sends nothing)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray  # the dev extra installs it; a missing ray is a failure, not a skip
from openai_server import FakeOpenAI
from synth_kit import llava_recipe, serve
from vlmdata_kit import Workspace

ROOT = Path(__file__).parents[3]
SAME = ("stages", "splits", "tasks", "sources", "rows", "rejects", "rejected_total")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def build(recipe: Path, *, out: Path, engine: str, cache: Path | None = None) -> dict[str, Any]:
    from vlmdata.build import build as run_build
    from vlmdata.recipe import load_recipe

    return run_build(load_recipe(recipe), out=out, progress=False, engine=engine, cache_dir=cache).manifest


def assert_same(local: Path, on_ray: Path, ml: dict[str, Any], mr: dict[str, Any]) -> None:
    """Same manifest funnel and counts, same rejects.jsonl, and byte-identical split tables."""
    import datasets

    assert {k: ml[k] for k in SAME} == {k: mr[k] for k in SAME}
    assert (local / "rejects.jsonl").read_text() == (on_ray / "rejects.jsonl").read_text()
    a, b = datasets.load_from_disk(str(local)), datasets.load_from_disk(str(on_ray))
    assert list(a) == list(b)
    for split in a:
        assert a[split]["id"] == b[split]["id"]
        assert a[split].data.table.equals(b[split].data.table)


def test_vlmdata_without_the_extra_never_imports_ray() -> None:
    import subprocess
    import sys

    code = "import sys, vlmdata.build, vlmdata.cli, vlmdata.engines.packets; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_medical_recipe_same_on_both_engines(tmp_path: Path) -> None:
    recipe = ROOT / "recipes" / "medical.yaml"
    ml = build(recipe, out=tmp_path / "local", engine="local")
    mr = build(recipe, out=tmp_path / "ray", engine="ray")
    assert ml["rows"] > 0
    assert_same(tmp_path / "local", tmp_path / "ray", ml, mr)


def blocks(seed: int, *, size: int = 96) -> Any:
    """A picture of 8×8 random colour blocks: distinct seeds are far apart in perceptual hash."""
    import numpy as np
    from PIL import Image

    px = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(px).resize((size, size), Image.NEAREST)


def save(ws: Workspace, rel: str, im: Any, fmt: str, **kw: Any) -> str:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    ws.write(rel, buf.getvalue())
    return rel


def dedup_heavy(ws: Workspace) -> Path:
    """60 rows in batches of 7 with planted exact, near-image, near-text and (image, question) duplicates."""
    from PIL import ImageEnhance

    images = []
    for i in range(16):
        im = blocks(i)
        images.append(save(ws, f"img/{i}.png", im, "PNG"))
        if i % 3 == 0:  # near-duplicates: re-encoded, resized, brightened copies
            images.append(save(ws, f"img/{i}_q50.jpg", im, "JPEG", quality=50))
            images.append(save(ws, f"img/{i}_small.png", im.resize((80, 80)), "PNG"))
            images.append(save(ws, f"img/{i}_bright.jpg", ImageEnhance.Brightness(im).enhance(1.06), "JPEG"))
    images.append(save(ws, "img/tiny.png", blocks(99, size=8), "PNG"))  # rejected by the size filter
    long_a = "the block in the top left corner of the grid is a deep shade of red with a thin dark border"
    rows: list[Any] = []
    for j, image in enumerate(images):  # a copy with its original's question: duplicate_vqa
        stem = Path(image).stem
        q = f"What is shown in picture {stem.split('_')[0]}?" if not stem.endswith("small") else "Why?"
        rows.append({"image": image, "question": q, "answers": [f"pattern {j}"]})
    for j in range(25):
        a = [f"region {j}", long_a, long_a.replace("deep", "dark")][j % 3]  # near-duplicate answers
        rows.append({"image": images[(j * 11) % len(images)], "question": f"Q{j}?", "answers": [a]})
    rows[40] = dict(rows[36])  # an exact duplicate row
    rows[20] = "{not json"  # a source reject
    rows[30] = {"image": "img/missing.png", "question": "Where?", "answers": ["here"]}  # a load reject
    ws.jsonl("a.jsonl", rows[:35])
    ws.jsonl("b.jsonl", rows[35:])
    return ws.recipe({
        "name": "dedup-heavy", "seed": 3, "batch_size": 7,
        "sources": [{"name": "a", "kind": "jsonl", "path": "a.jsonl", "task": "vqa"},
                    {"name": "b", "kind": "jsonl", "path": "b.jsonl", "task": "count"}],
        "instruct": {"vqa": {"suffix": "Answer briefly."}, "count": {"suffix": "Answer with a number."}},
        "filter": [{"image_size": {"min_side": 16}}],
        "dedup": {"text": {"method": "minhash", "threshold": 0.5, "fields": ["assistant"]}, "images": {"method": "phash", "max_distance": 6},
                  "vqa_composite": True},
        "split": {"validation": 0.2, "test": 0.1, "group_by": "image_cluster"},
        "mix": {"temperature": 2.0, "total": 20},
    })


def test_dedup_heavy_recipe_same_on_both_engines(ws: Workspace) -> None:
    recipe = dedup_heavy(ws)
    ml = build(recipe, out=ws.root / "local", engine="local")
    mr = build(recipe, out=ws.root / "ray", engine="ray")
    assert_same(ws.root / "local", ws.root / "ray", ml, mr)
    rejected = set(ml["rejects"])  # the recipe really exercises every path
    assert rejected == {"malformed_line", "image_missing", "image_too_small", "duplicate_exact", "duplicate_near_text",
                        "duplicate_vqa", "mix_undersampled"}, ml["rejects"]
    assert len(ml["splits"]) == 3 and ml["rows"] > 0
    dedup = next(s for s in mr["stages"] if s["stage"] == "dedup")
    assert dedup["in"] > dedup["out"]


def test_recipe_engine_section_and_cli_flag(ws: Workspace) -> None:
    import yaml
    from click.testing import CliRunner

    from vlmdata.cli import main
    from vlmdata.recipe import load_recipe

    recipe = dedup_heavy(ws)
    data = yaml.safe_load(recipe.read_text())
    with_engine = ws.recipe({**data, "engine": {"kind": "ray", "num_cpus": 2}}, "ray.yaml")
    loaded = load_recipe(with_engine)
    assert loaded.recipe.engine.kind == "ray" and loaded.sha256 == load_recipe(recipe).sha256  # not in the hash
    res = CliRunner().invoke(main, ["build", str(recipe), "-q", "--engine", "ray", "--out", str(ws.root / "cli")])
    assert res.exit_code == 0, res.output
    ml = build(with_engine, out=ws.root / "local", engine="local")
    mr = json.loads((ws.root / "cli" / "manifest.json").read_text())
    assert_same(ws.root / "local", ws.root / "cli", ml, mr)


def test_synthesis_under_ray_one_cache_and_free_rerun(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = ws.recipe(llava_recipe(ws, n=6, batch_size=4))
    cache = ws.root / "cache"
    mr = build(recipe, out=ws.root / "ray", engine="ray", cache=cache)
    assert server.counts["chat"] == 18  # 3 jobs × 6 images, each sent once
    jobs = next(s for s in mr["stages"] if s["stage"] == "synthesize")["details"]["jobs"]
    assert sum(j["requests_sent"] for j in jobs.values()) == 18  # the driver's ledger saw every request
    again = build(recipe, out=ws.root / "ray2", engine="ray", cache=cache)
    assert server.counts["chat"] == 18  # zero requests on rerun under Ray
    ml = build(recipe, out=ws.root / "local", engine="local", cache=cache)
    assert server.counts["chat"] == 18
    assert_same(ws.root / "local", ws.root / "ray2", ml, again)
