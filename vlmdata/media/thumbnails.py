"""Thumbnails: small JPEG data URIs of images, for rejects.jsonl and report.html.

Steps record a thumbnail of a few rejected rows while the image bytes are at hand, and the report
inlines them, so the report stays one small file that needs nothing beside it.
"""

from __future__ import annotations

import base64
import io


def thumbnail_uri(data: bytes, *, size: int = 220) -> str:
    """A JPEG data URI of the image fitted into size × size (aspect kept)."""
    from PIL import (
        Image,  # here: the recipe imports the steps that call this, and `vlmdata validate` needs no PIL
    )

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
