"""Image verification: every image is decoded before it enters a dataset.

A row whose image is missing, empty, corrupt, a decompression bomb, or outside the source's image
root never reaches training; it becomes a reject with one of these reasons:

    image_missing, image_empty, image_corrupt, image_too_large, path_escape, dicom_error

Images that are already RGB, upright and small enough keep their original bytes (no generation loss);
the others are re-encoded (PNG, or JPEG for JPEG inputs). The id of a row uses a hash of the decoded
pixels, so re-encoding never changes it. 16-bit and float greyscale is windowed to 8 bits (depth.py),
never clipped; a DICOM file's size comes from its header, checked before its pixels are decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from vlmdata.media.depth import HIGH_DEPTH_MODES, DepthWindow, to_8bit
from vlmdata.medical.dicom_image import dicom_to_png
from vlmdata.medical.view import NiftiView
from vlmdata.medical.volume_image import nifti_to_png
from vlmdata.rows import ImageRef, RowError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit


@dataclass(frozen=True)
class LoadedImage:
    data: bytes
    sha256: str  # of the decoded RGB pixels (+ size), stable across encoders
    width: int
    height: int
    window: dict[str, Any] | None = None  # how a 16-bit/float greyscale image was mapped to 8 bits


@lru_cache(maxsize=256)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _fast_resolve(base: str, value: str) -> str | None:
    """`value` under the already-resolved `base`, checking only its own components (one lstat each).

    None when the quick answer might be wrong (an absolute path, '..', a symlink, not POSIX): the caller
    then resolves the whole path. A source lists every image, so the full `Path.resolve()` (an lstat
    per component of the root too) was the slowest part of reading a source."""
    if os.sep != "/" or value.startswith("/") or "\\" in value:
        return None
    cur = base
    parts = [p for p in value.split("/") if p not in ("", ".")]
    for k, part in enumerate(parts):
        if part == "..":
            return None
        cur = f"{cur}/{part}" if cur != "/" else f"/{part}"
        try:
            mode = os.lstat(cur).st_mode
        except OSError:  # missing: nothing below it can be a symlink; load rejects it as image_missing
            return "/".join([cur, *parts[k + 1:]]) if ".." not in parts[k + 1:] else None
        if stat.S_ISLNK(mode):
            return None
    return cur


def resolve_under(root: Path, value: str) -> Path:
    """`root / value`, refusing anything that escapes `root` (../.., absolute paths, symlinks out)."""
    fast = _fast_resolve(_real_root(os.fspath(root)), value)
    if fast is not None:
        return Path(fast)
    candidate = (root / value).resolve()
    try:
        candidate.relative_to(root.resolve())
    except ValueError:
        raise RowError("path_escape", f"'{value}' resolves to {candidate}, outside image_root {root}") from None
    return candidate


def is_dicom_bytes(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_ref(ref: ImageRef) -> bytes:
    if ref.data is not None:
        if not ref.data:
            raise RowError("image_empty", "image bytes are empty")
        return ref.data
    assert ref.path is not None
    if not ref.path.is_file():
        raise RowError("image_missing", f"no such file: {ref.path}")
    data = ref.path.read_bytes()
    if not data:
        raise RowError("image_empty", f"zero-size file: {ref.path}")
    return data


def load_image(
    ref: ImageRef,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    depth: DepthWindow | None = None,
) -> LoadedImage:
    """Decode, orient (EXIF), convert to RGB, optionally shrink to `max_side`; raise RowError if bad.
    `depth`: how 16-bit / float greyscale becomes 8 bits (default: min-max window)."""
    data = read_ref(ref)
    if isinstance(ref.view, NiftiView):
        data = nifti_to_png(ref, data)
    elif is_dicom_bytes(data[:132]) or (ref.path is not None and ref.path.suffix.lower() == ".dcm"):
        data = dicom_to_png(data, window=ref.window, frame=ref.frame, view=ref.view, max_pixels=max_pixels)
    im, fmt, rotated = _decode(ref, data, max_pixels=max_pixels)
    changed = rotated or im.mode != "RGB"
    im, window = _to_rgb(ref, im, depth)
    if max_side is not None and max(im.size) > max_side:
        im = _shrink(im, max_side)
        changed = True
    if changed or fmt not in ("PNG", "JPEG", "WEBP"):
        data, im = _encode(im, fmt)
    digest = hashlib.sha256(f"{im.width}x{im.height}:".encode())
    digest.update(im.tobytes())
    return LoadedImage(data=data, sha256=digest.hexdigest(), width=im.width, height=im.height, window=window)


def _decode(ref: ImageRef, data: bytes, *, max_pixels: int) -> tuple[Any, str | None, bool]:
    """(the decoded image, upright; its format; whether EXIF rotated it). The pixel limit is checked from the
    header, before decoding."""
    from PIL import Image, ImageOps

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit (max_pixels) from the header, before decoding
    try:
        # not `with`: closing would free the pixels, and a copy of them costs more than the in-memory
        # file it would release
        probe = Image.open(io.BytesIO(data))
        w, h = probe.size
        fmt = probe.format
        if w <= 0 or h <= 0:
            raise RowError("image_empty", f"{ref.describe()}: image has size {w}x{h}")
        if w * h > max_pixels:
            raise RowError("image_too_large", f"{ref.describe()}: {w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
        probe.load()
        exif_orientation = probe.getexif().get(0x0112, 1) if hasattr(probe, "getexif") else 1
        rotated = exif_orientation not in (None, 1)
        return (ImageOps.exif_transpose(probe) if rotated else probe), fmt, rotated
    except RowError:
        raise
    except Exception as e:  # Pillow raises many types for broken files
        raise RowError("image_corrupt", f"{ref.describe()}: cannot decode ({type(e).__name__}: {e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(ref: ImageRef, im: Any, depth: DepthWindow | None) -> tuple[Any, dict[str, Any] | None]:
    """8-bit RGB pixels, and the window that mapped high-depth greyscale to 8 bits (None otherwise)."""
    window = None
    if im.mode in HIGH_DEPTH_MODES:
        try:
            mode = im.mode
            im, (lo, hi) = to_8bit(im, depth)
            window = {"mode": mode, "method": (depth or DepthWindow()).method, "low": lo, "high": hi}
        except Exception as e:
            raise RowError("image_corrupt", f"{ref.describe()}: cannot window {im.mode} pixels "
                                            f"({type(e).__name__}: {e})") from None
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if "A" in im.mode or im.mode == "P" else im.convert("RGB")
    return im, window


def _shrink(im: Any, max_side: int) -> Any:
    from PIL import Image

    scale = max_side / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)


def _encode(im: Any, fmt: str | None) -> tuple[bytes, Any]:
    """Re-encode (JPEG stays JPEG, anything else becomes PNG); returns the bytes and the pixels they hold,
    so the hash is of what is stored (lossy re-encoding changes pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=95)
    else:
        im.save(buf, format="PNG")
    data = buf.getvalue()
    if fmt == "JPEG":
        with Image.open(io.BytesIO(data)) as again:
            im = again.convert("RGB")
    return data, im
