"""High-bit-depth greyscale (16-bit PNG `I;16`, TIFF `I;16`/`I`/`F`) → 8 bits without losing its content.

Pillow's own `convert("RGB")` clips such images to 0..255: an X-ray export whose values run 0..4095
comes out almost all white. Instead the values are windowed onto 0..255, as DICOM pixels are: by
default from the image's minimum to its maximum (every grey level kept in order, nothing clipped),
or between two percentiles (`method: percentile`), which spends the 256 levels on the bulk of the
values when a few outliers (burnt-in text, a marker) would squeeze the rest:

    images:
      depth: {method: percentile, low: 1, high: 99}   # default {method: minmax}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


class DepthWindow(BaseModel):
    """How `images.depth` maps high-bit-depth greyscale to 8 bits (see vlmdata/media/depth.py)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["minmax", "percentile"] = "minmax"
    low: float = Field(default=0.5, ge=0, le=100)  # percentiles, for method: percentile
    high: float = Field(default=99.5, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> DepthWindow:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


def to_8bit(im: Any, window: DepthWindow | None = None) -> tuple[Any, tuple[float, float]]:
    """A Pillow image of a high-depth mode as an 8-bit 'L' image, windowed (never clipped at 255), and
    the (low, high) input values that became 0 and 255 (the row's meta records them)."""
    import numpy as np
    from PIL import Image

    window = window or DepthWindow()
    values = np.asarray(im, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Image.new("L", im.size), (0.0, 0.0)
    if window.method == "percentile":
        lo, hi = (float(v) for v in np.percentile(finite, [window.low, window.high]))
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:  # a flat image: one mid grey level, not black or white by accident
        return Image.fromarray(np.full(values.shape, 0 if hi == 0 else 128, dtype=np.uint8), mode="L"), (lo, hi)
    grey = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return Image.fromarray((grey * 255.0 + 0.5).astype(np.uint8), mode="L"), (lo, hi)
