"""What every export format reads: the rows of a built dataset, split by split, and their images' file type.

Its own module so that the format writers (`export_webdataset`, `export_lmms_eval`) and the dispatcher
(`export`) import it one way, without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmdata.output.arrow_io import iter_rows, splits


def image_ext(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def iter_export_rows(out_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for split in splits(out_dir):
        for row in iter_rows(out_dir, split):  # raw image bytes, no PIL decode, no memory map
            yield split, row
