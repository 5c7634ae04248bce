"""The embed stage, semantic dedup, clip_score and image_quality end to end, with tiny random
CLIP/SigLIP models (real model and processor classes, built offline) and real photos."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_dedup import photo
from tiny_clip import write_tiny_clip, write_tiny_siglip, write_tiny_siglip2
from vlmdata_kit import Workspace

from vlmdata.config.errors import ConfigError


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"clip": write_tiny_clip(root / "clip"), "siglip": write_tiny_siglip(root / "siglip")}


def cropped(name: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(photo(name))).crop((10, 10, 246, 246)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def pics(ws: Workspace) -> Workspace:
    ws.write("img/astro.jpg", photo("astronaut"))
    ws.write("img/astro_crop.jpg", cropped("astronaut"))  # a crop: phash at distance 4 misses it
    ws.write("img/astro_bright.jpg", photo("astronaut", brightness=1.08))
    for name in ("coffee", "chelsea", "rocket", "camera"):
        ws.write(f"img/{name}.jpg", photo(name))
    ws.jsonl("qa.jsonl", [{"image": f"img/{f}.jpg", "question": f"what is in picture {i}?", "answers": [f"thing {i}"]}
                          for i, f in enumerate(["astro", "coffee", "astro_crop", "chelsea", "astro_bright",
                                                 "rocket", "camera"])])
    return ws


def recipe(model: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
            "embed": {"model": str(model), "batch_size": 3}, **extra}


def stage(built: Any, name: str) -> dict[str, Any]:
    return next(s for s in built.manifest["stages"] if s["stage"] == name)


def test_semantic_dedup_drops_crops_with_cosine_and_rebuild_embeds_nothing(pics: Workspace,
                                                                           models: dict[str, Path]) -> None:
    r = recipe(models["siglip"], dedup={"images": {"method": "semantic", "threshold": 0.97}})
    built = pics.build(r)
    dropped = [x for x in built.rejects if x["reason"] == "duplicate_image"]
    assert len(dropped) == 2 and {x["locator"].split(":")[-1] for x in dropped} == {"3", "5"}
    first_id = next(row["id"] for row in built.rows if "picture 0" in json.dumps(row["messages"]))
    assert all(x["duplicate_of"] == first_id and 0.97 <= x["cosine"] <= 1.0 for x in dropped)
    assert len(built.rows) == 5
    emb = stage(built, "embed")
    assert emb["details"]["images_embedded"] == 7 and emb["details"]["images_cached"] == 0
    sem = stage(built, "dedup")["details"]["semantic"]
    assert sem["images"] == 7 and sem["groups"] == 5 and sem["clusters"] == 1
    # kept rows: no embeddings in the written dataset; same cluster for the astronaut's split group
    assert "image_embeddings" not in built.rows[0]
    # second build, other output folder, same cache: nothing re-embedded, same rows
    again = pics.build(r, out="out2")
    emb2 = stage(again, "embed")["details"]
    assert emb2["images_embedded"] == 0 and emb2["images_cached"] == 7
    assert [x["id"] for x in again.rows] == [x["id"] for x in built.rows]


def test_workers_give_the_same_rows(pics: Workspace, models: dict[str, Path]) -> None:
    r = recipe(models["siglip"], dedup={"images": {"method": "semantic", "threshold": 0.97}},
               filter=[{"image_quality": {}}, {"clip_score": {"min": -1.0}}])
    one = pics.build(r)
    two = pics.build({**r, "engine": {"kind": "local", "workers": 2}}, out="out-w2")
    assert [x["id"] for x in one.rows] == [x["id"] for x in two.rows]
    assert (one.path / "rejects.jsonl").read_bytes() == (two.path / "rejects.jsonl").read_bytes()
    assert [x["reason"] for x in one.rejects].count("duplicate_image") == 2


def test_phash_misses_the_crop_that_semantic_catches(pics: Workspace) -> None:
    built = pics.build({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                        "dedup": {"images": {"method": "phash", "max_distance": 4}}})
    dropped = {x["locator"].split(":")[-1] for x in built.rejects if x["reason"] == "duplicate_image"}
    assert "3" not in dropped


def test_keep_hard_easy_pick_by_centroid_and_split_keeps_groups_together(pics: Workspace,
                                                                          models: dict[str, Path]) -> None:
    kept = {}
    for keep in ("easy", "hard"):
        built = pics.build(recipe(models["siglip"], dedup={"images": {"method": "semantic", "threshold": 0.97,
                                                                      "keep": keep}}), out=f"out-{keep}")
        astro = [row for row in built.rows if any(f"picture {i}" in json.dumps(row["messages"]) for i in (0, 2, 4))]
        assert len(astro) == 1
        kept[keep] = astro[0]["id"]
    assert kept["easy"] != kept["hard"]
    # without dropping (vqa_composite: different questions stay), near-duplicates share one split
    built = pics.build(recipe(models["siglip"], dedup={"images": {"method": "semantic", "threshold": 0.97},
                                                       "vqa_composite": True},
                              split={"validation": 0.3, "test": 0.3, "group_by": "image_cluster"}), out="out-split")
    assert not [x for x in built.rejects if x["reason"].startswith("duplicate")]
    splits = {}
    for name in ("train", "validation", "test"):
        for row in built.split_rows(name):
            splits[row["id"]] = (name, row["meta"]["dedup"]["image_cluster"])
    astro_clusters = {v for v in splits.values() if list(splits.values()).count(v) >= 3}
    assert len(astro_clusters) == 1  # the three astronaut rows: one cluster, one split


def test_against_by_embedding(pics: Workspace, models: dict[str, Path]) -> None:
    pics.write("eval/crop.jpg", cropped("chelsea"))
    built = pics.build(recipe(models["siglip"], dedup={"images": {"method": "semantic", "threshold": 0.97,
                                                                  "max_distance": 0},
                                                       "against": ["eval"]}))
    bad = [x for x in built.rejects if x["reason"] == "contaminated"]
    assert len(bad) == 1 and bad[0]["duplicate_of"] == "crop.jpg" and bad[0]["cosine"] >= 0.97


def test_clip_score_and_image_quality_filters(pics: Workspace, models: dict[str, Path]) -> None:
    from PIL import Image

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 9, (64, 64, 3), dtype=np.uint8)  # sharp, varied, but dark
    Image.fromarray(noise).save(buf, "PNG")
    pics.write("img/dark.png", buf.getvalue())
    rows = [json.loads(line) for line in pics.path("qa.jsonl").read_text().splitlines()]
    pics.jsonl("qa.jsonl", [*rows, {"image": "img/dark.png", "question": "what?", "answers": ["night"]}])
    # thresholds from the scores themselves: the median clip score splits the rows
    probe = pics.build(recipe(models["clip"], filter=[{"clip_score": {"min": -1.0, "text": "assistant"}}]), out="p")
    scores = sorted(row["meta"]["scores"]["clip_score"] for row in probe.rows if "night" not in json.dumps(row["messages"]))
    assert len(scores) == 7
    cut = (scores[3] + scores[4]) / 2
    built = pics.build(recipe(models["clip"], filter=[{"image_quality": {}},
                                                      {"clip_score": {"min": cut, "text": "assistant"}}]))
    dark = [x for x in built.rejects if x["reason"] == "image_too_dark"]
    assert len(dark) == 1 and dark[0]["scores"]["brightness"] < 10 and dark[0]["threshold"] == 10.0
    low = [x for x in built.rejects if x["reason"] == "clip_score_low"]
    assert len(low) == 4 and all(x["scores"]["clip_score"] < cut and x["threshold"] == cut for x in low)
    assert all(row["meta"]["scores"]["clip_score"] >= cut for row in built.rows)
    assert len(built.rows) == 3 and not [x for x in built.rejects if "night" in json.dumps(x) and x not in dark]
    # the embed stage sits just before clip_score: the dark image was never embedded
    names = [s["stage"] for s in built.manifest["stages"]]
    assert names.index("filter.image_quality") < names.index("embed") < names.index("filter.clip_score")
    assert stage(built, "embed")["details"]["images_embedded"] == 0  # all 7 cached by the probe build
    # the report: one histogram per score and threshold, with the threshold line and nearby thumbnails
    page = (built.path / "report.html").read_text(encoding="utf-8")
    section = page[page.index("id='scores'"):page.index("id='samples'")]
    assert section.count("<svg") == 5  # sharpness, brightness min + max, entropy, clip_score
    assert f"min {cut:g}" in section and "stroke='#e45756'" in section
    clip = section[section.index("<h3>clip_score"):]
    assert clip.count("alt='kept'") == 3  # from the dataset: always there
    near = [x for x in low if abs(x["scores"]["clip_score"] - cut) <= 0.1 * abs(cut)]
    assert {x["id"] for x in near} <= {x["id"] for x in low if "thumb" in x}  # near the line: thumbnail
    assert clip.count("alt='rejected'") == min(4, sum("thumb" in x for x in low))


@pytest.mark.parametrize("family", ["clip", "siglip", "siglip2"])
def test_each_family_embeds_with_its_real_classes_deterministically(tmp_path: Path, family: str) -> None:
    from vlmdata.embed.model import Embedder
    from vlmdata.embed.spec import EmbedSpec

    write = {"clip": write_tiny_clip, "siglip": write_tiny_siglip, "siglip2": write_tiny_siglip2}[family]
    a, b, c = (write(tmp_path / n, seed=s) for n, s in (("a", 1), ("b", 1), ("c", 2)))
    blobs = [photo("coffee"), photo("rocket")]
    embedders = [Embedder(spec=EmbedSpec(model=str(p))) for p in (a, b, c)]
    assert type(embedders[0].model).__name__.lower().startswith(family)
    assert type(embedders[0].processor).__name__.lower().startswith(family)
    va, vb, vc = (e.images(blobs) for e in embedders)
    assert np.array_equal(va, vb) and not np.allclose(va, vc)
    assert np.allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-5)
    ta = embedders[0].texts(["a cup of coffee", "a rocket"])
    assert ta.shape == (2, va.shape[1]) and np.array_equal(ta, embedders[1].texts(["a cup of coffee", "a rocket"]))


def test_missing_embed_section_and_bad_options_are_refused_together(pics: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        pics.load({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                   "filter": [{"clip_score": {"min": 0.3}}],
                   "dedup": {"images": {"method": "semantic", "kep": "hard"}}})
    text = str(err.value)
    assert "dedup.images.kep" in text and "did you mean 'keep'" in text
    with pytest.raises(ConfigError) as err:
        pics.load({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                   "filter": [{"clip_score": {"min": 0.3}}], "dedup": {"images": {"method": "semantic"}}})
    assert "filter[0].clip_score" in str(err.value) and "dedup.images.method" in str(err.value)
    with pytest.raises(ConfigError) as err:
        pics.load({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                   "embed": {"model": str(tmp_path / "nope")}, "dedup": {"images": {"method": "phash",
                                                                                   "threshold": 0.9}}})
    assert "embed.model" in str(err.value) and "model folder not found" in str(err.value)
    assert "dedup.images" in str(err.value) and "method: semantic" in str(err.value)


def test_cli_without_embeddings_imports_no_torch(pics: Workspace) -> None:
    path = pics.recipe({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                        "filter": [{"image_quality": {}}, {"text_quality": {}}],
                        "dedup": {"images": {"method": "phash"}}})
    code = ("import sys; from vlmdata.cli import main\n"
            "for args in (['validate', sys.argv[1]], ['build', sys.argv[1], '--out', sys.argv[2]]):\n"
            "    try: main(args)\n"
            "    except SystemExit as e: assert not e.code, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(pics.root / "cli-out")], capture_output=True,
                         text=True, cwd=pics.root, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH"


def test_open_clip_backend(pics: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("open_clip")  # the optional backend; installed in the dev environment
    from tiny_clip import write_tiny_open_clip

    name, weights = write_tiny_open_clip(tmp_path / "oc")
    r = {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
         "embed": {"backend": "open_clip", "model": name, "weights": str(weights)},
         "filter": [{"clip_score": {"min": -1.0, "text": "user"}}],
         "dedup": {"images": {"method": "semantic", "threshold": 0.999, "clusters": 1}}}
    built = pics.build(r)
    assert stage(built, "embed")["details"]["images_embedded"] == 7
    assert all(-1.0 <= row["meta"]["scores"]["clip_score"] <= 1.0 for row in built.rows)
    assert stage(built, "dedup")["details"]["semantic"]["images"] == 7
