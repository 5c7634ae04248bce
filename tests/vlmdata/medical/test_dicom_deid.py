"""De-identification: no identifying header value of any input reaches any output byte; burned-in and overlays."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from vlmdata_kit import Built, Workspace, dicom_file

from vlmdata.medical.deid import IDENTIFYING, MIN_CHARS, is_placeholder

DATA_DIRS = [Path(pydicom.__file__).parent / "data/test_files"]
try:
    import data_store  # pydicom-data (the dev extra): pydicom's larger sample set

    DATA_DIRS.append(Path(data_store.__file__).parent / "data")
except ImportError:
    pass


def sample_files() -> list[Path]:
    out = []
    for d in DATA_DIRS:
        for p in sorted(d.glob("*.dcm")):
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:
                continue
            if "Rows" in ds and p.stat().st_size < 1_500_000:
                out.append(p)
    return out


def header_values(path: Path) -> dict[str, set[str]]:
    """Identifying values read independently of vlmdata.medical.deid: every PN element and the listed keywords."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    found: dict[str, set[str]] = {}
    for elem in [*ds.iterall(), *ds.file_meta]:
        if elem.VR == "SQ" or (elem.keyword not in IDENTIFYING and elem.VR != "PN"):
            continue
        vals = elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]
        for v in vals:
            s = str(v).strip()
            if len(s) >= MIN_CHARS and not is_placeholder(s):
                found.setdefault(s, set()).add(elem.keyword)
    return found


@pytest.fixture(scope="module")
def everything(module_ws: Workspace) -> tuple[Built, dict[str, set[str]]]:
    ws = module_ws
    values: dict[str, set[str]] = {}
    files = sample_files()
    assert len(files) > 80  # pydicom's own files and pydicom-data's
    for i, p in enumerate(files):
        ws.copy(p, f"in/f{i:03d}.dcm")
        for v, kws in header_values(p).items():
            values.setdefault(v, set()).update(kws)
    built = ws.build({"name": "deid", "instruct": {"report": {"template": "medical/report"}},
                      "images": {"max_side": 256},
                      "sources": [{"name": "s", "kind": "dicom", "path": "in"}],
                      "dedup": {"images": {"method": "phash", "max_distance": 2}},
                      "split": {"validation": 0.2, "group_by": "image_cluster"},
                      "output": {"path": "out", "exports": ["llava", "sharegpt", "jsonl"], "report": True}})
    return built, values


def test_no_identifying_value_in_any_output_byte(everything: tuple[Built, dict[str, set[str]]]) -> None:
    built, values = everything
    assert len(values) > 50
    assert {"PatientName", "PatientID", "InstitutionName", "StudyInstanceUID", "SOPInstanceUID"} <= \
        {k for kws in values.values() for k in kws}
    files = [f for f in built.path.rglob("*") if f.is_file()]
    assert any(f.suffix == ".arrow" for f in files) and any(f.name == "report.html" for f in files)
    assert any("exports" in f.parts for f in files)
    for f in files:
        data = f.read_bytes()
        for v in values:
            assert v.encode() not in data, f"{sorted(values[v])} value found in {f.relative_to(built.path)}"
    assert len(built.rows) > 25  # real output (dedup folds the compressed twins of one image)


def test_the_manifest_records_the_check(everything: tuple[Built, dict[str, set[str]]]) -> None:
    built, values = everything
    deid = built.manifest["deidentification"]
    n_files = sum(1 for f in built.path.rglob("*") if f.is_file())
    assert deid["identifying_values_found"] == 0 and deid["found_in"] == []
    assert deid["summary"] == f"0 identifying values found in {deid['files_scanned']} files"
    assert deid["files_scanned"] >= n_files - 2  # manifest.json and README.md are rewritten with the result
    assert deid["values_searched"] >= len(values)
    assert deid["dicom_files"] == len(sample_files())


def test_grouping_keys_are_hashes(everything: tuple[Built, dict[str, set[str]]]) -> None:
    built, _ = everything
    ctx = [r["meta"]["context"] for r in built.rows]
    assert all(len(c["series_key"]) == 16 for c in ctx if "series_key" in c)
    assert sum("series_key" in c for c in ctx) > 20


def test_a_leak_fails_the_build_and_names_the_attribute_not_the_value(ws: Workspace) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"), stop_before_pixels=True)
    ws.copy(dicom_file("CT_small.dcm"), f"scans/{ds.PatientID}_{ds.StudyInstanceUID}.dcm")  # a UID as file name
    from vlmdata.build import build
    from vlmdata.medical.deid import DeidentificationError
    from vlmdata.recipe import load_recipe

    path = ws.write("r.yaml", "name: t\ninstruct: {report: {template: medical/report}}\n"
                              "sources: [{name: s, kind: dicom, path: scans}]\noutput: {path: out}\n")
    with pytest.raises(DeidentificationError) as e:
        build(load_recipe(path), progress=False)
    assert "StudyInstanceUID" in str(e.value) and ds.StudyInstanceUID not in str(e.value)
    assert not (ws.root / "out").exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".out.partial")]


def test_burned_in_annotation_is_rejected_unless_allowed(ws: Workspace) -> None:
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(ws.path("burned.dcm"))
    ws.copy(dicom_file("CT_small.dcm"), "clean.dcm")
    ws.jsonl("qa.jsonl", [{"image": "burned.dcm", "question": "Modality?", "answers": ["MR"]}])
    recipe = {"name": "b", "instruct": {"report": {"template": "medical/report"}},
              "sources": [{"name": "s", "kind": "dicom", "path": "burned.dcm"},
                          {"name": "c", "kind": "dicom", "path": "clean.dcm"},
                          {"name": "q", "kind": "jsonl", "path": "qa.jsonl"}]}
    built = ws.build(recipe)
    assert sorted((r["source"], r["reason"]) for r in built.rejects) == [
        ("q", "burned_in_annotation"), ("s", "burned_in_annotation")]
    assert [r["source"] for r in built.rows] == ["c"]
    recipe["sources"][0]["allow_burned_in"] = True
    built = ws.build(recipe, out="out2")
    assert sorted(r["source"] for r in built.rows) == ["c", "s"]


def test_overlays_are_drawn_only_when_asked(ws: Workspace) -> None:
    src = dicom_file("MR-SIEMENS-DICOM-WithOverlays.dcm")
    ds = pydicom.dcmread(src)
    overlay = ds.overlay_array(0x6000).astype(bool)
    assert overlay.any()
    ws.copy(src, "ov.dcm")
    base = {"name": "o", "instruct": {"report": {"template": "medical/report"}}, "images": {"max_side": 1024}}

    def grey(built: Built) -> np.ndarray:
        with Image.open(io.BytesIO(built.rows[0]["images"][0]["bytes"])) as im:
            return np.asarray(im)[..., 0]

    plain = grey(ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "ov.dcm"}]}))
    drawn = grey(ws.build({**base, "sources": [{"name": "s", "kind": "dicom", "path": "ov.dcm", "overlays": True}]},
                          out="out2"))
    assert plain.shape == overlay.shape
    assert (drawn[overlay] == 255).all() and not (plain[overlay] == 255).all()
    assert np.array_equal(plain[~overlay], drawn[~overlay])


def test_the_grouping_hash_is_keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmdata.medical.deid import hashed

    monkeypatch.delenv("VLMDATA_DEID_KEY", raising=False)
    plain = hashed("1CT1")
    monkeypatch.setenv("VLMDATA_DEID_KEY", os.urandom(8).hex())
    assert hashed("1CT1") != plain and len(plain) == 16 and "1CT1" not in plain
