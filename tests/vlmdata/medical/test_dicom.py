"""DICOM: windowing against a recomputation with pydicom, MONOCHROME1, palette, multi-frame, header context, no PHI."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut
from vlmdata_kit import Built, Workspace, dicom_file, text_of

PHI = {  # PatientName / PatientID values of the files used below
    "CT_small.dcm": ("CompressedSamples^CT1", "1CT1"),
    "MR_small.dcm": ("CompressedSamples^MR1", "4MR1"),
    "examples_palette.dcm": ("OB^^^^", "11-05-25-142825"),
    "JPEG-lossy.dcm": ("CompressedSamples^NM1", "8NM1"),
}


def expected_grey(ds: pydicom.Dataset, center: float, width: float) -> np.ndarray:
    """The 8-bit rendering a radiology viewer shows: modality LUT, then a linear VOI window."""
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    lo = center - width / 2
    return np.clip(np.round((values - lo) / width * 255.0), 0, 255).astype(np.uint8)


def pixels(row: dict) -> np.ndarray:
    """The stored image (a lossless PNG, RGB as the row contract wants) as an array."""
    with Image.open(io.BytesIO(row["images"][0]["bytes"])) as im:
        assert (im.format, im.mode) == ("PNG", "RGB")
        return np.asarray(im)


def grey(row: dict) -> np.ndarray:
    rgb = pixels(row)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    return rgb[..., 0]


def row_at(built: Built, locator: str) -> dict:
    [row] = [r for r in built.rows if r["meta"]["locator"] == locator]
    return row


@pytest.fixture(scope="module")
def scans(module_ws: Workspace) -> Built:
    ws = module_ws
    for name, rel in [("CT_small.dcm", "scans/ct.dcm"), ("MR_small.dcm", "scans/mr/mr.dcm"),
                      ("examples_palette.dcm", "scans/palette.dcm"), ("examples_ybr_color.dcm", "scans/cine.dcm"),
                      ("JPEG-lossy.dcm", "scans/nm_lossy.dcm"), ("no_meta.dcm", "scans/no_meta.dcm"),
                      ("CT_small.dcm", "scans/ct_without_suffix")]:
        ws.copy(dicom_file(name), rel)
    mono1 = pydicom.dcmread(dicom_file("MR_small.dcm"))
    mono1.PhotometricInterpretation = "MONOCHROME1"
    mono1.save_as(ws.path("scans/mr/mr_mono1.dcm"))
    ws.write("scans/notes.txt", "not a DICOM file")
    return ws.build({"name": "scans", "instruct": {"report": {"template": "medical/report"}},
                     "sources": [{"name": "scans", "kind": "dicom", "path": "scans"}]})


def test_every_dicom_file_is_found_by_suffix_or_magic(scans: Built) -> None:
    assert sorted(r["meta"]["locator"] for r in scans.rows) == [
        "cine.dcm", "ct.dcm", "ct_without_suffix", "mr/mr.dcm", "mr/mr_mono1.dcm", "palette.dcm"]
    assert all(r["task"] == "report" and r["meta"]["source_kind"] == "dicom" for r in scans.rows)


def test_header_window_is_applied_after_the_modality_lut(scans: Built) -> None:
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0)
    got = grey(row_at(scans, "mr/mr.dcm"))
    want = expected_grey(ds, 600.0, 1600.0)
    assert got.shape == want.shape == (64, 64)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_without_a_header_window_the_full_range_is_used(scans: Built) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    assert "WindowCenter" not in ds
    values = apply_modality_lut(ds.pixel_array, ds)
    lo, hi = float(values.min()), float(values.max())
    got = grey(row_at(scans, "ct.dcm"))
    want = expected_grey(ds, (lo + hi) / 2, hi - lo)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got.min(), got.max()) == (0, 255)
    assert row_at(scans, "ct_without_suffix")["images"] == row_at(scans, "ct.dcm")["images"]


def test_recipe_window_overrides_the_header(ws: Workspace) -> None:
    ws.copy(dicom_file("CT_small.dcm"), "ct.dcm")
    built = ws.build({"name": "t", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "s", "kind": "dicom", "path": "ct.dcm", "window": {"center": 40, "width": 400}}]})
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    got = grey(built.rows[0])
    assert np.abs(got.astype(int) - expected_grey(ds, 40, 400).astype(int)).max() <= 1


def test_monochrome1_is_inverted(scans: Built) -> None:
    normal = grey(row_at(scans, "mr/mr.dcm")).astype(int)
    inverted = grey(row_at(scans, "mr/mr_mono1.dcm")).astype(int)
    assert np.abs(normal + inverted - 255).max() <= 1
    assert normal.std() > 10  # a real picture, not a flat one that inverts to itself


def test_palette_becomes_rgb(scans: Built) -> None:
    ds = pydicom.dcmread(dicom_file("examples_palette.dcm"))
    want = apply_color_lut(ds.pixel_array, ds)
    want = (want / 257).astype(np.uint8) if want.dtype != np.uint8 else want
    got = pixels(row_at(scans, "palette.dcm"))
    assert got.shape == want.shape and got.shape[-1] == 3
    assert np.array_equal(got, want)
    assert not (np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2]))
    assert row_at(scans, "palette.dcm")["meta"]["context"]["color"] is True


def test_multiframe_gives_the_middle_frame(scans: Built) -> None:
    ds = pydicom.dcmread(dicom_file("examples_ybr_color.dcm"))
    frames = ds.pixel_array
    assert frames.shape[0] == 30
    got = pixels(row_at(scans, "cine.dcm"))
    assert np.array_equal(got, frames[15])
    assert not np.array_equal(frames[15], frames[0])
    row = row_at(scans, "cine.dcm")
    assert row["meta"]["context"]["frames"] == 30
    assert "one frame of a 30-frame cine loop" in text_of(row["messages"][-1])


def test_frame_first_is_selectable(ws: Workspace) -> None:
    ws.copy(dicom_file("examples_ybr_color.dcm"), "cine.dcm")
    built = ws.build({"name": "t", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "s", "kind": "dicom", "path": "cine.dcm", "frame": "first"}]})
    assert np.array_equal(pixels(built.rows[0]), pydicom.dcmread(dicom_file("examples_ybr_color.dcm")).pixel_array[0])


def test_header_context_and_report_text(scans: Built) -> None:
    ct = row_at(scans, "ct.dcm")
    ctx = ct["meta"]["context"]
    assert ctx["modality"] == "CT" and ctx["modality_name"] == "computed tomography (CT)"
    assert ctx["plane"] == "axial"
    assert (ctx["rows"], ctx["columns"], ctx["frames"], ctx["color"]) == (128, 128, 1, False)
    assert ctx["file_name"] == "ct.dcm"
    user, assistant = ct["messages"]
    assert [p["type"] for p in user["content"]] == ["image", "text"]
    assert text_of(assistant).startswith("This is a grayscale computed tomography (CT) image acquired in the axial plane.")
    assert ct["answers"] == [text_of(assistant)]
    assert ct["meta"]["template"]["name"] == "medical/report"
    mr = row_at(scans, "mr/mr.dcm")["meta"]["context"]
    assert mr["modality"] == "MR" and mr["plane"] == "axial"


def test_undecodable_and_headerless_files_are_rejected(scans: Built) -> None:
    by_locator = {r["locator"]: r for r in scans.rejects}
    assert set(by_locator) == {"nm_lossy.dcm", "no_meta.dcm"}
    assert all(r["reason"] == "dicom_error" and r["source"] == "scans" for r in scans.rejects)
    assert "JPEG Extended" in by_locator["nm_lossy.dcm"]["detail"]  # names the transfer syntax
    assert "cannot read header" in by_locator["no_meta.dcm"]["detail"]
    assert scans.manifest["rejects"] == {"dicom_error": 2}


def test_no_patient_identifiers_anywhere_in_the_output(scans: Built) -> None:
    for row in scans.rows:
        assert not {"PatientName", "PatientID", "patient_name", "patient_id"} & set(row["meta"]["context"])
    values = [v for pair in PHI.values() for v in pair]
    files = [f for f in scans.path.rglob("*") if f.is_file()]
    assert {"manifest.json", "README.md", "rejects.jsonl"} <= {f.name for f in files}
    for f in files:
        data = f.read_bytes()
        for value in values:
            assert value.encode() not in data, f"{value} found in {f}"


def test_dicom_through_a_jsonl_image_path_with_labels_join(ws: Workspace) -> None:
    ws.copy(dicom_file("MR_small.dcm"), "d/mr.dcm")
    ws.copy(dicom_file("no_meta.dcm"), "d/no_meta.dcm")
    ws.jsonl("qa.jsonl", [{"image": "d/mr.dcm", "question": "Modality?", "answers": ["MR"]},
                          {"image": "d/no_meta.dcm", "question": "Modality?", "answers": ["CT"]}])
    ws.write("labels.csv", "file_name,question,answer\nmr.dcm,Which plane?,axial\n")
    built = ws.build({"name": "t", "sources": [
        {"name": "qa", "kind": "jsonl", "path": "qa.jsonl"},
        {"name": "lab", "kind": "dicom", "path": "d/mr.dcm", "labels": "labels.csv", "task": "vqa"}]})
    qa, lab = built.by_source("qa")[0], built.by_source("lab")[0]
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    assert np.abs(grey(qa).astype(int) - expected_grey(ds, 600, 1600).astype(int)).max() <= 1
    assert qa["meta"]["image_sha256"] == lab["meta"]["image_sha256"]
    assert text_of(lab["messages"][0]) == "Which plane?" and lab["answers"] == ["axial"]
    [reject] = built.rejects
    assert (reject["reason"], reject["locator"]) == ("dicom_error", "qa.jsonl:2")
