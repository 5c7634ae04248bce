"""Pure geometry and pixel arithmetic for satellite scenes: tile windows, percentile stretch, ground size.

Kept free of rasterio (numpy only) so the grounded questions and their tests can recompute every
number from plain arrays; `vlmdata.sources.geotiff` does the file reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported inside the functions: recipes import this module's users
    import numpy as np

EARTH_RADIUS_M = 6_371_008.8  # the IUGG mean radius: haversine distances are within ~0.5% of geodesic ones


@dataclass(frozen=True)
class ChipWindow:
    """A chip's pixel window in its scene (column/row offset of its top-left corner, its size)."""

    col_off: int
    row_off: int
    width: int
    height: int

    def to_json(self) -> dict[str, int]:
        return {"col_off": self.col_off, "row_off": self.row_off, "width": self.width, "height": self.height}


def tile_offsets(*, length: int, size: int, overlap: float) -> list[int]:
    """Offsets of tiles of `size` along an axis of `length` pixels, `overlap` (a fraction) between neighbours.

    The last tile is aligned to the far edge (so the whole axis is covered and no tile is cut short);
    an axis shorter than one tile gives one tile at 0 (the caller clips it to the scene)."""
    if length <= size:
        return [0]
    stride = max(1, round(size * (1.0 - overlap)))
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


def tile_windows(*, width: int, height: int, size: int, overlap: float) -> list[ChipWindow]:
    """Every chip window of a `width` x `height` scene, row by row (top to bottom, left to right)."""
    return [ChipWindow(col_off=c, row_off=r, width=min(size, width - c), height=min(size, height - r))
            for r in tile_offsets(length=height, size=size, overlap=overlap)
            for c in tile_offsets(length=width, size=size, overlap=overlap)]


def percentiles(*, values: np.ndarray, valid: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The `low` and `high` percentiles of `values` where `valid`; (0, 1) when nothing is valid."""
    import numpy as np

    v = values[valid]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v.astype(np.float64), [low, high])
    return float(lo), float(hi)


def stretch(*, values: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear stretch of `values` from [lo, hi] to 0..255 (uint8, clipped); invalid pixels become 0."""
    import numpy as np

    span = hi - lo if hi > lo else 1.0
    out = np.clip((values.astype(np.float64) - lo) / span, 0.0, 1.0) * 255.0
    out = np.rint(out).astype(np.uint8)
    out[~valid] = 0
    return out


def band_stats(*, values: np.ndarray, valid: np.ndarray) -> dict[str, float | None]:
    """min / max / mean / std of one band's valid pixels, rounded for the context (None when empty)."""
    import numpy as np

    v = values[valid].astype(np.float64)
    if v.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None}
    return {"min": _round(float(v.min())), "max": _round(float(v.max())), "mean": _round(float(v.mean())),
            "std": _round(float(v.std()))}


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def haversine_m(*, lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two lon/lat points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


WGS84_A, WGS84_F = 6_378_137.0, 1 / 298.257223563


def geodesic_m(*, lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance in metres on the WGS 84 ellipsoid (Vincenty's inverse formula, mm-accurate); the
    haversine on the mean sphere (within ~0.5%) for the nearly antipodal points where it does not converge."""
    a, f = WGS84_A, WGS84_F
    b = a * (1 - f)
    big_l = math.radians(lon2 - lon1)
    u1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    su1, cu1, su2, cu2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        sin_s = math.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        if sin_s == 0:
            return 0.0
        cos_s = su1 * su2 + cu1 * cu2 * cl
        sigma = math.atan2(sin_s, cos_s)
        sin_a = cu1 * cu2 * sl / sin_s
        cos2_a = 1 - sin_a**2
        cos_2sm = cos_s - 2 * su1 * su2 / cos2_a if cos2_a else 0.0
        c = f / 16 * cos2_a * (4 + f * (4 - 3 * cos2_a))
        prev = lam
        lam = big_l + (1 - c) * f * sin_a * (sigma + c * sin_s * (cos_2sm + c * cos_s * (-1 + 2 * cos_2sm**2)))
        if abs(lam - prev) < 1e-12:
            break
    else:
        return haversine_m(lon1=lon1, lat1=lat1, lon2=lon2, lat2=lat2)
    u_sq = cos2_a * (a**2 - b**2) / b**2
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    d_sigma = big_b * sin_s * (cos_2sm + big_b / 4 * (cos_s * (-1 + 2 * cos_2sm**2) - big_b / 6 * cos_2sm
                                                      * (-3 + 4 * sin_s**2) * (-3 + 4 * cos_2sm**2)))
    return b * big_a * (sigma - d_sigma)


def finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def ground_extent_m(edges_lonlat: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """(width, height) in metres of a chip from the lon/lat of its edge midpoints (left, right, top, bottom).

    Measured on the WGS 84 ellipsoid, so it is right in any CRS (UTM, Web Mercator, geographic); None when a
    midpoint does not lie on the Earth (a full-disk geostationary scene's corners)."""
    pts = [edges_lonlat[k] for k in ("left", "right", "top", "bottom")]
    if not all(finite(*p) for p in pts):
        return None
    (l_lon, l_lat), (r_lon, r_lat), (t_lon, t_lat), (b_lon, b_lat) = pts
    return (geodesic_m(lon1=l_lon, lat1=l_lat, lon2=r_lon, lat2=r_lat),
            geodesic_m(lon1=t_lon, lat1=t_lat, lon2=b_lon, lat2=b_lat))


def luminance(*, stretched: list[np.ndarray], valid: np.ndarray) -> float | None:
    """Mean display brightness (0..1) of the valid pixels of a stretched chip: the mean over its bands."""
    import numpy as np

    if not valid.any():
        return None
    return float(np.mean([b[valid].astype(np.float64).mean() / 255.0 for b in stretched]))
