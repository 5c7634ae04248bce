"""Row ids are content hashes: stable across builds and folders, blind to how a picture is encoded,
and sensitive to what the row says."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from vlmdata_kit import Built, Workspace, decode, picture

from vlmdata.schema import image_part, message, row_id, text_part

QA = {"question": "What is it?", "answers": ["blocks"]}


@pytest.fixture(scope="module")
def encodings(module_ws: Workspace) -> tuple[Workspace, Built]:
    """The same picture stored in many ways, one per line, all asked the same question."""
    ws = module_ws
    base = picture(7)
    with_exif = Image.Exif()
    with_exif[0x0112] = 6  # "rotate 90° clockwise to display"
    opaque = base.convert("RGBA")
    palette = base.convert("P")
    files = {
        "png": ("a.png", lambda p: base.save(p)),
        "png_max_compression": ("b.png", lambda p: base.save(p, compress_level=9)),
        "bmp": ("a.bmp", lambda p: base.save(p)),
        "tiff": ("a.tiff", lambda p: base.save(p)),
        "webp_lossless": ("a.webp", lambda p: base.save(p, lossless=True)),
        "rgba_opaque": ("rgba.png", lambda p: opaque.save(p)),
        "palette": ("p.png", lambda p: palette.save(p)),
        "palette_as_rgb": ("p_rgb.png", lambda p: palette.convert("RGB").save(p)),
        "grey": ("l.png", lambda p: base.convert("L").save(p)),
        "grey_as_rgb": ("l_rgb.png", lambda p: base.convert("L").convert("RGB").save(p)),
        "exif_png": ("exif.png", lambda p: base.save(p, exif=with_exif)),
        "upright_png": ("upright.png", lambda p: base.transpose(Image.Transpose.ROTATE_270).save(p)),
        "exif_jpeg": ("exif.jpg", lambda p: base.save(p, quality=95, exif=with_exif)),
        "jpeg": ("a.jpg", lambda p: base.save(p, quality=95)),
        "other_picture": ("other.png", lambda p: picture(8).save(p)),
    }
    for rel, save in files.values():
        save(ws.path(f"imgs/{rel}"))
    ws.jsonl("qa.jsonl", [{"image": rel, **QA} for rel, _ in files.values()]
             + [{"image": "a.png", "question": "What is it really?", "answers": ["blocks"]},
                {"image": "a.png", "question": "What is it?", "answers": ["cubes"]},
                {"image": ["a.png", "other.png"], **QA},
                {"image": ["other.png", "a.png"], **QA}])
    recipe = ws.recipe({"name": "ids", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl",
                                                     "image_root": "imgs"}]})
    built = ws.build(recipe, out="first")
    names = list(files)
    for i, row in enumerate(built.rows[: len(names)]):
        row["name"] = names[i]
    return ws, built


def named(built: Built) -> dict[str, dict]:
    return {r["name"]: r for r in built.rows if "name" in r}


def test_same_picture_in_lossless_encodings_has_the_same_id(encodings: tuple[Workspace, Built]) -> None:
    rows = named(encodings[1])
    same = ["png", "png_max_compression", "bmp", "tiff", "webp_lossless", "rgba_opaque"]
    assert {rows[n]["id"] for n in same} == {rows["png"]["id"]}
    assert rows["palette"]["id"] == rows["palette_as_rgb"]["id"]
    assert rows["grey"]["id"] == rows["grey_as_rgb"]["id"]
    assert rows["exif_png"]["id"] == rows["upright_png"]["id"]  # orientation is applied before hashing
    assert rows["other_picture"]["id"] != rows["png"]["id"]
    assert rows["palette"]["id"] != rows["png"]["id"]  # quantised colours are other pixels


def test_stored_images_are_upright_rgb_and_kept_when_possible(encodings: tuple[Workspace, Built]) -> None:
    ws, built = encodings
    rows = named(built)
    assert rows["png"]["images"][0]["bytes"] == (ws.root / "imgs/a.png").read_bytes()  # no generation loss
    assert rows["jpeg"]["images"][0]["bytes"] == (ws.root / "imgs/a.jpg").read_bytes()
    upright = picture(7).transpose(Image.Transpose.ROTATE_270)
    assert decode(rows["exif_png"]["images"][0]["bytes"]).tobytes() == upright.tobytes()
    exif_jpeg = decode(rows["exif_jpeg"]["images"][0]["bytes"])
    assert exif_jpeg.size == (24, 32)
    with Image.open(ws.root / "imgs/exif.jpg") as raw:
        assert raw.size == (32, 24)
    diff = [abs(a - b) for a, b in zip(exif_jpeg.tobytes(), upright.tobytes(), strict=True)]
    assert sum(diff) / len(diff) < 8  # the rotated JPEG matches the upright picture up to JPEG noise
    for name in ("bmp", "tiff", "rgba_opaque", "palette", "grey", "exif_png"):
        with Image.open(io.BytesIO(rows[name]["images"][0]["bytes"])) as im:
            assert (im.format, im.mode) == ("PNG", "RGB"), name


def test_ids_do_not_depend_on_the_build_or_its_folder(encodings: tuple[Workspace, Built]) -> None:
    ws, first = encodings
    second = ws.build(ws.root / "recipe.yaml", out="elsewhere/second")
    assert [r["id"] for r in second.rows] == [r["id"] for r in first.rows]
    assert [r["images"] for r in second.rows] == [r["images"] for r in first.rows]


def test_ids_survive_a_round_trip_through_the_written_dataset(encodings: tuple[Workspace, Built]) -> None:
    ws, first = encodings
    again = ws.build({"name": "again", "sources": [{"name": "prev", "kind": "hf", "path": "first"}]},
                     out="again")
    assert [r["id"] for r in again.rows] == [r["id"] for r in first.rows]  # incl. the re-encoded EXIF JPEG
    assert [r["meta"]["image_sha256"] for r in again.rows] == [r["meta"]["image_sha256"] for r in first.rows]


def test_what_the_row_says_changes_the_id(encodings: tuple[Workspace, Built]) -> None:
    rows = encodings[1].rows
    base, other_question, other_answer, pair, swapped = rows[0], *rows[-4:]
    assert other_question["id"] != base["id"]
    assert other_answer["id"] != base["id"]
    assert pair["id"] != base["id"]
    assert pair["id"] != swapped["id"]  # image order is part of the content


def test_row_id_is_a_pure_function_of_pixels_and_messages() -> None:
    msgs = [message("user", [image_part(), text_part("q")]), message("assistant", [text_part("a")])]
    same = [{"role": "user", "content": [{"type": "image", "text": "ignored"}, {"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"text": "a", "type": "text"}]}]
    assert row_id(image_hashes=["h1"], messages=msgs) == row_id(image_hashes=["h1"], messages=same)
    assert row_id(image_hashes=["h1"], messages=msgs) != row_id(image_hashes=["h2"], messages=msgs)
    assert row_id(image_hashes=["h1", "h2"], messages=msgs) != row_id(image_hashes=["h2", "h1"], messages=msgs)
    assert len(row_id(image_hashes=[], messages=msgs)) == 32
