"""`image_quality`: drop blurry, too dark, too bright, near-blank or extremely elongated images.

    filter:
      - {image_quality: {min_sharpness: 20, min_brightness: 16, max_brightness: 240, min_entropy: 3.0, max_aspect: 4}}

Measured on a grey version at most 256 px on the long side (JPEG draft decoding keeps it cheap):
sharpness = variance of the 4-neighbour Laplacian (OpenCV's classic blur measure, on 0-255 grey
values); brightness = mean grey; entropy = Shannon entropy (bits) of the 256-bin grey histogram
(a flat or nearly blank image has little); aspect = long side / short side. numpy and PIL only.
Every image of a row must pass; a row's scores are those of its worst image for each measure.
Each threshold left out (null) is not checked.
"""

from __future__ import annotations

import io
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.filters.scored import ScoredFilter
from vlmdata.steps.base import Row


def image_scores(blob: bytes, *, side: int = 256) -> dict[str, float]:
    import numpy as np  # here: the recipe (and `vlmdata validate`) imports this module
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        width, height = im.size
        im.draft("L", (side, side))
        grey = im.convert("L")
        if max(grey.size) > side:
            grey.thumbnail((side, side))
        g = np.asarray(grey, dtype=np.float32)
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]) if min(g.shape) > 2 else \
        np.zeros(1, np.float32)
    hist = np.bincount(g.astype(np.uint8).ravel(), minlength=256) / g.size
    p = hist[hist > 0]
    return {"sharpness": float(lap.var()), "brightness": float(g.mean()),
            "entropy": float(-(p * np.log2(p)).sum()), "aspect": max(width, height) / max(1, min(width, height))}


class ImageQualityFilter(ScoredFilter):
    name: ClassVar[str] = "filter.image_quality"

    def __init__(self, *, spec: ImageQualitySpec) -> None:
        wanted = [("sharpness", "min", spec.min_sharpness, "image_blurry"),
                  ("brightness", "min", spec.min_brightness, "image_too_dark"),
                  ("brightness", "max", spec.max_brightness, "image_too_bright"),
                  ("entropy", "min", spec.min_entropy, "image_low_entropy"),
                  ("aspect", "max", spec.max_aspect, "image_aspect_ratio")]
        self.checks = [c for c in wanted if c[2] is not None]

    def scores(self, row: Row) -> dict[str, float] | None:
        blobs = row.get("images") or []
        if not blobs:
            return None
        each = [image_scores(b) for b in blobs]
        worst = {"sharpness": min, "entropy": min, "aspect": max}
        out = {k: f(s[k] for s in each) for k, f in worst.items()}
        # brightness: the image farthest from mid-grey decides
        out["brightness"] = max((s["brightness"] for s in each), key=lambda v: abs(v - 127.5))
        return out


class ImageQualitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_sharpness: float | None = Field(default=10.0, ge=0)
    min_brightness: float | None = Field(default=10.0, ge=0, le=255)
    max_brightness: float | None = Field(default=245.0, ge=0, le=255)
    min_entropy: float | None = Field(default=2.0, ge=0, le=8)
    max_aspect: float | None = Field(default=None, ge=1)

    def build(self) -> ImageQualityFilter:
        return ImageQualityFilter(spec=self)
