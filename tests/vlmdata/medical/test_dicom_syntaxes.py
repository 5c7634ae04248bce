"""Every common transfer syntax decodes (the `medical` extra), on pydicom's and pydicom-data's real files.

Compressed variants are compared with their uncompressed twins: lossless ones must be bit-identical,
lossy ones within the stated tolerance (max and mean absolute error, in stored-value units).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from vlmdata_kit import Built, Workspace, dicom_file

from vlmdata.medical.dicom_image import dicom_to_png
from vlmdata.medical.view import DicomView
from vlmdata.rows import RowError

LOSSLESS = [  # (uncompressed twin, compressed variant, transfer syntax)
    ("MR_small.dcm", "MR_small_RLE.dcm", "RLE Lossless"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
    ("MR_small.dcm", "MR_small_bigendian.dcm", "Explicit VR Big Endian"),
    ("emri_small.dcm", "emri_small_RLE.dcm", "RLE Lossless"),
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
    ("emri_small.dcm", "emri_small_big_endian.dcm", "Explicit VR Big Endian"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"),
    ("SC_rgb.dcm", "SC_rgb_rle.dcm", "RLE Lossless"),
    ("JPEG2000_UNC.dcm", "JPEG2000.dcm", "JPEG 2000 Image Compression"),
    ("US1_UNCR.dcm", "US1_J2KR.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("693_UNCR.dcm", "693_J2KR.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "RLE Lossless"),
]
LOSSY = [  # (twin, variant, syntax, max abs error, mean abs error) — measured, with headroom
    ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1)", 8, 1.0),
    ("SC_rgb.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "JPEG Baseline (Process 1)", 2, 0.3),
    ("JPEG2000_UNC.dcm", "JPGExtended.dcm", "JPEG Extended (Process 2 and 4)", 110, 5.0),
    ("US1_UNCR.dcm", "US1_J2KI.dcm", "JPEG 2000 Image Compression", 140, 2.5),
    ("MR2_UNCR.dcm", "MR2_J2KI.dcm", "JPEG 2000 Image Compression", 40, 5.0),
]


def stored(name: str) -> np.ndarray:
    return pydicom.dcmread(dicom_file(name)).pixel_array.astype(np.int64)


@pytest.mark.parametrize(("twin", "variant", "syntax"), LOSSLESS, ids=[v for _, v, _ in LOSSLESS])
def test_lossless_variant_decodes_to_its_twin(twin: str, variant: str, syntax: str) -> None:
    ds = pydicom.dcmread(dicom_file(variant), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.name == syntax
    assert np.array_equal(stored(variant), stored(twin))


@pytest.mark.parametrize(("twin", "variant", "syntax", "max_err", "mean_err"), LOSSY, ids=[v for _, v, *_ in LOSSY])
def test_lossy_variant_is_within_tolerance(twin: str, variant: str, syntax: str, max_err: int, mean_err: float) -> None:
    ds = pydicom.dcmread(dicom_file(variant), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID.name == syntax
    a, b = stored(variant), stored(twin)
    assert a.shape == b.shape
    err = np.abs(a - b)
    assert 0 < err.max() <= max_err and err.mean() <= mean_err  # lossy: not identical, but close


def test_deflated_and_near_lossless_jpeg_ls_decode() -> None:
    for name, syntax in [("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
                         ("JPEGLSNearLossless_08.dcm", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
                         ("JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG Lossless, Non-Hierarchical, First-Order Prediction "
                                                            "(Process 14 [Selection Value 1])")]:
        data = dicom_file(name).read_bytes()
        ds = pydicom.dcmread(dicom_file(name))
        assert ds.file_meta.TransferSyntaxUID.name == syntax
        png = dicom_to_png(data, window=None)
        assert png.startswith(b"\x89PNG") and ds.pixel_array.std() > 0


@pytest.fixture(scope="module")
def compressed(module_ws: Workspace) -> Built:
    """One build over a compressed file of every family, and their uncompressed twins."""
    ws = module_ws
    names = sorted({n for row in LOSSLESS + LOSSY for n in row[:2]} - {"RG1_UNCR.dcm"})
    for n in names:
        ws.copy(dicom_file(n), f"all/{n}")
    return ws.build({"name": "all", "instruct": {"report": {"template": "medical/report"}},
                     "images": {"max_side": 4096},
                     "sources": [{"name": "s", "kind": "dicom", "path": "all", "window": {"center": 600, "width": 1600}}]})


def test_a_build_over_every_family_rejects_nothing(compressed: Built) -> None:
    assert compressed.rejects == []
    by = {r["meta"]["locator"]: r["meta"]["image_sha256"] for r in compressed.rows}
    for twin, variant, _ in LOSSLESS:  # same pixels in, same rendered image out
        assert by[variant] == by[twin], variant


def test_corrupt_jpeg_names_its_syntax(ws: Workspace) -> None:
    """pydicom's JPEG-lossy.dcm has a broken scan header (JPGExtended.dcm is the fixed file)."""
    with pytest.raises(RowError) as e:
        dicom_to_png(dicom_file("JPEG-lossy.dcm").read_bytes(), window=None)
    assert e.value.reason == "dicom_error"
    assert "JPEG Extended" in e.value.detail and "may be corrupt" in e.value.detail


def test_a_syntax_without_any_decoder_is_a_reject_that_says_so(ws: Workspace) -> None:
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    from pydicom.encaps import encapsulate
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + b"\x00" * 60])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG4HP41
    ds["PixelData"].VR = "OB"
    ds.save_as(ws.path("video.dcm"), enforce_file_format=True)
    built = ws.build({"name": "v", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "s", "kind": "dicom", "path": "video.dcm"}]})
    [reject] = built.rejects
    assert reject["reason"] == "dicom_error"
    assert "MPEG-4 AVC/H.264" in reject["detail"] and "no pydicom decoder exists" in reject["detail"]


def test_a_missing_plugin_is_named_in_the_reject() -> None:
    """Without pylibjpeg-libjpeg (blocked in a fresh interpreter), 12-bit JPEG names that package."""
    code = (
        "import sys\nfor m in ('pylibjpeg', 'libjpeg', 'gdcm'): sys.modules[m] = None  # as if not installed\n"
        "from pydicom.data import get_testdata_file\n"
        "from vlmdata.medical.dicom_image import dicom_to_png\n"
        "from vlmdata.rows import RowError\n"
        "try:\n"
        "    dicom_to_png(open(get_testdata_file('JPGExtended.dcm', download=False), 'rb').read(), window=None)\n"
        "except RowError as e:\n"
        "    print(e.reason, '|', e.detail)\n"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dicom_error |")
    assert "JPEG Extended" in out.stdout and "pip install pylibjpeg-libjpeg" in out.stdout


def test_view_renders_the_same_frame_as_pydicom() -> None:
    data = dicom_file("emri_small_jpeg_ls_lossless.dcm").read_bytes()
    import io

    from PIL import Image
    ds = pydicom.dcmread(dicom_file("emri_small.dcm"))
    for frame in (0, 7):
        png = dicom_to_png(data, window=None, view=DicomView(windows=((600.0, 1600.0),), frame=frame))
        got = np.asarray(Image.open(io.BytesIO(png)))
        values = ds.pixel_array[frame].astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        want = np.clip(np.round((values - (600 - 800)) / 1600 * 255), 0, 255)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
