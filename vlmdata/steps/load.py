"""Load: verify every image of a source record and turn it into a row.

This is where decoding happens (the expensive part of loading), separate from the sources' format
parsing so an engine can run it in worker processes while sources read sequentially.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from vlmdata.media.depth import DepthWindow
from vlmdata.media.verify import load_image
from vlmdata.rows import Record, Reject, RowError
from vlmdata.steps.base import MapStep, Row


class LoadStep(MapStep):
    name: ClassVar[str] = "load"

    def __init__(self, *, max_pixels: int, max_side: int | None, source_kinds: dict[str, str],
                 depth: DepthWindow | None = None) -> None:
        self.max_pixels = max_pixels
        self.max_side = max_side
        self.source_kinds = source_kinds
        self.depth = depth

    def map(self, batch: list[Record]) -> Iterator[Row | Reject]:
        for rec in batch:
            try:
                images = [load_image(ref, max_pixels=self.max_pixels, max_side=self.max_side,
                                     depth=self.depth) for ref in rec.images]
            except RowError as e:
                yield Reject(rec.source, rec.locator, e.reason, e.detail, self.name)
                continue
            meta: dict[str, Any] = {
                "source": rec.source,
                "source_kind": self.source_kinds.get(rec.source, ""),
                "locator": rec.locator,
                **rec.meta,
            }
            if any(im.window for im in images):  # 16-bit/float greyscale: which values became 0 and 255
                meta["depth_window"] = [im.window for im in images]
            yield {
                "task": rec.task,
                "source": rec.source,
                "images": [im.data for im in images],
                "image_hashes": [im.sha256 for im in images],
                "image_sizes": [(im.width, im.height) for im in images],
                "messages": rec.messages,
                "answers": list(rec.fields.get("answers", [])),
                "fields": rec.fields,
                "context": rec.context,
                "meta": meta,
            }
