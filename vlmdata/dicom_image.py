"""DICOM → 8-bit PNG, and the header fields that become row context.

Pixel values go through the modality LUT (RescaleSlope / RescaleIntercept, e.g. CT Hounsfield units),
then the VOI window (the recipe's `window`, else the header's WindowCenter/WindowWidth, else the
image's own min..max), then to 8 bits. MONOCHROME1 is inverted so that bright means dense, as
radiologists read it; palette and YBR images become RGB. Multi-frame files give one frame.

Only non-identifying header fields are exposed (no patient name, id, birth date, dates or
institution), so a dataset card or prompt never carries PHI from the header.
"""

from __future__ import annotations

import io
from typing import Any

from vlmdata.rows import RowError

# Header keyword -> context key. Deliberately excludes every patient/institution identifier.
HEADER_FIELDS: dict[str, str] = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "StudyDescription": "study_description",
    "SeriesDescription": "series_description",
    "PatientPosition": "patient_position",
    "ViewPosition": "view_position",
    "Manufacturer": "manufacturer",
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
    plane = _plane(ds.get("ImageOrientationPatient"))
    if plane:
        ctx["plane"] = plane
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        ctx["pixel_spacing_mm"] = [float(spacing[0]), float(spacing[1])]
    ctx["rows"] = int(ds.get("Rows", 0) or 0)
    ctx["columns"] = int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    ctx["frames"] = frames
    ctx["color"] = int(ds.get("SamplesPerPixel", 1) or 1) > 1 or str(ds.get("PhotometricInterpretation", "")).startswith(
        "PALETTE"
    )
    return ctx


def _first(value: Any) -> float:
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return float("nan")


_HEADER_PREFIX = 1 << 22  # inflated bytes of a deflated file read for its header


def read_header(fp: Any) -> Any:
    """The header of the DICOM file object `fp` (positioned at its start), pixel data never read.

    A deflated file (transfer syntax 1.2.840.10008.1.2.1.99) is one zlib stream after its file meta;
    pydicom inflates all of it even with `stop_before_pixels`, so a 389 KB file of 20000² pixels costs
    GBs before anyone can look at its size. Here only the first few MB of the stream are inflated,
    enough for every element before the pixel data."""
    import zlib

    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.tag import Tag

    pixels = Tag(0x7FE0, 0x0010)
    read_preamble(fp, force=False)  # no DICM prefix: InvalidDicomError, as dcmread says
    meta = _read_file_meta_info(fp)
    syntax = meta.get("TransferSyntaxUID")
    body = fp
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        out = bytearray()
        while len(out) < _HEADER_PREFIX:
            chunk = fp.read(1 << 16)
            if not chunk:
                break
            out += inflate.decompress(chunk, _HEADER_PREFIX - len(out))
        body = io.BytesIO(bytes(out))
    implicit = syntax in (None, pydicom.uid.ImplicitVRLittleEndian)
    little = syntax != pydicom.uid.ExplicitVRBigEndian
    ds = read_dataset(body, implicit, little, stop_when=lambda tag, vr, length: tag >= pixels)
    ds.file_meta = meta
    return ds


def header_pixels(data: bytes) -> int:
    """Rows x Columns x frames from the header alone, without decoding (or inflating) pixel data."""
    ds = read_header(io.BytesIO(data))
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return rows * cols * max(frames, 1)


def dicom_to_png(data: bytes, *, window: tuple[float, float] | None, frame: str | int = "middle",
                 max_pixels: int | None = None) -> bytes:
    """Convert DICOM bytes to an 8-bit PNG (grey or RGB); raise RowError('dicom_error') if impossible,
    RowError('image_too_large') when the header's Rows x Columns x frames exceeds `max_pixels` (checked
    before any pixel is decoded)."""
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    if max_pixels is not None:
        try:
            n = header_pixels(data)
        except Exception as e:
            raise RowError("dicom_error", f"cannot read the header: {type(e).__name__}: {e}") from None
        if n > max_pixels:
            raise RowError("image_too_large", f"header says Rows x Columns x frames = {n} pixels > max_pixels "
                                              f"{max_pixels} (images.max_pixels); pixel data not decoded")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        arr = ds.pixel_array  # pydicom >= 3 converts YCbCr to RGB here
    except Exception as e:
        syntax = getattr(getattr(locals().get("ds"), "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {syntax.name}; a decoder plugin such as pylibjpeg may be needed)" if syntax else ""
        raise RowError("dicom_error", f"cannot decode pixel data: {type(e).__name__}: {e}{hint}") from None

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        idx = frames // 2 if frame == "middle" else (0 if frame == "first" else int(frame))
        if not 0 <= idx < frames:
            raise RowError("dicom_error", f"frame {frame} out of range (file has {frames} frames)")
        arr = arr[idx]

    if photometric.startswith("PALETTE"):
        rgb = apply_color_lut(arr, ds)
        rgb = (rgb / 257).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
        return _png(Image.fromarray(rgb, mode="RGB"))
    if samples == 3:
        return _png(Image.fromarray(arr.astype(np.uint8), mode="RGB"))

    values = apply_modality_lut(arr, ds).astype(np.float64)
    if window is not None:
        center, width = window
    else:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        lo, hi = float(values.min()), float(values.max())
        center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    lo, hi = center - width / 2, center + width / 2
    grey = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        grey = 1.0 - grey
    return _png(Image.fromarray((grey * 255.0 + 0.5).astype(np.uint8), mode="L"))


def _png(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
