"""The procedural `shapes` source: deterministic bytes, ground truth checked against the pixels, imbalance."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from vlmdata.rows import Record
from vlmdata.sources import read_source
from vlmdata.sources.shapes import COLOURS, ShapesSpec


def _records(**spec: object) -> list[Record]:
    out = list(read_source(ShapesSpec(name="world", **spec)))
    assert all(isinstance(r, Record) for r in out)
    return out  # type: ignore[return-value]


def _blobs(record: Record) -> list[tuple[str, float]]:
    """(colour name, centroid x) of each 8-connected blob of non-background pixels."""
    pixels = np.asarray(Image.open(io.BytesIO(record.images[0].data)).convert("RGB"))
    foreground = np.any(pixels != pixels[0, 0], axis=2)
    seen = np.zeros_like(foreground)
    blobs = []
    for y, x in zip(*np.nonzero(foreground), strict=True):
        if seen[y, x]:
            continue
        stack, members = [(y, x)], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            members.append((cy, cx))
            for ny in range(cy - 1, cy + 2):
                for nx in range(cx - 1, cx + 2):
                    inside = 0 <= ny < foreground.shape[0] and 0 <= nx < foreground.shape[1]
                    if inside and foreground[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        colours = Counter(tuple(pixels[p]) for p in members)
        (rgb, _), = colours.most_common(1)
        name = next(n for n, c in COLOURS.items() if c == rgb)
        blobs.append((name, float(np.mean([p[1] for p in members]))))
    return blobs


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b, c = _records(count=5), _records(count=5), _records(count=5, seed=1)
    assert [r.images[0].data for r in a] == [r.images[0].data for r in b]
    assert [r.fields for r in a] == [r.fields for r in b]
    assert [r.images[0].data for r in a] != [r.images[0].data for r in c]
    assert Image.open(io.BytesIO(a[0].images[0].data)).size == (64, 64)
    assert _records(count=1, tasks=["color"], image_size=48)[0].images[0].data != a[0].images[0].data


def test_answers_match_the_pixels() -> None:
    records = _records(count=25, max_count=6, tasks=["color", "shape", "size", "count", "position", "relation", "caption"])
    assert {r.task for r in records} == {"color", "shape", "size", "count", "position", "relation", "caption"}
    for r in records:
        blobs = _blobs(r)
        if r.task == "color":
            assert [c for c, _ in blobs] == r.fields["answers"] and r.fields["question"] == "What colour is the shape?"
        elif r.task == "size":
            box = r.context["scene"][0]["box"]
            side = (box[2] - box[0]) / 64  # small: 14-20 % of the side (rounded to pixels), large: 30-42 %
            assert len(blobs) == 1 and r.fields["answers"] == ["small" if side < 0.25 else "large"]
            assert r.fields["answers"] == [r.context["scene"][0]["size"]]
        elif r.task == "count":
            assert str(len(blobs)) == r.fields["answers"][0]
        elif r.task == "position":
            (_, x), = blobs  # one shape, wholly inside the half the answer names
            box = r.context["scene"][0]["box"]
            assert r.fields["question"] == "Is the shape on the left or on the right?"
            assert (box[2] < 32 and x < 32) if r.fields["answers"] == ["left"] else (box[0] > 32 and x > 32)
        elif r.task == "relation":
            first, second = r.context["scene"]  # the scene lists the asked-about shape first
            question = r.fields["question"]
            assert question == f"Is the {first['kind']} left or right of the {second['kind']}?"
            xs = sorted(x for _, x in blobs)
            asked_x = xs[0] if r.fields["answers"] == ["left"] else xs[1]
            assert len(blobs) == 2 and first["box"][0] <= asked_x <= first["box"][2]
        elif r.task == "caption":
            (colour, x), = blobs
            size, caption_colour, kind, *where = r.fields["caption"][0].split()[1:]
            third = ["left", "middle", "right"][min(int(x // (64 / 3)), 2)]
            assert caption_colour == colour and where[-1] == third and kind == r.context["scene"][0]["kind"]
        else:
            assert len(blobs) == 1 and r.fields["answers"][0] == r.context["scene"][0]["kind"]
            assert r.context["scene"][0]["size"] == "large"  # shape questions are asked of large shapes


def test_imbalance_sets_rows_per_task() -> None:
    records = _records(count=4, tasks=["color", "count"], imbalance={"count": 11})
    assert Counter(r.task for r in records) == {"color": 4, "count": 11}
    assert len({r.locator for r in records}) == 15
    with pytest.raises(ValidationError, match="imbalance"):
        ShapesSpec(name="w", tasks=["color"], imbalance={"count": 3})


def test_a_recipe_builds_shapes_into_vqa_and_caption_rows(ws) -> None:  # noqa: ANN001 - the shared fixture
    built = ws.build({"name": "shapes", "seed": 0,
                      "sources": [{"name": "world", "kind": "shapes", "count": 3, "tasks": ["count", "caption"]}]})
    import datasets

    rows = [row for split in datasets.load_from_disk(str(built.path)).values() for row in split]
    assert Counter(r["task"] for r in rows) == {"count": 3, "caption": 3}
    assert all(r["answers"] and r["messages"][-1]["role"] == "assistant" for r in rows)


def test_position_shapes_are_drawn_inside_their_half_at_the_first_try() -> None:
    """The whole box is placed inside the half (no draw-then-reject): every one of 300 scenes fits at once."""
    import random

    from vlmdata.sources.shapes import scene

    for i in range(300):
        (shape,), fields = scene(task="position", rng=random.Random(i), size=64, max_count=6)
        assert shape is not None
        box = shape["box"]
        assert box[2] <= 30 if fields["answers"] == ["left"] else box[0] >= 34


def _nearest_colour(rgb: tuple[int, ...]) -> str:
    return min(COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], rgb, strict=True)))


def test_near_duplicates_redraw_an_earlier_scene_with_jitter_and_keep_the_answer() -> None:
    tasks = ["color", "size", "count", "position", "caption", "relation"]
    plain = {r.locator: r for r in _records(count=60, tasks=tasks, image_size=32, max_count=3)}
    near = {"fraction": 0.3, "shift": 2, "colour": 12, "side": 1}
    records = _records(count=60, tasks=tasks, image_size=32, max_count=3, near_duplicates=near)
    dups = [r for r in records if "near_duplicate_of" in r.context]
    assert 0.2 < len(dups) / len(records) < 0.4
    by_locator = {r.locator: r for r in records}
    moved = 0
    for r in records:
        of = r.context.get("near_duplicate_of")
        if of is None:  # an original row is byte-identical to the world without near-duplicates
            assert r.images[0].data == plain[r.locator].images[0].data
            continue
        original = by_locator[of]
        assert "near_duplicate_of" not in original.context  # it names the original, never another copy
        assert of.split("[")[0] == r.task and int(of[:-1].split("[")[1]) < r.context["row"]
        assert r.fields == original.fields  # same question, same answer
        assert r.images[0].data != original.images[0].data  # re-drawn, not copied
        for old, new in zip(original.context["scene"], r.context["scene"], strict=True):
            assert all(abs(a - b) <= 2 + 1 for a, b in zip(old["box"], new["box"], strict=True))
            assert (old["kind"], old["color"], old["size"]) == (new["kind"], new["color"], new["size"])
            assert all(abs(a - b) <= 12 for a, b in zip(COLOURS[old["color"]], new["rgb"], strict=True))
            moved += old["box"] != new["box"]
        # the pixels still give the answer: colours stay nearest their name, boxes stay in their half/third
        pixels = np.asarray(Image.open(io.BytesIO(r.images[0].data)).convert("RGB"))
        shapes = r.context["scene"]
        if r.task == "color":
            x0, y0, x1, y1 = shapes[0]["box"]
            centre = tuple(int(c) for c in pixels[(y0 + y1) // 2 + 1, (x0 + x1) // 2])
            assert [_nearest_colour(centre)] == r.fields["answers"]
        if r.task == "position":
            box = shapes[0]["box"]
            assert box[2] <= 14 if r.fields["answers"] == ["left"] else box[0] >= 18
        if r.task == "caption":
            box = shapes[0]["box"]
            third = ["left", "middle", "right"][int((box[0] + box[2]) / 2 * 3 // 32)]
            assert r.fields["caption"][0].split()[-1] == third
        if r.task == "count":
            assert len(_blobs_any(pixels)) == int(r.fields["answers"][0])
    assert moved > len(dups) // 2  # most re-drawings really move their shapes
    with pytest.raises(ValidationError, match="fraction"):
        ShapesSpec(name="w", near_duplicates={"fraction": 1.0})


def _blobs_any(pixels: np.ndarray) -> list[int]:
    """Sizes of the 8-connected blobs of non-background pixels (colours may be jittered)."""
    foreground = np.any(pixels != pixels[0, 0], axis=2)
    seen = np.zeros_like(foreground)
    sizes = []
    for y, x in zip(*np.nonzero(foreground), strict=True):
        if seen[y, x]:
            continue
        stack, n = [(y, x)], 0
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            n += 1
            for ny in range(max(cy - 1, 0), min(cy + 2, foreground.shape[0])):
                for nx in range(max(cx - 1, 0), min(cx + 2, foreground.shape[1])):
                    if foreground[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        sizes.append(n)
    return sizes
