"""Grounded questions about a satellite chip, without an LLM: every answer is read off its context.

The context (built by the `geotiff` source from the pixels and the georeferencing) holds the chip's
centre in lon/lat, its ground extent, its nodata fraction, its display brightness and the scene's, and
the spread of its first band against the scene's (the relief, for a hillshade). Each kind below turns
one of those numbers into a question and a short answer, or into nothing when the number is unknown
(a chip off the Earth's disk has no lon/lat). The numbers are rounded here, once, so an answer and the
tests that recompute it agree on what "about" means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

GeoQuestion = Literal["location", "extent", "nodata", "brightness", "relief"]
GEO_QUESTIONS: tuple[str, ...] = ("location", "extent", "nodata", "brightness", "relief")
# Relative to the scene: within +-RELATIVE_BAND of the scene's value counts as "about the same".
RELATIVE_BAND = 0.15

QUESTIONS: dict[str, str] = {
    "location": "Where on Earth is this image? Give the latitude and longitude of its centre.",
    "extent": "How large is the area shown in this image on the ground?",
    "nodata": "What fraction of this image has no data?",
    "brightness": "Is this part of the scene brighter or darker than the scene as a whole?",
    "relief": "How rugged is the terrain in this image compared with the whole scene?",
}


def lat_lon_text(*, lon: float, lat: float, decimals: int = 1) -> str:
    """'24.7° N, 77.8° W' (rounded to `decimals`)."""
    ns = "N" if round(lat, decimals) >= 0 else "S"
    ew = "E" if round(lon, decimals) >= 0 else "W"
    return f"{abs(lat):.{decimals}f}° {ns}, {abs(lon):.{decimals}f}° {ew}"


def distance_text(metres: float) -> str:
    """A ground distance to 3 significant figures: '134 km', '4.28 km', '850 m'."""
    if metres >= 1000:
        km = float(f"{metres / 1000:.3g}")
        return f"{km:g} km"
    return f"{float(f'{metres:.3g}'):g} m"


def relative_word(ratio: float, *, more: str, less: str, same: str) -> str:
    if ratio > 1 + RELATIVE_BAND:
        return more
    if ratio < 1 - RELATIVE_BAND:
        return less
    return same


def _location(ctx: dict[str, Any]) -> str | None:
    centre = ctx.get("center_lonlat")
    if not centre:
        return None
    return f"The centre of this image is at about {lat_lon_text(lon=centre[0], lat=centre[1])}."


def _extent(ctx: dict[str, Any]) -> str | None:
    extent, gsd = ctx.get("extent_m"), ctx.get("gsd_m")
    if not extent or not gsd:
        return None
    return (f"It covers about {distance_text(extent[0])} east to west and {distance_text(extent[1])} north to "
            f"south, at roughly {distance_text(gsd)} per pixel.")


def _nodata(ctx: dict[str, Any]) -> str | None:
    frac = ctx.get("nodata_fraction")
    if frac is None:
        return None
    pct = round(100 * frac)
    if pct == 0:
        return "None of it: every pixel has data." if frac == 0 else "Less than 1% of the image has no data."
    return f"About {pct}% of the image has no data."


def _brightness(ctx: dict[str, Any]) -> str | None:
    chip, scene = ctx.get("brightness"), ctx.get("scene_brightness")
    if chip is None or not scene:
        return None
    word = relative_word(chip / scene, more="brighter than", less="darker than", same="about as bright as")
    return f"It is {word} the scene as a whole (mean brightness {chip:.2f} against {scene:.2f} on a 0-1 scale)."


def _relief(ctx: dict[str, Any]) -> str | None:
    ratio = ctx.get("relief_ratio")
    if ratio is None:
        return None
    word = relative_word(ratio, more="more rugged than", less="flatter than", same="about as rugged as")
    return f"The terrain here is {word} the scene as a whole (its shading varies {ratio:.2f} times as much)."


ANSWERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "location": _location, "extent": _extent, "nodata": _nodata, "brightness": _brightness, "relief": _relief,
}


def chip_questions(*, context: dict[str, Any], kinds: list[str]) -> list[tuple[str, str, str]]:
    """(kind, question, answer) for each of `kinds` the context can answer, in the order given."""
    out = []
    for kind in kinds:
        answer = ANSWERS[kind](context)
        if answer is not None:
            out.append((kind, QUESTIONS[kind], answer))
    return out


def chip_facts(*, context: dict[str, Any], kinds: list[str]) -> list[str]:
    """The chip's context as short symbolic lines, for an LLM template (as LLaVA feeds COCO boxes).

    Brightness and relief lines only for the `kinds` the source asks about: relief means nothing on an
    optical scene, only on a hillshade or an elevation model."""
    facts = []
    if context.get("center_lonlat"):
        lon, lat = context["center_lonlat"]
        facts.append(f"centre: {lat_lon_text(lon=lon, lat=lat, decimals=2)}")
    if context.get("extent_m"):
        w, h = context["extent_m"]
        facts.append(f"ground extent: {distance_text(w)} x {distance_text(h)}")
    if context.get("crs"):
        facts.append(f"coordinate reference system: {context['crs']}")
    for stat in context.get("band_stats") or []:
        if stat.get("mean") is not None:
            facts.append(f"band {stat['band']} ({stat['name']}): mean {stat['mean']:g}, std {stat['std']:g}, "
                         f"range {stat['min']:g}-{stat['max']:g}")
    if context.get("nodata_fraction"):
        facts.append(f"no-data fraction: {context['nodata_fraction']:.2f}")
    for kind in ("brightness", "relief"):
        if kind not in kinds:
            continue
        answer = ANSWERS[kind](context)
        if answer:
            facts.append(answer)
    return facts
