"""DICOM → 8-bit PNG, and the header fields that become row context.

Pixel values go through the modality LUT (RescaleSlope / RescaleIntercept, e.g. CT Hounsfield units),
then the VOI window (the recipe's `window`, else the header's WindowCenter/WindowWidth, else the
image's own min..max), then to 8 bits. MONOCHROME1 is inverted so that bright means dense, as
radiologists read it; palette and YBR images become RGB. The dicom source's `DicomView` picks the
frame (or the tiles of a montage) and the windows (three windows make three channels); overlays are
drawn only when asked, and a BurnedInAnnotation: YES file is a reject unless allowed.

Only non-identifying header fields are exposed (no patient name, id, birth date, dates or
institution), so a dataset card or prompt never carries PHI from the header.
"""

from __future__ import annotations

import io
from typing import Any

from vlmdata.medical.dicom_decode import decode_frame
from vlmdata.medical.view import DicomView, WindowValues
from vlmdata.medical.windows import header_windows
from vlmdata.rows import RowError

# Header keyword -> context key. Deliberately excludes every patient/institution identifier, the
# free-text descriptions (PS3.15's basic profile removes them: they often quote names) and the
# manufacturer (a vendor's own test site uses its name as InstitutionName).
HEADER_FIELDS: dict[str, str] = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "PatientPosition": "patient_position",
    "ViewPosition": "view_position",
    "PhotometricInterpretation": "photometric",
    "SliceThickness": "slice_thickness_mm",
    "KVP": "kvp",
    "MagneticFieldStrength": "field_strength_t",
    "ContrastBolusAgent": "contrast_agent",
}
MODALITY_NAMES = {
    "CT": "computed tomography (CT)",
    "MR": "magnetic resonance (MR)",
    "US": "ultrasound (US)",
    "CR": "computed radiography (CR)",
    "DX": "digital radiography (DX)",
    "MG": "mammography (MG)",
    "NM": "nuclear medicine (NM)",
    "PT": "positron emission tomography (PET)",
    "XA": "X-ray angiography (XA)",
    "OT": "other (OT)",
}

POSITIONS = {
    "HFS": "head first, supine", "HFP": "head first, prone", "FFS": "feet first, supine", "FFP": "feet first, prone",
    "HFDR": "head first, decubitus right", "HFDL": "head first, decubitus left",
    "FFDR": "feet first, decubitus right", "FFDL": "feet first, decubitus left",
}


def header_int(ds: Any, keyword: str, default: int) -> int:
    """An integer header value; RowError('dicom_error') naming the field when it is not one."""
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RowError("dicom_error", f"{keyword} is {str(value)!r}, not a number") from None


def _plane(iop: Any) -> str | None:
    """Imaging plane from ImageOrientationPatient: the axis the slice normal points along."""
    try:
        r = [float(x) for x in iop]
    except (TypeError, ValueError):
        return None
    if len(r) != 6:
        return None
    n = (r[1] * r[5] - r[2] * r[4], r[2] * r[3] - r[0] * r[5], r[0] * r[4] - r[1] * r[3])
    axis = max(range(3), key=lambda i: abs(n[i]))
    return ("sagittal", "coronal", "axial")[axis]


def header_context(ds: Any) -> dict[str, Any]:
    """The row context a DICOM header provides to instruction templates."""
    ctx: dict[str, Any] = {}
    for keyword, key in HEADER_FIELDS.items():
        value = ds.get(keyword)
        if value is None or str(value).strip() == "":
            continue
        ctx[key] = float(value) if keyword in ("SliceThickness", "KVP", "MagneticFieldStrength") else str(value).strip()
    if "modality" in ctx:
        ctx["modality_name"] = MODALITY_NAMES.get(ctx["modality"], ctx["modality"])
    if ctx.get("patient_position") in POSITIONS:
        ctx["patient_position_name"] = POSITIONS[ctx["patient_position"]]
    iop = ds.get("ImageOrientationPatient")
    if iop is None and shared_group(ds, "PlaneOrientationSequence") is not None:  # enhanced multi-frame
        iop = shared_group(ds, "PlaneOrientationSequence").get("ImageOrientationPatient")
    plane = _plane(iop)
    if plane:
        ctx["plane"] = plane
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        ctx["pixel_spacing_mm"] = [float(spacing[0]), float(spacing[1])]
    ctx["rows"] = header_int(ds, "Rows", 0)
    ctx["columns"] = header_int(ds, "Columns", 0)
    frames = header_int(ds, "NumberOfFrames", 1)
    ctx["frames"] = frames
    ctx["color"] = header_int(ds, "SamplesPerPixel", 1) > 1 or str(ds.get("PhotometricInterpretation", "")).startswith(
        "PALETTE"
    )
    return ctx


def burned_in_check(ds: Any, *, allow: bool) -> None:
    """Reject a file whose header says its pixels carry burned-in text (names, dates, ...)."""
    if not allow and str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise RowError("burned_in_annotation", "BurnedInAnnotation is YES: the pixels may show patient "
                                               "identifiers; set allow_burned_in: true on the dicom source to keep it")


