"""The geotiff source on the real example scenes: every grounded answer is recomputed here from the
file itself (closed-form Web Mercator inverse, masks read straight from the file, numpy percentiles)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from vlmdata_kit import Built, Workspace, decode, text_of

from vlmdata.build import build
from vlmdata.geo.geometry import tile_offsets
from vlmdata.recipe import load_recipe

rasterio = pytest.importorskip("rasterio")  # the [geo] extra; the dev extra installs it
from rasterio.windows import Window  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAT = ROOT / "examples/satellite"
R_MERC = 6378137.0


@pytest.fixture(scope="module")
def sat(module_ws: Workspace) -> Built:
    result = build(load_recipe(ROOT / "recipes/satellite.yaml"), out=module_ws.root / "satellite", progress=False)
    return Built(path=result.path, manifest=result.manifest)


def all_rows(built: Built) -> list[dict]:
    import datasets

    return [r for split in datasets.load_from_disk(str(built.path)) for r in built.split_rows(split)]


def turns(row: dict) -> dict[str, str]:
    msgs = row["messages"]
    return {text_of(msgs[i]): text_of(msgs[i + 1]) for i in range(0, len(msgs), 2)}


def test_tile_offsets_cover_the_axis_with_the_overlap() -> None:
    assert tile_offsets(length=1024, size=256, overlap=0.1) == [0, 230, 460, 690, 768]
    assert tile_offsets(length=100, size=256, overlap=0.1) == [0]
    assert tile_offsets(length=512, size=256, overlap=0.0) == [0, 256]
    for length in (300, 717, 1000):
        offs = tile_offsets(length=length, size=128, overlap=0.25)
        assert offs[0] == 0 and offs[-1] == length - 128
        assert all(b - a <= 96 for a, b in zip(offs, offs[1:], strict=False))  # stride = 128 * 0.75


def test_every_chip_is_a_row_or_a_counted_reject(sat: Built) -> None:
    rows = all_rows(sat)
    with rasterio.open(SAT / "RGB.byte.tif") as ds:
        assert (ds.width, ds.height) == (791, 718)
    n_chips = 4 * 4 + 5 * 5 + 3 * 3  # 256 px chips at 10% overlap over 791x718, 1024x1024, 542x542
    assert len(rows) + len(sat.rejects) == n_chips
    assert {r["reason"] for r in sat.rejects} == {"chip_nodata"}
    assert sat.manifest["rejects"] == {"chip_nodata": len(sat.rejects)}
    for rej in sat.rejects:
        frac = int(re.match(r"(\d+)% of the chip is nodata", rej["detail"]).group(1))
        assert frac >= 20


def test_no_scene_in_two_splits_and_meta_keeps_scene_and_window(sat: Built) -> None:
    import datasets

    splits = {}
    for split in datasets.load_from_disk(str(sat.path)):
        for row in sat.split_rows(split):
            assert set(row["meta"]["window"]) == {"col_off", "row_off", "width", "height"}
            splits.setdefault(row["meta"]["scene"], set()).add(split)
    assert set(splits) == {"RGB.byte.tif", "shade.tif", "goes.tif"}
    assert all(len(s) == 1 for s in splits.values()), splits
    assert len({next(iter(s)) for s in splits.values()}) == 2  # the recipe's seed puts a scene in validation


def _mercator_lonlat(x: float, y: float) -> tuple[float, float]:
    return math.degrees(x / R_MERC), math.degrees(2 * math.atan(math.exp(y / R_MERC)) - math.pi / 2)


def test_hillshade_location_extent_and_relief_are_right(sat: Built) -> None:
    rows = [r for r in all_rows(sat) if r["source"] == "hillshade"]
    assert len(rows) == 25
    with rasterio.open(SAT / "shade.tif") as ds:
        scene = ds.read(1).astype(np.float64)
        t = ds.transform
        for row in rows:
            w = row["meta"]["window"]
            cx = t.c + t.a * (w["col_off"] + w["width"] / 2)
            cy = t.f + t.e * (w["row_off"] + w["height"] / 2)
            lon, lat = _mercator_lonlat(cx, cy)
            qa = turns(row)
            loc = qa["Where on Earth is this image? Give the latitude and longitude of its centre."]
            assert loc == f"The centre of this image is at about {abs(lat):.1f}° N, {abs(lon):.1f}° W."
            # Web Mercator metres shrink by cos(latitude) on the ground
            ground_w = w["width"] * t.a * math.cos(math.radians(lat))
            ctx = row["meta"]["context"]
            assert abs(ctx["extent_m"][0] - ground_w) / ground_w < 0.005
            size = qa["How large is the area shown in this image on the ground?"]
            km = float(re.search(r"about ([0-9.]+) km east to west", size).group(1))
            assert km == float(f"{ctx['extent_m'][0] / 1000:.3g}") and abs(km * 1000 - ground_w) / ground_w < 0.01
            chip = scene[w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]]
            ratio = chip.std() / scene.std()
            relief = qa["How rugged is the terrain in this image compared with the whole scene?"]
            word = "more rugged" if ratio > 1.15 else "flatter" if ratio < 0.85 else "about as rugged"
            assert relief.startswith(f"The terrain here is {word} than") or relief.startswith(f"The terrain here is {word} as")
            assert f"varies {ratio:.2f} times" in relief


def test_landsat_nodata_brightness_and_lonlat_are_right(sat: Built) -> None:
    from rasterio.warp import transform

    rows = [r for r in all_rows(sat) if r["source"] == "landsat"]
    assert rows
    with rasterio.open(SAT / "RGB.byte.tif") as ds:
        data = ds.read([1, 2, 3]).astype(np.float64)
        valid = np.all(ds.read_masks([1, 2, 3]) > 0, axis=0)
        limits = [np.percentile(data[i][valid], [2, 98]) for i in range(3)]

        def bright(d: np.ndarray, v: np.ndarray) -> float:
            return float(np.mean([np.rint(np.clip((d[i][v] - lo) / (hi - lo), 0, 1) * 255).mean() / 255
                                  for i, (lo, hi) in enumerate(limits)]))

        scene_b = bright(data, valid)
        for row in rows:
            w = row["meta"]["window"]
            win = Window(w["col_off"], w["row_off"], w["width"], w["height"])
            v = np.all(ds.read_masks([1, 2, 3], window=win) > 0, axis=0)
            d = ds.read([1, 2, 3], window=win).astype(np.float64)
            qa = turns(row)
            nodata = 1 - v.mean()
            pct = round(100 * nodata)
            ans = qa["What fraction of this image has no data?"]
            assert ans == (f"About {pct}% of the image has no data." if pct else
                           "Less than 1% of the image has no data." if nodata else "None of it: every pixel has data.")
            chip_b = bright(d, v)
            ans = qa["Is this part of the scene brighter or darker than the scene as a whole?"]
            assert f"mean brightness {chip_b:.2f} against {scene_b:.2f}" in ans
            word = "brighter than" if chip_b / scene_b > 1.15 else "darker than" if chip_b / scene_b < 0.85 else "about as bright as"
            assert ans.startswith(f"It is {word} the scene")
            # the image is the stretch, nodata black
            im = np.asarray(decode(row["images"][0]["bytes"]))
            lo, hi = limits[0]
            expect = np.rint(np.clip((d[0] - lo) / (hi - lo), 0, 1) * 255)
            expect[~v] = 0
            assert np.array_equal(im[..., 0], expect.astype(np.uint8))
            # the centre in lon/lat, through PROJ directly; UTM grid metres are ground metres to 0.1% this close to the central meridian
            t = ds.transform
            cx, cy = t * (w["col_off"] + w["width"] / 2, w["row_off"] + w["height"] / 2)
            (lon,), (lat,) = transform(ds.crs, "EPSG:4326", [cx], [cy])
            ctx = row["meta"]["context"]
            assert ctx["crs"] == "EPSG:32618" and ctx["band_names"] == ["red", "green", "blue"]
            assert abs(ctx["center_lonlat"][0] - lon) < 1e-5 and abs(ctx["center_lonlat"][1] - lat) < 1e-5
            assert abs(ctx["extent_m"][0] - w["width"] * t.a) / (w["width"] * t.a) < 0.002
            assert ctx["band_stats"][0]["mean"] == pytest.approx(d[0][v].mean(), rel=1e-5)
            w_, s_, e_, n_ = ctx["bounds_lonlat"]
            assert w_ < lon < e_ and s_ < lat < n_


def test_full_disk_chips_without_lonlat_skip_the_questions_they_cannot_answer(sat: Built) -> None:
    rows = [r for r in all_rows(sat) if r["source"] == "goes"]
    assert rows
    off_disk = [r for r in rows if r["meta"]["context"]["extent_m"] is None]
    assert 0 < len(off_disk) < len(rows)  # corner chips' edges lie in space: no ground size there
    for row in rows:
        ctx = row["meta"]["context"]
        asked = "Where on Earth is this image? Give the latitude and longitude of its centre." in turns(row)
        assert asked == (ctx["center_lonlat"] is not None)
        assert ctx["crs"].startswith("+proj=geos")
    from rasterio.warp import transform

    with rasterio.open(SAT / "goes.tif") as ds:
        t = ds.transform
        for row in rows:
            w = row["meta"]["window"]
            cx, cy = t * (w["col_off"] + w["width"] / 2, w["row_off"] + w["height"] / 2)
            (lon,), (lat,) = transform(ds.crs, "EPSG:4326", [cx], [cy])
            assert row["meta"]["context"]["center_lonlat"] == pytest.approx([lon, lat], abs=1e-5)
            assert -75 - 81 < lon < -75 + 81 and abs(lat) < 81  # what a satellite over 75° W can see


def _write_tif(path: Path, data: np.ndarray, *, nodata: float | None, crs: str | None = "EPSG:4326") -> Path:
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "nodata": nodata}
    if crs:
        profile |= {"crs": crs, "transform": from_origin(10.0, 50.0, 0.001, 0.001)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def test_uint16_and_float_scenes_and_bad_files_become_rows_or_rejects(ws: Workspace) -> None:
    rng = np.random.default_rng(0)
    u16 = rng.integers(1000, 20000, size=(4, 64, 64), dtype=np.uint16)
    u16[:, :, :20] = 0  # a nodata strip: 20 of 64 columns
    _write_tif(ws.path("scenes/a_u16.tif"), u16, nodata=0)
    f32 = rng.normal(0.2, 0.05, size=(1, 64, 64)).astype(np.float32)
    f32[0, :8, :] = np.nan
    _write_tif(ws.path("scenes/b_f32.tif"), f32, nodata=None)
    _write_tif(ws.path("scenes/c_nocrs.tif"), u16, nodata=0, crs=None)
    ws.write("scenes/d_broken.tif", b"II*\0 this is not a tiff")
    built = ws.build({"name": "t", "sources": [{
        "name": "s", "kind": "geotiff", "path": "scenes", "bands": [3, 2, 1], "tile": {"size": 32, "overlap": 0},
        "max_nodata": 0.5, "questions": ["nodata", "location"]}]})
    reasons = {r["locator"]: r["reason"] for r in built.rejects}
    assert reasons["c_nocrs.tif"] == "no_crs" and reasons["d_broken.tif"] == "geotiff_error"
    assert reasons["b_f32.tif"] == "bad_band"  # one band, [3, 2, 1] asked for
    assert reasons["a_u16.tif#x0_y0"] == "chip_nodata" and reasons["a_u16.tif#x0_y32"] == "chip_nodata"
    rows = {r["meta"]["locator"]: r for r in built.rows}
    assert set(rows) == {"a_u16.tif#x32_y0", "a_u16.tif#x32_y32"}
    row = rows["a_u16.tif#x32_y0"]
    assert turns(row)["What fraction of this image has no data?"] == "None of it: every pixel has data."
    ctx = row["meta"]["context"]
    assert ctx["bands"] == [3, 2, 1] and ctx["band_stats"][0]["max"] == float(u16[2, :32, 32:].max())
    valid = u16[2][u16[2] > 0].astype(np.float64)
    assert ctx["stretch"][0] == pytest.approx(list(np.percentile(valid, [2, 98])), rel=1e-6)
    im = np.asarray(decode(row["images"][0]["bytes"]))
    assert im.shape == (32, 32, 3) and im.dtype == np.uint8 and im.max() == 255 and im.min() == 0

    built = ws.build({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "scenes/b_f32.tif",
                                                "tile": {"size": 64}, "questions": ["nodata"]}]}, out="out2")
    assert turns(built.rows[0])["What fraction of this image has no data?"] == "About 12% of the image has no data."


def test_bad_geotiff_options_are_refused_with_their_paths(ws: Workspace) -> None:
    from vlmdata.config.errors import ConfigError

    ws.write("a.tif", b"x")
    with pytest.raises(ConfigError) as err:
        ws.load({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "a.tif", "bands": [0],
                                           "tile": {"size": 4, "overlap": 1.5}, "questions": ["where"],
                                           "stretch": {"low": 90, "high": 10}}]})
    text = str(err.value)
    for key in ("sources[0].tile.size", "sources[0].tile.overlap", "sources[0].questions[0]",
                "sources[0].stretch", "sources[0]"):
        assert key in text, text
    with pytest.raises(ConfigError, match=r"give 1 band \(shown grey\) or 3"):
        ws.load({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "a.tif", "bands": [4, 3]}]})


def test_one_row_per_question_and_scene_grouping_without_dedup(ws: Workspace) -> None:
    ws.copy(SAT / "shade.tif", "s/shade.tif")
    built = ws.build({"name": "t", "seed": 0, "sources": [{
        "name": "s", "kind": "geotiff", "path": "s/shade.tif", "nodata": "none", "tile": {"size": 512, "overlap": 0},
        "questions": ["extent", "relief"], "conversation": False}],
        "instruct": {"geo_vqa": {"suffix": "Answer briefly."}}, "split": {"validation": 0.5, "group_by": "scene"}})
    import datasets

    rows = [r for split in datasets.load_from_disk(str(built.path)) for r in built.split_rows(split)]
    assert len(rows) == 4 * 2  # 4 chips x 2 questions, one turn each
    assert {r["meta"]["question"] for r in rows} == {"extent", "relief"}
    assert all(text_of(r["messages"][0]).endswith("\nAnswer briefly.") and len(r["messages"]) == 2 for r in rows)
    assert all(r["answers"] == [text_of(r["messages"][1])] for r in rows)
    split = next(st for st in built.manifest["stages"] if st["stage"] == "split")["details"]
    assert split["groups"] == 1 and split["shared_groups_between_splits"] == 0  # one scene: one group


def test_group_tokens_by_scene() -> None:
    from vlmdata.steps.split import group_tokens

    a = {"id": "1", "source": "s", "image_hashes": ["h1"], "meta": {"scene": "x.tif"}}
    b = {"id": "2", "source": "s", "image_hashes": ["h2"], "meta": {"scene": "x.tif"}}
    c = {"id": "3", "source": "t", "image_hashes": ["h3"], "meta": {"scene": "x.tif"}}  # same name, other source
    d = {"id": "4", "source": "s", "image_hashes": ["h4"], "meta": {}}
    toks = [set(group_tokens(r, group_by="scene")) for r in (a, b, c, d)]
    assert toks[0] & toks[1] and not toks[0] & toks[2] and toks[3] == {"i:h4"}


def test_a_cog_reads_its_statistics_from_an_overview(ws: Workspace) -> None:
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:512, 0:512]
    band = (2000 + 30 * xx + 10 * yy + rng.normal(0, 200, size=(512, 512))).clip(1, 60000).astype(np.uint16)
    path = ws.path("cog/scene.tif")
    with rasterio.open(path, "w", driver="COG", width=512, height=512, count=1, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10), blocksize=128,
                       overview_resampling="average") as ds:
        ds.write(band, 1)
    with rasterio.open(path) as ds:
        assert ds.overviews(1)  # a real COG, with overviews to read the statistics from
    built = ws.build({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "cog", "tile": {"size": 256},
                                                "stats_max_side": 128, "questions": ["extent"]}]})
    assert len(built.rows) == 9  # 0, 230, 256 along each axis
    lo, hi = built.rows[0]["meta"]["context"]["stretch"][0]
    full_lo, full_hi = np.percentile(band, [2, 98])
    assert abs(lo - full_lo) / full_lo < 0.05 and abs(hi - full_hi) / full_hi < 0.05  # from a 128 px read
    assert "about 2.56 km east to west" in text_of(built.rows[0]["messages"][1])  # 256 px x 10 m


def test_validating_a_geotiff_or_pdf_recipe_imports_neither_reader() -> None:
    import subprocess
    import sys

    code = ("import sys; from vlmdata.recipe import load_recipe; "
            "[load_recipe(f'recipes/{n}.yaml') for n in ('satellite', 'document', 'satellite-gpt', 'document-gpt')]; "
            "bad = [m for m in ('rasterio', 'pypdfium2', 'torch', 'numpy') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_geodesic_distance_matches_vincentys_published_example() -> None:
    from vlmdata.geo.geometry import geodesic_m, haversine_m

    # Vincenty (1975) / Geoscience Australia: Flinders Peak to Buninyong, 54 972.271 m on the ellipsoid
    dms = lambda d, m, s: d + m / 60 + s / 3600  # noqa: E731
    args = {"lon1": dms(144, 25, 29.52440), "lat1": -dms(37, 57, 3.72030),
            "lon2": dms(143, 55, 35.38390), "lat2": -dms(37, 39, 10.15610)}
    assert abs(geodesic_m(**args) - 54972.271) < 0.01
    assert abs(haversine_m(**args) - 54972.271) / 54972.271 < 0.005
    assert geodesic_m(lon1=10, lat1=50, lon2=10, lat2=50) == 0.0


def test_a_rotated_grid_gets_its_centre_and_ground_size_from_the_transform(ws: Workspace) -> None:
    from affine import Affine

    # a 10 m grid turned by 30 degrees in UTM 32N: columns run east-north-east
    t = Affine.translation(600000, 5200000) * Affine.rotation(-30) * Affine.scale(10, -10)
    data = np.full((1, 64, 64), 100, dtype=np.uint8)
    path = ws.path("rot/r.tif")
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32632",
                       transform=t) as ds:
        ds.write(data)
    built = ws.build({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "rot", "tile": {"size": 64},
                                                "questions": ["location", "extent"]}]})
    ctx = built.rows[0]["meta"]["context"]
    from rasterio.warp import transform

    cx, cy = t * (32, 32)
    (lon,), (lat,) = transform("EPSG:32632", "EPSG:4326", [cx], [cy])
    assert ctx["center_lonlat"] == pytest.approx([lon, lat], abs=1e-6)
    assert ctx["extent_m"][0] == pytest.approx(640, rel=0.002) and ctx["extent_m"][1] == pytest.approx(640, rel=0.002)
    assert ctx["gsd_m"] == pytest.approx(10, rel=0.002)


def test_a_damaged_block_loses_its_chip_not_the_scene(ws: Workspace) -> None:
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    path = ws.path("dmg/d.tif")
    data = np.random.default_rng(2).integers(1, 255, size=(1, 256, 256), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(10, 50, 0.001, 0.001), tiled=True, blockxsize=32, blockysize=32,
                       compress="deflate") as ds:
        ds.write(data)
        ds.build_overviews([4], Resampling.average)  # the scene statistics read this 64 px overview
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_7_7", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_7_7", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset:offset + size] = b"\xff" * size  # the full-resolution tile at the bottom right, garbled
    path.write_bytes(bytes(raw))
    built = ws.build({"name": "t", "sources": [{"name": "s", "kind": "geotiff", "path": "dmg",
                                                "tile": {"size": 32, "overlap": 0}, "questions": ["nodata"],
                                                "stats_max_side": 64}]})
    assert {r["locator"]: r["reason"] for r in built.rejects} == {"d.tif#x224_y224": "geotiff_error"}
    assert len(built.rows) == 63
