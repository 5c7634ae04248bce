"""`geotiff`: GeoTIFF / COG scenes, tiled into chips a VLM can read, each with its georeferenced context.

    - name: scenes
      kind: geotiff
      path: ../examples/satellite          # a file, or every .tif/.tiff under a folder
      bands: [3, 2, 1]                     # 1-based; default: the first three (or the only one)
      tile: {size: 448, overlap: 0.1}
      max_nodata: 0.2                      # chips with more nodata than this are skipped (counted as rejects)
      stretch: {low: 2, high: 98}          # per-band percentiles of the scene -> 0..255
      questions: [location, extent, nodata, brightness]

Reading goes through rasterio (the `[geo]` extra; its wheels bundle GDAL and PROJ), not tifffile:
chips need the scene CRS turned into lon/lat (PROJ), masks from nodata values, internal masks and
alpha bands, and windowed and overview reads of compressed COGs, which tifffile does not give.
rasterio is imported inside the reader, so validating a recipe never needs it.

Each chip is one row. Its image is the stretched bands (the same percentiles for every chip of a
scene, so chips are comparable), nodata black. Its context has the bounds in the scene CRS and in
lon/lat, the centre, the ground extent and sample distance (measured on the ground from lon/lat, so
right in any CRS), the CRS code, band names and per-band statistics of the raw values, and the
numbers the grounded questions read (`vlmdata.geo.questions`). Its `meta` keeps the scene id and
the pixel window, so `split.group_by: scene` keeps every chip of a scene in one split. With
`conversation: true` a chip's questions are the turns of one conversation; otherwise each question
is a row of its own (task `task`, the instruct step's VQA suffix applies).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.config.path_types import ExistingPath
from vlmdata.geo.geometry import (
    band_stats,
    finite,
    ground_extent_m,
    luminance,
    percentiles,
    stretch,
    tile_windows,
)
from vlmdata.geo.questions import GeoQuestion, chip_facts, chip_questions
from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.schema import image_part, message, text_part
from vlmdata.sources.base import SourceSpec

SUFFIXES = (".tif", ".tiff")


class TileSpec(BaseModel):
    """Chip size in pixels of the scene, and the overlap between neighbouring chips (a fraction)."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(default=448, ge=16, le=8192)
    overlap: float = Field(default=0.1, ge=0.0, lt=0.9)