def _frame_index(frames: int, frame: str | int | None) -> int | None:
    if frames <= 1:
        return None
    idx = frames // 2 if frame in (None, "middle") else (0 if frame == "first" else int(frame))
    if not 0 <= idx < frames:
        raise RowError("dicom_error", f"frame {frame} out of range (file has {frames} frames)")
    return idx


def _to_uint8_rgb(arr: Any, ds: Any) -> Any:
    import numpy as np

    if arr.dtype == np.uint8:
        return arr
    bits = header_int(ds, "BitsStored", 8 * arr.dtype.itemsize)
    return np.clip(arr.astype(np.float64) / max(2 ** bits - 1, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _windowed(values: Any, window: WindowValues, *, invert: bool) -> Any:
    import numpy as np

    if window is None:
        lo, hi = float(values.min()), float(values.max())
        center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    else:
        center, width = window
    lo, hi = center - width / 2, center + width / 2
    grey = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    if invert:
        grey = 1.0 - grey
    return (grey * 255.0 + 0.5).astype(np.uint8)


def _draw_overlays(img: Any, ds: Any, frame: int | None) -> Any:
    """Burn every overlay plane (groups 6000-601E) in white; only when the recipe asks for it."""
    import numpy as np

    out = img.copy()
    for group in range(0x6000, 0x6020, 2):
        if (group, 0x3000) not in ds:
            continue
        try:
            plane = np.asarray(ds.overlay_array(group))
        except Exception as e:
            raise RowError("dicom_error", f"cannot read overlay {group:04X}: {type(e).__name__}: {e}") from None
        if plane.ndim == 3:
            plane = plane[min(frame or 0, plane.shape[0] - 1)]
        origin = ds[group, 0x0050].value if (group, 0x0050) in ds else [1, 1]
        r0, c0 = int(origin[0]) - 1, int(origin[1]) - 1
        h, w = out.shape[:2]
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + plane.shape[0], h), min(c0 + plane.shape[1], w)
        if re <= rs or ce <= cs:
            continue
        mask = plane[rs - r0:re - r0, cs - c0:ce - c0].astype(bool)
        out[rs:re, cs:ce][mask] = 255
    return out


def render_frame(ds: Any, *, frame: int | None, windows: tuple[WindowValues, ...], overlays: bool) -> Any:
    """One frame of `ds` as uint8 (H, W) grey or (H, W, 3) RGB."""
    import numpy as np
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    arr = decode_frame(ds, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = header_int(ds, "SamplesPerPixel", 1)
    if photometric.startswith("PALETTE"):
        img = apply_color_lut(arr, ds)
        img = img if img.dtype == np.uint8 else (img / 257).astype(np.uint8)
    elif samples == 3:
        img = _to_uint8_rgb(arr, ds)
    else:
        values = _modality(arr, ds, apply_modality_lut)
        invert = photometric == "MONOCHROME1"
        chans = [_windowed(values, w, invert=invert) for w in windows]
        img = chans[0] if len(chans) == 1 else np.stack(chans, axis=-1)
    return _draw_overlays(img, ds, frame) if overlays else img


def shared_group(ds: Any, sequence: str) -> Any:
    """The first item of `sequence` in an enhanced multi-frame file's shared functional groups, or None."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and len(shared[0][sequence].value):
        return shared[0][sequence].value[0]
    return None


def _modality(arr: Any, ds: Any, apply_modality_lut: Any) -> Any:
    """Stored values -> modality units (e.g. HU); enhanced files keep the rescale in their functional groups."""
    import numpy as np

    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        item = shared_group(ds, "PixelValueTransformationSequence")
        if item is not None and "RescaleSlope" in item:
            return arr.astype(np.float64) * float(item.RescaleSlope) + float(item.get("RescaleIntercept", 0) or 0)
    return apply_modality_lut(arr, ds).astype(np.float64)


def montage(tiles: list[Any], grid: tuple[int, int]) -> Any:
    """Tiles (all resized to the first one's size) on a rows x cols grid, row-major, black gaps."""
    import numpy as np
    from PIL import Image

    rows, cols = grid
    color = any(t.ndim == 3 for t in tiles)
    tiles = [np.repeat(t[..., None], 3, axis=-1) if color and t.ndim == 2 else t for t in tiles]
    h, w = tiles[0].shape[:2]
    out = np.zeros((rows * h, cols * w, *((3,) if color else ())), dtype=np.uint8)
    for k, t in enumerate(tiles[: rows * cols]):
        if t.shape[:2] != (h, w):
            t = np.asarray(Image.fromarray(t).resize((w, h), Image.Resampling.BILINEAR))
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = t
    return out


def _read(data: bytes) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as e:
        raise RowError("dicom_error", f"cannot read DICOM: {type(e).__name__}: {e}") from None


_HEADER_PREFIX = 1 << 22  # inflated bytes of a deflated file read for its header


def read_header(fp: Any) -> Any:
    """The header of the DICOM file object `fp` (positioned at its start), pixel data never read.

    A deflated file (transfer syntax 1.2.840.10008.1.2.1.99) is one zlib stream after its file meta;
    pydicom inflates all of it even with `stop_before_pixels`, so a 389 KB file of 20000² pixels costs
    GBs before anyone can look at its size. Here only the first few MB of the stream are inflated,
    enough for every element before the pixel data. Other files are read by pydicom as usual."""
    import zlib

    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.tag import Tag

    start = fp.tell()
    read_preamble(fp, force=False)  # no DICM prefix: InvalidDicomError, as dcmread says
    meta = _read_file_meta_info(fp)
    syntax = meta.get("TransferSyntaxUID")
    if syntax != pydicom.uid.DeflatedExplicitVRLittleEndian:
        fp.seek(start)
        return pydicom.dcmread(fp, stop_before_pixels=True)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    while len(out) < _HEADER_PREFIX:
        chunk = fp.read(1 << 16)
        if not chunk:
            break
        out += inflate.decompress(chunk, _HEADER_PREFIX - len(out))
    pixels = Tag(0x7FE0, 0x0010)
    ds = read_dataset(io.BytesIO(bytes(out)), False, True, stop_when=lambda tag, vr, length: tag >= pixels)
    ds.file_meta = meta
    return ds


def header_pixels(data: bytes) -> int:
    """Rows x Columns x frames from the header alone, without decoding (or inflating) pixel data."""
    ds = read_header(io.BytesIO(data))
    return header_int(ds, "Rows", 0) * header_int(ds, "Columns", 0) * max(header_int(ds, "NumberOfFrames", 1), 1)


def _check_pixels(data: bytes, max_pixels: int | None) -> None:
    """RowError('image_too_large') when the header's Rows x Columns x frames exceeds `max_pixels`."""
    if max_pixels is None:
        return
    try:
        n = header_pixels(data)
    except RowError:
        raise
    except Exception as e:
        raise RowError("dicom_error", f"cannot read the header: {type(e).__name__}: {e}") from None
    if n > max_pixels:
        raise RowError("image_too_large", f"header says Rows x Columns x frames = {n} pixels > max_pixels "
                                          f"{max_pixels} (images.max_pixels); pixel data not decoded")


def dicom_to_png(data: bytes, *, window: tuple[float, float] | None, frame: str | int = "middle",
                 view: DicomView | None = None, max_pixels: int | None = None) -> bytes:
    """Convert DICOM bytes to an 8-bit PNG (grey or RGB); raise RowError if impossible.

    Without a `view` (a DICOM file named by a JSONL/CSV row), `window` (else the header's first
    window, else min..max) and `frame` apply; with one, the dicom source decided everything.
    `max_pixels` is checked against the header's Rows x Columns x frames before any pixel is decoded."""
    import pydicom

    _check_pixels(data, max_pixels)
    ds = _read(data)
    frames = header_int(ds, "NumberOfFrames", 1)
    if view is None:
        header = header_windows(ds)
        win = window if window is not None else ((header[0].center, header[0].width) if header else None)
        burned_in_check(ds, allow=False)
        return _png_array(render_frame(ds, frame=_frame_index(frames, frame), windows=(win,), overlays=False))
    burned_in_check(ds, allow=view.allow_burned_in)
    if not view.tiles:
        idx = view.frame if view.frame is not None else _frame_index(frames, "middle")
        if idx is not None and not 0 <= idx < frames:
            raise RowError("dicom_error", f"frame {idx} out of range (file has {frames} frames)")
        return _png_array(render_frame(ds, frame=idx if frames > 1 else None, windows=view.windows,
                                       overlays=view.overlays))
    assert view.grid is not None
    if max_pixels is not None:  # a montage decodes every tile's file: their sizes count together
        sizes: dict[str, int] = {}
        for path, _ in view.tiles:
            if path not in sizes:
                with open(path, "rb") as f:
                    tile = read_header(f)
                sizes[path] = header_int(tile, "Rows", 0) * header_int(tile, "Columns", 0)
        total = sum(sizes[path] for path, _ in view.tiles)
        if total > max_pixels:
            raise RowError("image_too_large", f"the montage's {len(view.tiles)} tiles hold {total} pixels > "
                                              f"max_pixels {max_pixels} (images.max_pixels); not decoded")
    cache: dict[str, Any] = {}
    images = []
    for path, idx in view.tiles:
        tile_ds = cache.get(path)
        if tile_ds is None:
            try:
                tile_ds = cache[path] = pydicom.dcmread(path)
            except Exception as e:
                raise RowError("dicom_error", f"cannot read series file: {type(e).__name__}: {e}") from None
            burned_in_check(tile_ds, allow=view.allow_burned_in)
        images.append(render_frame(tile_ds, frame=idx, windows=view.windows, overlays=view.overlays))
    return _png_array(montage(images, view.grid))


def _png_array(arr: Any) -> bytes:
    from PIL import Image

    return _png(Image.fromarray(arr, mode="RGB" if arr.ndim == 3 else "L"))


def _png(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
