"""Series and volumes: grouping by series, slice order along the normal, slice selection, windows, NIfTI."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from vlmdata_kit import Workspace, dicom_file

from vlmdata.medical.slicing import evenly
from vlmdata.medical.windows import PRESETS


def grey(row: dict) -> np.ndarray:
    with Image.open(io.BytesIO(row["images"][0]["bytes"])) as im:
        return np.asarray(im)[..., 0].astype(int)


def write_series(ws: Workspace, n: int = 6) -> list[float]:
    """n real CT_small slices as one series, shuffled file names, positions along a tilted normal."""
    base = pydicom.dcmread(dicom_file("CT_small.dcm"))
    zs = [10.0 * k for k in range(n)]
    order = [3, 0, 5, 1, 4, 2][:n]
    for name_idx, k in enumerate(order):
        ds = base.copy()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, zs[k]]
        ds.InstanceNumber = n - k  # deliberately the reverse of the position order
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(k)])
        arr = base.pixel_array.copy()
        arr[:8, :8] = 100 * k  # a marker so each slice is recognisable
        ds.PixelData = arr.tobytes()
        ds.save_as(ws.path(f"ct/slice_{name_idx}.dcm"))
    return zs


def test_series_is_ordered_by_position_along_the_normal(ws: Workspace) -> None:
    write_series(ws)
    built = ws.build({"name": "s", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "ct", "kind": "dicom", "path": "ct", "group": "series", "slices": "all",
                                   "window": "auto"}]})
    rows = sorted(built.rows, key=lambda r: r["meta"]["context"]["slice_index"])
    ctx = [r["meta"]["context"] for r in rows]
    assert [c["slice_index"] for c in ctx] == list(range(6))
    assert [c["slice_position_mm"] for c in ctx] == [0, 10, 20, 30, 40, 50]
    assert all(c["slice_count"] == 6 and c["slice_spacing_mm"] == 10 and c["plane"] == "axial" for c in ctx)
    assert len({c["series_key"] for c in ctx}) == 1
    assert "slice 1 of 6 at 0.0 mm" in rows[0]["messages"][-1]["content"][0]["text"]


@pytest.mark.parametrize(("slices", "expected"), [
    ("middle", [[3]]), ({"every": 4}, [[0], [4]]), ({"count": 3}, [[0], [2], [5]]),
    ({"montage": {"rows": 2, "cols": 2}}, [[0, 2, 3, 5]])])
def test_slice_selection(ws: Workspace, slices: object, expected: list[list[int]]) -> None:
    write_series(ws)
    built = ws.build({"name": "s", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "ct", "kind": "dicom", "path": "ct", "group": "series", "slices": slices,
                                   "window": "auto"}]})
    got = sorted([c["montage"]["slices"]] if "montage" in c else [[c["slice_index"]]]
                 for c in (r["meta"]["context"] for r in built.rows))
    assert [g[0] for g in got] == expected
    if "montage" in str(slices):
        img = grey(built.rows[0])
        assert img.shape == (256, 256)  # 2x2 tiles of 128
        assert [img[0, 0], img[0, 128], img[128, 0], img[128, 128]] != [img[0, 0]] * 4  # the markers differ


def test_evenly_spaced_indices() -> None:
    assert evenly(10, 3) == [0, 4, 9] or evenly(10, 3) == [0, 5, 9]
    assert evenly(3, 5) == [0, 1, 2] and evenly(7, 1) == [3]


def test_lung_and_mediastinum_windows_and_three_channels(ws: Workspace) -> None:
    ws.copy(dicom_file("CT_small.dcm"), "ct.dcm")
    base = {"name": "w", "instruct": {"report": {"template": "medical/report"}}}
    built = ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "ct.dcm",
                                           "windows": ["lung", "mediastinum"]}]})
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    by = {r["meta"]["context"]["window"]["name"]: r for r in built.rows}
    assert set(by) == {"lung", "mediastinum"}
    for name, row in by.items():
        c, w = PRESETS[name]
        want = np.clip(np.round((hu - (c - w / 2)) / w * 255), 0, 255)
        assert np.abs(grey(row) - want).max() <= 1
        assert row["meta"]["context"]["window"] == {"name": name, "center": c, "width": w}
        assert f"{name} window" in row["messages"][-1]["content"][0]["text"]
    rgb = ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "ct.dcm",
                                         "channels": ["lung", "mediastinum", "bone"]}]}, out="out2").rows[0]
    with Image.open(io.BytesIO(rgb["images"][0]["bytes"])) as im:
        arr = np.asarray(im).astype(int)
    assert np.array_equal(arr[..., 0], grey(by["lung"])) and np.array_equal(arr[..., 1], grey(by["mediastinum"]))


def test_header_window_choice(ws: Workspace) -> None:
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = [600, 300], [1600, 400]
    ds.WindowCenterWidthExplanation = ["WIDE", "NARROW"]
    ds.save_as(ws.path("mr.dcm"))
    base = {"name": "h", "instruct": {"report": {"template": "medical/report"}}}
    for i, (window, name) in enumerate([({"header": 1}, "header (NARROW)"), ({"header": "wide"}, "header (WIDE)"),
                                        ("header", "header (WIDE)")]):
        built = ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "mr.dcm", "window": window}]},
                         out=f"o{i}")
        assert built.rows[0]["meta"]["context"]["window"]["name"] == name
    bad = ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "mr.dcm", "window": {"header": 5}}]},
                   out="o9")
    assert bad.rejects[0]["reason"] == "dicom_window" and "NARROW" in bad.rejects[0]["detail"]


def test_multiframe_file_slices_like_a_series(ws: Workspace) -> None:
    ws.copy(dicom_file("emri_small.dcm"), "mf.dcm")
    built = ws.build({"name": "m", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "s", "kind": "dicom", "path": "mf.dcm", "slices": {"every": 3},
                                   "window": "auto"}]})
    frames = pydicom.dcmread(dicom_file("emri_small.dcm")).pixel_array
    assert sorted(r["meta"]["locator"] for r in built.rows) == [f"mf.dcm#frame={i}" for i in (0, 3, 6, 9)]
    for r in built.rows:
        i = r["meta"]["context"]["slice_index"]
        f = frames[i].astype(float)
        want = np.round((f - f.min()) / (f.max() - f.min()) * 255)
        assert np.abs(grey(r) - want).max() <= 1


def nifti_volume(ws: Workspace):
    nib = pytest.importorskip("nibabel")  # the medical extra
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 50, size=(20, 16, 12)).astype(np.int16)  # canonical RAS: x right, y anterior, z up
    vol[15:, :, :] += 500  # patient's right side bright
    vol[:, 12:, :] += 1000  # anterior brighter
    vol[:, :, 10:] += 2000  # top slices brightest
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    canonical = nib.Nifti1Image(vol, affine)
    nib.save(canonical, ws.path("canonical.nii.gz"))
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.axcodes2ornt(("P", "S", "L")))
    odd = canonical.as_reoriented(ornt)
    assert nib.aff2axcodes(odd.affine) == ("P", "S", "L")
    nib.save(odd, ws.path("odd/odd.nii"))
    return vol


def test_nifti_is_reoriented_so_axial_means_axial(ws: Workspace) -> None:
    nifti_volume(ws)
    built = ws.build({"name": "n", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "a", "kind": "nifti", "path": "canonical.nii.gz", "plane": "axial",
                                   "slices": "all", "modality": "CT"},
                                  {"name": "b", "kind": "nifti", "path": "odd", "plane": "axial", "slices": "all",
                                   "modality": "CT"}]})
    a = {r["meta"]["context"]["slice_index"]: r for r in built.by_source("a")}
    b = {r["meta"]["context"]["slice_index"]: r for r in built.by_source("b")}
    assert sorted(a) == sorted(b) == list(range(12))
    for k in range(12):
        assert np.array_equal(grey(a[k]), grey(b[k]))
        assert b[k]["meta"]["context"]["slice_position_mm"] == pytest.approx(a[k]["meta"]["context"]["slice_position_mm"])
    img = grey(a[5])
    assert img.shape == (16, 20)  # rows: anterior..posterior (y), cols: right..left (x)
    assert img[:4].mean() > img[-4:].mean()  # anterior at the top
    assert img[:, :5].mean() > img[:, -5:].mean()  # the patient's right on the image's left
    ctx = a[5]["meta"]["context"]
    assert ctx["plane"] == "axial" and ctx["slice_spacing_mm"] == 3.0 and ctx["modality"] == "CT"
    assert ctx["slice_position_mm"] == 15.0
    assert np.mean([grey(a[k]).mean() for k in (10, 11)]) > np.mean([grey(a[k]).mean() for k in (0, 1)]) or \
        ctx["window"]["name"] == "auto"


def test_nifti_coronal_middle_slice_and_montage(ws: Workspace) -> None:
    vol = nifti_volume(ws)
    built = ws.build({"name": "n", "instruct": {"report": {"template": "medical/report"}},
                      "sources": [{"name": "c", "kind": "nifti", "path": "odd", "plane": "coronal",
                                   "window": {"center": 1000, "width": 4000}},
                                  {"name": "m", "kind": "nifti", "path": "odd", "plane": "sagittal",
                                   "slices": {"montage": {"rows": 1, "cols": 3}}}]})
    [c] = built.by_source("c")
    img = grey(c)
    s = vol[:, 8, :].astype(float)[::-1, ::-1].T  # coronal slice 8: rows superior..inferior, cols right..left
    want = np.clip(np.round((s - (1000 - 2000)) / 4000 * 255), 0, 255)
    assert np.abs(img - want).max() <= 1
    [m] = built.by_source("m")
    assert grey(m).shape == (12, 16 * 3) and m["meta"]["context"]["montage"]["slices"] == [0, 10, 19]
