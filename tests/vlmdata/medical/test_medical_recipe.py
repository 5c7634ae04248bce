"""The shipped recipes: every one validates, and recipes/medical.yaml builds offline from the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from vlmdata_kit import Built, Workspace, decode

from vlmdata.build import build
from vlmdata.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
EXAMPLES = ROOT / "examples/medical"


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipe_validates(path: Path) -> None:
    loaded = load_recipe(path)
    assert loaded.recipe.name == path.stem
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# vlmdata ") and path.name in first_line  # the header is its launch command


@pytest.fixture(scope="module")
def medical(module_ws: Workspace) -> Built:
    result = build(load_recipe(ROOT / "recipes/medical.yaml"), out=module_ws.root / "medical", progress=False)
    return Built(path=result.path, manifest=result.manifest)


def test_medical_builds_every_file_with_no_reject(medical: Built) -> None:
    assert medical.rejects == [] and medical.manifest["rejects"] == {}
    deid = medical.manifest["deidentification"]
    assert deid["summary"] == f"0 identifying values found in {deid['files_scanned']} files"
    assert deid["dicom_files"] == len(list(EXAMPLES.rglob("*.dcm")))


def test_medical_rows_cover_every_file_and_every_question(medical: Built) -> None:
    dicoms = sorted(p.name for p in (EXAMPLES / "dicom").glob("*.dcm"))
    syntaxes = {pydicom.dcmread(EXAMPLES / "dicom" / d, stop_before_pixels=True).file_meta.TransferSyntaxUID.name
                for d in dicoms}
    assert len(syntaxes) >= 10  # every common transfer syntax family
    reports = medical.by_source("scans")
    assert sorted(r["meta"]["locator"] for r in reports) == dicoms
    assert {r["task"] for r in reports} == {"report"}
    ct = medical.by_source("ct")
    assert sorted(r["meta"]["locator"] for r in ct) == sorted([
        f"ct_enhanced_2frame.dcm#frame={i}@{w}" for w in ("lung", "mediastinum") for i in (0, 1)])
    assert {r["meta"]["context"]["window"]["name"] for r in ct} == {"lung", "mediastinum"}
    qa_lines = [json.loads(line) for line in (EXAMPLES / "qa.jsonl").read_text().splitlines() if line.strip()]
    qa = medical.by_source("qa")
    assert len(qa) == len(qa_lines) and {r["task"] for r in qa} == {"vqa"}
    assert medical.manifest["rows"] == len(reports) + len(ct) + len(qa) == len(medical.rows)
    assert len({r["id"] for r in medical.rows}) == len(medical.rows)
    for row in medical.rows:
        im = decode(row["images"][0]["bytes"])
        assert max(im.size) <= 512  # images.max_side


def test_medical_reports_read_the_header(medical: Built) -> None:
    ct = next(r for r in medical.by_source("scans") if r["meta"]["locator"] == "ct_small.dcm")
    ds = pydicom.dcmread(EXAMPLES / "dicom/ct_small.dcm", stop_before_pixels=True)
    text = ct["messages"][-1]["content"][0]["text"]
    assert "computed tomography (CT)" in text and "axial" in text
    assert f"Slice thickness is {round(float(ds.SliceThickness), 1)} mm." in text
    assert ct["meta"]["template"]["name"] == "medical/report"


def test_medical_output_carries_no_patient_identifiers(medical: Built) -> None:
    values = set()
    for f in EXAMPLES.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        values |= {str(ds.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate") if ds.get(k)}
    values = {v for v in values if len(v) >= 4}  # short values may occur by chance inside compressed pixels
    assert values
    for f in medical.path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for v in values:
                assert v.encode() not in data, f"{v!r} in {f}"
