"""`image_size`: drop rows with images too small to see, too large, or too elongated.

Thumbnails and icons carry no visual content to learn from; extreme aspect ratios (banners, strips)
become a few patches after the processor's resize. Sizes are the stored ones (after `images.max_side`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.steps.base import FilterStep, Row


class ImageSizeFilter(FilterStep):
    name: ClassVar[str] = "filter.image_size"

    def __init__(self, *, min_side: int | None = None, max_side: int | None = None,
                 max_aspect: float | None = None) -> None:
        if min_side is None and max_side is None and max_aspect is None:
            raise ValueError("give at least one of min_side, max_side, max_aspect")
        if min_side is not None and max_side is not None and min_side > max_side:
            raise ValueError(f"min_side ({min_side}) is greater than max_side ({max_side})")
        if max_aspect is not None and max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1 (long side / short side), got {max_aspect}")
        self.min_side, self.max_side, self.max_aspect = min_side, max_side, max_aspect

    def keep(self, row: Row) -> bool | str:
        for width, height in row.get("image_sizes") or []:
            short, long = min(width, height), max(width, height)
            if self.min_side is not None and short < self.min_side:
                return "image_too_small"
            if self.max_side is not None and long > self.max_side:
                return "image_too_large"
            if self.max_aspect is not None and long > self.max_aspect * max(short, 1):
                return "image_aspect_ratio"
        return True


class ImageSizeSpec(BaseModel):
    """`{image_size: {min_side: 32, max_aspect: 5}}`; every image of a row must pass."""

    model_config = ConfigDict(extra="forbid")
    min_side: int | None = Field(default=None, ge=1)
    max_side: int | None = Field(default=None, ge=1)
    max_aspect: float | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ImageSizeSpec:
        self.build()
        return self

    def build(self) -> ImageSizeFilter:
        return ImageSizeFilter(min_side=self.min_side, max_side=self.max_side, max_aspect=self.max_aspect)
