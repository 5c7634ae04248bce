"""The dedup step end to end: recipe YAML → build → rows, rejects (reason + duplicate_of) and manifest.

Near-duplicate images are real photos (scikit-image's bundled ones) re-encoded, resized, brightened."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from vlmdata_kit import Workspace

from vlmdata.config.errors import ConfigError
from vlmdata.recipe import load_recipe


def photo(name: str, *, size: int = 256, fmt: str = "JPEG", quality: int = 92, brightness: float = 1.0) -> bytes:
    from PIL import Image, ImageEnhance
    from skimage import data

    im = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size))
    if brightness != 1.0:
        im = ImageEnhance.Brightness(im).enhance(brightness)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture
def pics(ws: Workspace) -> Workspace:
    ws.write("img/astro.jpg", photo("astronaut"))
    ws.write("img/astro_q60.jpg", photo("astronaut", quality=60))  # re-encoded
    ws.write("img/astro_small.png", photo("astronaut", size=200, fmt="PNG"))  # resized
    ws.write("img/astro_bright.jpg", photo("astronaut", brightness=1.08))  # brightened
    for name in ("coffee", "chelsea", "rocket", "camera"):
        ws.write(f"img/{name}.jpg", photo(name))
    return ws


def qa(image: str, question: str, answer: str) -> dict[str, Any]:
    return {"image": f"img/{image}", "question": question, "answers": [answer]}


def recipe(dedup: dict[str, Any], path: str = "qa.jsonl") -> dict[str, Any]:
    return {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": path}], "dedup": dedup}


def stage(built: Any) -> dict[str, Any]:
    return next(s for s in built.manifest["stages"] if s["stage"] == "dedup")


LONG = "looking closely at the picture what kind of animal is sitting on the wooden table next to the window"


def test_exact_and_near_text_duplicates_keep_the_first_row(pics: Workspace) -> None:
    pics.jsonl("qa.jsonl", [
        qa("chelsea.jpg", LONG.capitalize() + "?", "cat"),
        qa("coffee.jpg", LONG.upper() + " ?!", "Cat"),  # same text once normalised
        qa("rocket.jpg", LONG.replace("wooden", "brown"), "cat"),  # one word changed
        qa("camera.jpg", "Who is holding the camera in this old black and white photograph?", "a man"),
    ])
    built = pics.build(recipe({"text": {"method": "minhash", "threshold": 0.6}}))
    kept = {r["id"] for r in built.rows}
    assert len(kept) == 2
    first = next(r for r in built.rows if r["meta"]["locator"].endswith("1"))
    rej = {r["reason"]: r for r in built.rejects}
    assert set(rej) == {"duplicate_exact", "duplicate_near_text"}
    assert rej["duplicate_exact"]["duplicate_of"] == first["id"] == rej["duplicate_near_text"]["duplicate_of"]
    assert stage(built)["rejected"] == {"duplicate_exact": 1, "duplicate_near_text": 1}

    exact_only = pics.build(recipe({"text": {"method": "exact"}}), out="exact")
    assert [r["reason"] for r in exact_only.rejects] == ["duplicate_exact"]


def test_near_duplicate_images_and_composite_vqa_keys(pics: Workspace) -> None:
    q1, q2 = "What is the person wearing?", "What color is the background?"
    pics.jsonl("qa.jsonl", [
        qa("astro.jpg", q1, "a suit"),
        qa("astro_q60.jpg", "what is the person WEARING", "suit"),  # same image + same question: dropped
        qa("astro_small.png", q2, "black"),  # same image, other question: kept
        qa("astro_bright.jpg", q1, "a space suit"),  # brightened copy, same question: dropped
        qa("coffee.jpg", q1, "nothing"),  # other image: kept
    ])
    built = pics.build(recipe({"images": {"max_distance": 4}, "vqa_composite": True}))
    assert len(built.rows) == 3 and len(built.rejects) == 2
    head = built.rows[0]
    assert all(r["reason"] == "duplicate_vqa" and r["duplicate_of"] == head["id"] for r in built.rejects)
    clusters = [r["meta"]["dedup"]["image_cluster"] for r in built.rows]
    assert clusters[0] == clusters[1] == head["meta"]["image_sha256"][0] != clusters[2]

    images_only = pics.build(recipe({"images": {"method": "phash"}}), out="images-only")  # not "img": the pictures live there
    assert len(images_only.rows) == 2
    assert {r["reason"] for r in images_only.rejects} == {"duplicate_image"}

    off = pics.build(recipe({"text": {"method": "exact", "fields": ["assistant"]}}), out="off")
    assert [r["meta"]["dedup"]["image_cluster"] for r in off.rows] == [r["meta"]["image_sha256"][0] for r in off.rows]


def test_decontamination_against_a_saved_dataset_and_an_image_folder(pics: Workspace) -> None:
    question = "How many legs does the animal on the left side of the picture have in total?"
    pics.write("eval_img/camera_small.png", photo("camera", size=180, fmt="PNG"))
    pics.jsonl("eval.jsonl", [qa("astro_bright.jpg", question, "four"), qa("coffee.jpg", "What is in the cup?", "tea")])
    evalset = pics.build(recipe({}, path="eval.jsonl"), out="evalset")
    pics.jsonl("qa.jsonl", [
        qa("astro_q60.jpg", "Who is this?", "an astronaut"),  # near-duplicate of an eval image
        qa("rocket.jpg", "Please tell me: " + question.lower(), "four"),  # shares 8-grams with an eval question
        qa("camera.jpg", "What is he holding?", "a camera"),  # near-duplicate of an image in the folder
        qa("chelsea.jpg", "What is in the cup?", "milk"),  # short question (< 8 words): not an overlap
    ])
    built = pics.build(recipe({"against": [str(evalset.path), "eval_img"], "against_ngram": 8}))
    assert [r["answers"] for r in built.rows] == [["milk"]]
    assert {r["reason"] for r in built.rejects} == {"contaminated"}
    by_set = {r["eval_set"] for r in built.rejects}
    assert by_set == {"evalset", "eval_img"}
    assert stage(built)["details"]["contaminated"] == {"evalset": 2, "eval_img": 1}
    assert any(r["duplicate_of"] == "camera_small.png" for r in built.rejects)
    eval_ids = {r["id"] for r in evalset.rows}
    assert sum(r["duplicate_of"] in eval_ids for r in built.rejects) == 2


def test_kept_rows_do_not_depend_on_batch_size(pics: Workspace) -> None:
    pics.jsonl("qa.jsonl", [qa(f"{n}.jpg", f"question {i % 3} about {n}", "x")
                            for i, n in enumerate(["astro", "astro_q60", "coffee", "astro_bright", "chelsea"] * 3)])
    spec = {"images": {}, "vqa_composite": True, "text": {"method": "exact"}}
    a = pics.build({**recipe(spec), "batch_size": 2}, out="a")
    b = pics.build({**recipe(spec), "batch_size": 64}, out="b")
    assert [r["id"] for r in a.rows] == [r["id"] for r in b.rows]
    assert a.rejects == b.rejects


def test_config_errors_name_the_key(ws: Workspace) -> None:
    ws.jsonl("qa.jsonl", [])
    for bad, key in (({"vqa_composite": True}, "vqa_composite"), ({"text": {"bands": 4}}, "bands"),
                     ({"images": {"method": "whash", "hash_size": 6}}, "hash_size"),
                     ({"against": ["missing_dir"]}, "against"), ({"text": {"unknown": 1}}, "unknown")):
        with pytest.raises(ConfigError) as err:
            load_recipe(ws.recipe(recipe(bad)))
        assert key in str(err.value) and "dedup" in str(err.value)


def test_empty_texts_are_not_duplicates_of_each_other(pics: Workspace) -> None:
    rows = [qa("coffee.jpg", "Is there a cup?", "yes"), qa("chelsea.jpg", "Is there a cat?", "yes")]
    pics.jsonl("qa.jsonl", rows)
    built = pics.build(recipe({"text": {"method": "minhash", "fields": ["system"]}}))
    assert len(built.rows) == 2 and np.array_equal(built.rejects, [])


def test_kit_pictures_of_different_seeds_are_never_near_duplicates() -> None:
    """Tests that count clusters, splits or mixes rely on this (see vlmdata_kit.picture)."""
    import itertools

    from vlmdata_kit import encode, picture

    from vlmdata.dedup.phash import image_hash

    hashes = [image_hash(encode(picture(s), "PNG"), method="phash", hash_size=8) for s in range(200)]
    assert min(bin(a ^ b).count("1") for a, b in itertools.combinations(hashes, 2)) > 12