class StretchSpec(BaseModel):
    """Percentiles of each band's valid scene pixels that map to black and white."""

    model_config = ConfigDict(extra="forbid")
    low: float = Field(default=2.0, ge=0.0, lt=100.0)
    high: float = Field(default=98.0, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> StretchSpec:
        if self.low >= self.high:
            raise ValueError(f"stretch.low ({self.low}) must be below stretch.high ({self.high})")
        return self


class GeoTiffSpec(SourceSpec):
    kind: Literal["geotiff"] = "geotiff"
    path: ExistingPath
    task: str = "geo_vqa"
    bands: list[int] | None = None  # 1 (grey) or 3 (red, green, blue) 1-based band numbers
    tile: TileSpec = Field(default_factory=TileSpec)
    max_nodata: float = Field(default=0.2, ge=0.0, le=1.0)
    # Which pixels have no data: the file's own masks ("file"), none at all ("none": for a file whose
    # nodata value collides with real values), or every pixel equal to this value in all bands.
    nodata: Literal["file", "none"] | float = "file"
    stretch: StretchSpec = Field(default_factory=StretchSpec)
    questions: list[GeoQuestion] = Field(default_factory=lambda: ["location", "extent", "nodata", "brightness"])
    conversation: bool = True
    require_crs: bool = True
    stats_max_side: int = Field(default=2048, ge=64)  # scene statistics come from a read at most this large

    @model_validator(mode="after")
    def _bands_positive(self) -> GeoTiffSpec:
        if self.bands is not None and any(b < 1 for b in self.bands):
            raise ValueError(f"bands are 1-based band numbers, got {self.bands}")
        if self.bands is not None and len(self.bands) not in (1, 3):
            raise ValueError(f"bands: give 1 band (shown grey) or 3 (shown as red, green, blue), got {len(self.bands)}: "
                             f"{self.bands}")
        return self


def scene_files(path: Path) -> tuple[Path, list[Path]]:
    """(root, scene files under it, sorted): a file is its own root's only scene."""
    if path.is_file():
        return path.parent, [path]
    return path, sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def band_names(ds: Any, bands: list[int]) -> list[str]:
    """A band's description if the file has one, else its colour interpretation, else 'band N'."""
    names = []
    for b in bands:
        desc = ds.descriptions[b - 1]
        interp = ds.colorinterp[b - 1].name
        names.append(desc or (interp if interp not in ("undefined", "alpha") else f"band {b}"))
    return names


def crs_code(crs: Any) -> str | None:
    """'EPSG:32618' when the CRS has an authority code, else its name (a geostationary projection has none)."""
    if crs is None:
        return None
    auth = crs.to_authority()
    if auth:
        return f"{auth[0]}:{auth[1]}"
    try:
        import json

        return str(json.loads(crs.to_json()).get("name") or crs.to_proj4() or "custom")
    except Exception:
        return crs.to_proj4() or "custom"


def _valid(spec: GeoTiffSpec, data: Any, masks: Any) -> Any:
    """Pixels with data in every selected band: the file's masks (nodata value, internal mask, alpha) or
    the recipe's `nodata`, and never NaN or inf."""
    import numpy as np

    if spec.nodata == "file":
        valid = np.all(masks > 0, axis=0)
    elif spec.nodata == "none":
        valid = np.ones(data.shape[1:], dtype=bool)
    else:
        valid = np.all(data != spec.nodata, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    return valid


class _Scene:
    """One open scene and what every chip of it shares: bands, stretch limits, scene-wide statistics."""

    def __init__(self, ds: Any, *, spec: GeoTiffSpec, bands: list[int]) -> None:
        import numpy as np

        self.ds, self.spec, self.bands = ds, spec, bands
        scale = max(1.0, max(ds.width, ds.height) / spec.stats_max_side)
        shape = (len(bands), max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
        data = ds.read(bands, out_shape=shape)
        masks = ds.read_masks(bands, out_shape=shape)
        valid = _valid(spec, data, masks)
        self.limits = [percentiles(values=data[i], valid=valid, low=spec.stretch.low, high=spec.stretch.high)
                       for i in range(len(bands))]
        stretched = [stretch(values=data[i], valid=valid, lo=lo, hi=hi) for i, (lo, hi) in enumerate(self.limits)]
        self.brightness = luminance(stretched=stretched, valid=valid)
        first = data[0][valid].astype(np.float64)
        self.std = float(first.std()) if first.size else None


def _lonlat(ds: Any, xs: list[float], ys: list[float]) -> list[tuple[float, float]]:
    """Points of the scene CRS in lon/lat (inf where a point is off the Earth, as PROJ reports it)."""
    from rasterio.warp import transform

    if ds.crs.to_epsg() == 4326:
        return list(zip(xs, ys, strict=True))
    try:
        lons, lats = transform(ds.crs, "EPSG:4326", xs, ys)
        return list(zip(lons, lats, strict=True))
    except Exception:  # one point off the projection's domain fails the batch: go point by point
        pass
    out = []
    for x, y in zip(xs, ys, strict=True):
        try:
            (lon,), (lat,) = transform(ds.crs, "EPSG:4326", [x], [y])
        except Exception:
            lon = lat = math.inf
        out.append((lon, lat))
    return out


def chip_geo(ds: Any, window: Any) -> dict[str, Any]:
    """Bounds (scene CRS and lon/lat), centre, ground extent and sample distance of one chip window.

    Points are mapped from pixel positions through the scene's affine transform, so a rotated or
    sheared grid gives the right centre and edge midpoints; bounds are the envelope of the corners."""
    t = ds.transform
    c0, r0, w, h = window.col_off, window.row_off, window.width, window.height
    pixels = [(c0 + w / 2, r0 + h / 2), (c0, r0 + h / 2), (c0 + w, r0 + h / 2), (c0 + w / 2, r0),
              (c0 + w / 2, r0 + h), (c0, r0), (c0 + w, r0), (c0, r0 + h), (c0 + w, r0 + h)]
    xy = [(t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f) for c, r in pixels]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    out: dict[str, Any] = {"bounds": [_r(min(xs[5:])), _r(min(ys[5:])), _r(max(xs[5:])), _r(max(ys[5:]))],
                           "res": [_r(math.hypot(t.a, t.d)), _r(math.hypot(t.b, t.e))]}
    if ds.crs is None:
        return out | {"bounds_lonlat": None, "center_lonlat": None, "extent_m": None, "gsd_m": None}
    pts = _lonlat(ds, xs, ys)
    centre = pts[0]
    out["center_lonlat"] = [round(centre[0], 6), round(centre[1], 6)] if finite(*centre) else None
    corners = pts[5:]
    if all(finite(*p) for p in corners):
        lons, lats = [p[0] for p in corners], [p[1] for p in corners]
        out["bounds_lonlat"] = [round(min(lons), 6), round(min(lats), 6), round(max(lons), 6), round(max(lats), 6)]
    else:
        out["bounds_lonlat"] = None
    extent = ground_extent_m({"left": pts[1], "right": pts[2], "top": pts[3], "bottom": pts[4]})
    out["extent_m"] = [round(extent[0], 1), round(extent[1], 1)] if extent else None
    out["gsd_m"] = round(extent[0] / window.width, 3) if extent else None
    return out


def _r(x: float) -> float:
    return round(float(x), 6)


def _png(channels: list[Any]) -> bytes:
    import numpy as np
    from PIL import Image

    arr = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)  # 1 or 3 bands (the spec checks)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def read_geotiff(spec: GeoTiffSpec) -> Iterator[Record | Reject]:
    try:
        import rasterio
    except ImportError:  # validated recipes name the source kind; say how to get its reader
        raise RuntimeError("the geotiff source needs rasterio: pip install 'vlmdata[geo]'") from None

    root, files = scene_files(spec.path)
    for file in files:
        scene = file.relative_to(root).as_posix()
        try:
            with warnings.catch_warnings():  # a scene without georeferencing is a reject (no_crs), not a warning
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                ds = rasterio.open(file)
            with ds:
                yield from _read_scene(ds, spec=spec, scene=scene)
        except rasterio.errors.RasterioError as e:
            yield Reject(spec.name, scene, "geotiff_error", f"cannot read {scene}: {type(e).__name__}: {e}", "load")


def _read_scene(ds: Any, *, spec: GeoTiffSpec, scene: str) -> Iterator[Record | Reject]:
    """The scene's chips, each a record (or one per question), after the scene-wide checks."""
    import rasterio.errors
    from rasterio.windows import Window

    bands = spec.bands or ([1, 2, 3] if ds.count >= 3 else [1])
    bad = [b for b in bands if b > ds.count]
    if bad:
        yield Reject(spec.name, scene, "bad_band", f"bands {bad} not in {scene}, which has {ds.count} band(s) "
                                                  f"(bands are 1-based)", "load")
        return
    if ds.crs is None and spec.require_crs:
        yield Reject(spec.name, scene, "no_crs", f"{scene} has no coordinate reference system (not georeferenced); "
                                                "set require_crs: false to tile it anyway", "load")
        return
    sc = _Scene(ds, spec=spec, bands=bands)
    for window in tile_windows(width=ds.width, height=ds.height, size=spec.tile.size, overlap=spec.tile.overlap):
        locator = f"{scene}#x{window.col_off}_y{window.row_off}"
        w = Window(window.col_off, window.row_off, window.width, window.height)
        try:
            data = ds.read(bands, window=w)
            valid = _valid(spec, data, ds.read_masks(bands, window=w))
        except rasterio.errors.RasterioError as e:  # a damaged block: this chip is lost, not the scene
            yield Reject(spec.name, locator, "geotiff_error", f"cannot read the chip: {type(e).__name__}: {e}", "load")
            continue
        nodata = round(1.0 - float(valid.mean()), 6)
        if nodata > spec.max_nodata:
            yield Reject(spec.name, locator, "chip_nodata", f"{nodata:.0%} of the chip is nodata > max_nodata "
                                                           f"{spec.max_nodata:.0%}", "load",
                         extra={"scene": scene, "window": window.to_json(), "scene_size": [ds.width, ds.height]})
            continue
        stretched = [stretch(values=data[i], valid=valid, lo=lo, hi=hi) for i, (lo, hi) in enumerate(sc.limits)]
        context = _chip_context(ds, sc, window=window, data=data, valid=valid, stretched=stretched, bands=bands,
                                scene=scene, nodata=nodata, spec=spec)
        yield from _chip_records(spec, image=ImageRef(data=_png(stretched)), context=context, locator=locator,
                                 meta={"scene": scene, "window": window.to_json()})


def _chip_context(ds: Any, sc: _Scene, *, window: Any, data: Any, valid: Any, stretched: list[Any],
                  bands: list[int], scene: str, nodata: float, spec: GeoTiffSpec) -> dict[str, Any]:
    """What a chip's questions and report are made from: place, bands, statistics, brightness, facts."""
    import numpy as np

    names = band_names(ds, bands)
    first = data[0][valid].astype(np.float64)
    context: dict[str, Any] = {
        "scene_file": scene, "scene_size": [ds.width, ds.height], "window": window.to_json(), "crs": crs_code(ds.crs),
        **chip_geo(ds, window),
        "bands": bands, "band_names": names,
        "band_stats": [{"band": b, "name": n, **band_stats(values=data[i], valid=valid)}
                       for i, (b, n) in enumerate(zip(bands, names, strict=True))],
        "stretch": [[_r(lo), _r(hi)] for lo, hi in sc.limits],
        "nodata_fraction": nodata,
        "brightness": _opt(luminance(stretched=stretched, valid=valid)),
        "scene_brightness": _opt(sc.brightness),
        "relief_ratio": round(float(first.std()) / sc.std, 4) if sc.std and first.size else None,
    }
    context["facts"] = chip_facts(context=context, kinds=list(spec.questions))
    return context


def _chip_records(spec: GeoTiffSpec, *, image: ImageRef, context: dict[str, Any], locator: str,
                  meta: dict[str, Any]) -> Iterator[Record]:
    """One conversation record over all the chip's questions, or one VQA record per question."""
    qa = chip_questions(context=context, kinds=list(spec.questions))
    if spec.conversation or not qa:
        messages = None
        if qa:
            messages = []
            for k, (_, q, a) in enumerate(qa):
                parts = [image_part(), text_part(q)] if k == 0 else [text_part(q)]
                messages += [message("user", parts), message("assistant", [text_part(a)])]
        yield Record(source=spec.name, locator=locator, task=spec.task, images=[image], messages=messages,
                     fields={}, context=context, meta=meta)
        return
    for kind, q, a in qa:
        yield Record(source=spec.name, locator=f"{locator}/{kind}", task=spec.task, images=[image],
                     fields={"question": q, "answers": [a]}, context=context, meta={**meta, "question": kind})


def _opt(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
