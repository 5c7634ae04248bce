"""Decontamination compares images with `dedup.images`' hash and radius, or ImageDedup's own defaults when
image dedup is off: one source of truth, recorded in the manifest."""

from __future__ import annotations

from test_dedup import pics, qa, recipe, stage  # noqa: F401 - pics is a fixture
from vlmdata_kit import Workspace

from vlmdata.steps.dedup import ImageDedup


def test_decontamination_uses_the_recipes_image_settings(pics: Workspace) -> None:  # noqa: F811
    pics.write("eval_img/astro.jpg", (pics.root / "img/astro.jpg").read_bytes())
    pics.jsonl("qa.jsonl", [qa("astro_bright.jpg", "Who is this?", "an astronaut"),
                            qa("coffee.jpg", "What is in the cup?", "tea")])
    off = pics.build(recipe({"against": ["eval_img"]}), out="off")
    defaults = ImageDedup()
    assert stage(off)["details"]["against_image_hash"] == {
        "method": defaults.method, "max_distance": defaults.max_distance, "hash_size": defaults.hash_size}
    assert [r["answers"] for r in off.rows] == [["tea"]]  # the brightened copy is within the default radius

    strict = pics.build(recipe({"against": ["eval_img"], "images": {"max_distance": 0, "method": "dhash"}}),
                        out="strict")
    assert stage(strict)["details"]["against_image_hash"]["max_distance"] == 0
    assert stage(strict)["details"]["against_image_hash"]["method"] == "dhash"
