"""`vlmdata inspect` and report.html on the satellite and document examples: rows show their chip or
page context, scenes get an overview with the chip grid, pages their text layer's line boxes."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vlmdata.build import build
from vlmdata.cli import main
from vlmdata.output.report.domains import REJECT_COLOUR, SPLIT_COLOURS, page_layouts, scene_overviews
from vlmdata.recipe import load_recipe

pytest.importorskip("rasterio")
pytest.importorskip("pypdfium2")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("domains")
    return {d: build(load_recipe(ROOT / f"recipes/{d}.yaml"), out=root / d, progress=False).path
            for d in ("satellite", "document")}


def _has(im: Image.Image, colour: tuple[int, int, int]) -> bool:
    return bool((np.asarray(im) == np.array(colour, dtype=np.uint8)).all(axis=-1).any())


def test_scene_overviews_draw_the_chip_grid(outs: dict[str, Path]) -> None:
    scenes = {s["scene"]: s for s in scene_overviews(outs["satellite"])}
    assert set(scenes) == {"RGB.byte.tif", "shade.tif", "goes.tif"}
    rgb = scenes["RGB.byte.tif"]
    assert rgb["chips"] == {"train": 4} and rgb["rejected"] == 12  # 16 windows, 12 mostly nodata
    im = Image.open(io.BytesIO(rgb["png"])).convert("RGB")
    assert im.size == (360, round(718 * 360 / 791))  # the scene's shape, at most 360 px
    assert _has(im, SPLIT_COLOURS["train"]) and _has(im, REJECT_COLOUR)
    goes = Image.open(io.BytesIO(scenes["goes.tif"]["png"])).convert("RGB")
    assert scenes["goes.tif"]["chips"] == {"validation": 9} and _has(goes, SPLIT_COLOURS["validation"])
    # the hillshade has no rejected chip: the whole mosaic is chip pixels (varied), not the dark background
    shade = Image.open(io.BytesIO(scenes["shade.tif"]["png"])).convert("L")
    assert shade.size == (360, 360) and len(set(shade.getdata())) > 20


def test_report_and_inspect_show_chip_and_page_context(outs: dict[str, Path]) -> None:
    sat = (outs["satellite"] / "report.html").read_text()
    assert "Scenes and chips" in sat and sat.count("class='overview'") == 3
    assert re.search(r"scene \S+\.tif \(\d+x\d+\), window x=\d+ y=\d+ 256x256, crs EPSG:\d+", sat)
    doc = (outs["document"] / "report.html").read_text()
    assert "Pages and their text layer" in doc and "document multi_page.pdf, page" in doc
    pages = page_layouts(outs["document"])
    assert len(pages) == 5  # 1 + 5 pages, each once, but page 5 (nothing to ask offline) was rejected
    first = next(p for p in pages if p["doc"] == "multi_page.pdf" and p["page"] == 1)
    im = Image.open(io.BytesIO(first["png"])).convert("RGB")
    assert _has(im, (245, 133, 24)) and _has(im, (76, 120, 168))  # heading and body line boxes
    src = re.search(r"<img class='thumb' alt='page' src='data:image/png;base64,([^']+)'", doc).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(src))).width <= 300

    out = CliRunner().invoke(main, ["inspect", str(outs["satellite"]), "-n", "1"])
    assert out.exit_code == 0, out.output
    assert re.search(r"context: centre lon/lat -?\d+\.\d{4}, -?\d+\.\d{4}", out.output) or "context: nodata" in out.output
    out = CliRunner().invoke(main, ["inspect", str(outs["document"]), "-n", "2"])
    assert out.exit_code == 0 and "context: document " in out.output and " lines, " in out.output
