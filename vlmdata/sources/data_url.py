"""Image values that are not file paths: `data:` URLs (images shipped inside JSON) and remote URLs.

    decode_data_url("data:image/png;base64,iVBOR...")  -> the PNG's bytes
    is_remote_url("https://example.org/a.jpg")        -> True (vlmdata reads nothing from the network)

A malformed data URL is a row error (`image_corrupt`), never a crash; the bytes are then verified like any
other image by the load step.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_to_bytes

from vlmdata.rows import RowError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
_REMOTE = re.compile(r"^(?:https?|s3|gs|ftp)://", re.IGNORECASE)


def is_data_url(value: str) -> bool:
    return value[:5].lower() == "data:"


def is_remote_url(value: str) -> bool:
    return bool(_REMOTE.match(value))


def decode_data_url(value: str) -> bytes:
    """The payload of a `data:[mime][;base64],...` URL; RowError('image_corrupt') if it is malformed."""
    m = _DATA_URL.match(value)
    if m is None:
        raise RowError("image_corrupt", f"malformed data URL (starts {value[:40]!r})")
    mime = (m.group("mime") or "").lower()
    if mime and not mime.startswith(("image/", "application/dicom", "application/octet-stream")):
        raise RowError("image_corrupt", f"data URL holds {mime!r}, not an image")
    payload = value[m.end():]
    if not m.group("b64"):
        return unquote_to_bytes(payload)
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RowError("image_corrupt", f"data URL is not valid base64 ({e})") from None
