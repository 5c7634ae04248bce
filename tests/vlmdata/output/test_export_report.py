"""Exports and the HTML report, on the shipped medical recipe (real DICOM + JSONL)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner

from vlmdata.build import build
from vlmdata.cli import main
from vlmdata.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def medical_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("medical") / "medical"
    build(load_recipe(ROOT / "recipes" / "medical.yaml"), out=out, progress=False)
    return out


def _ids(path: Path) -> list[str]:
    return sorted(datasets.load_from_disk(str(path))["train"]["id"])


def test_llava_export_round_trip_keeps_ids(medical_out: Path, tmp_path: Path) -> None:
    dest = tmp_path / "llava"
    files = CliRunner().invoke(main, ["export", str(medical_out), "--format", "llava", "-o", str(dest)])
    assert files.exit_code == 0, files.output
    items = json.loads((dest / "train.json").read_text())
    assert len(items) == len(_ids(medical_out))
    assert all(it["conversations"][0]["value"].startswith("<image>\n") for it in items)
    recipe = tmp_path / "reimport.yaml"
    recipe.write_text(f"name: again\nsources:\n  - {{name: back, kind: llava, path: {dest / 'train.json'}}}\n")
    again = build(load_recipe(recipe), out=tmp_path / "again", progress=False)
    assert again.manifest["rejected_total"] == 0
    assert _ids(tmp_path / "again") == _ids(medical_out)
    original = datasets.load_from_disk(str(medical_out))["train"]
    back = {r["id"]: r for r in datasets.load_from_disk(str(tmp_path / "again"))["train"]}
    for row in original.select(range(5)):
        assert back[row["id"]]["messages"] == row["messages"]


def test_sharegpt_export_has_llamafactory_entry(medical_out: Path, tmp_path: Path) -> None:
    dest = tmp_path / "sharegpt"
    res = CliRunner().invoke(main, ["export", str(medical_out), "--format", "sharegpt", "-o", str(dest)])
    assert res.exit_code == 0, res.output
    info = json.loads((dest / "dataset_info.json").read_text())
    entry = info[f"{medical_out.name}_train"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    rows = json.loads((dest / entry["file_name"]).read_text())
    for r in rows:
        # LLaMA-Factory checks: one <image> marker per image, every image file exists
        markers = sum(m["content"].count("<image>") for m in r["messages"])
        assert markers == len(r["images"])
        assert all((dest / p).is_file() for p in r["images"])
        assert [m["role"] for m in r["messages"]][-1] == "assistant"


def test_jsonl_export_and_shared_images(medical_out: Path, tmp_path: Path) -> None:
    dest = tmp_path / "jsonl"
    res = CliRunner().invoke(main, ["export", str(medical_out), "--format", "jsonl", "-o", str(dest),
                                    "--images-dir", str(tmp_path / "imgs")])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (dest / "train.jsonl").read_text().splitlines()]
    assert {r["id"] for r in lines} == set(_ids(medical_out))
    referenced = {p for r in lines for p in r["images"]}
    distinct = {sha for r in lines for sha in r["meta"]["image_sha256"]}
    # each scan is asked about many times but stored once: one file per distinct image
    assert len(lines) > len(distinct) > 1
    assert len(list((tmp_path / "imgs").iterdir())) == len(referenced) == len(distinct)


def test_report_sections_and_inlined_images(medical_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(medical_out, out)
    (out / "report.html").unlink()
    res = CliRunner().invoke(main, ["report", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    for section in ("id='funnel'", "id='rejects'", "id='mix'", "id='samples'"):
        assert section in page
    assert page.count("data:image/jpeg;base64,") >= 2
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch


def test_report_lists_rejects_with_their_files(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("CT_small.dcm", "JPEG-lossy.dcm"):  # the second has a broken JPEG marker: a reject
        shutil.copyfile(get_testdata_file(name, download=False), scans / name)
    (tmp_path / "r.yaml").write_text("name: scans\nsources:\n  - {name: scans, kind: dicom, path: scans, task: report}\n"
                                     "instruct: {report: {template: medical/report}}\nsplit: {validation: 0}\n")
    out = build(load_recipe(tmp_path / "r.yaml"), out=tmp_path / "out", progress=False)
    assert out.manifest["rows"] == 1 and sum(out.manifest["rejects"].values()) == 1
    page = (out.path / "report.html").read_text()
    (reason,) = out.manifest["rejects"]
    assert reason in page and "JPEG-lossy.dcm" in page


@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (.ci/run installs it; under CI a missing browser fails)")
def test_report_renders_in_headless_chromium(medical_out: Path, tmp_path: Path) -> None:
    from PIL import Image

    page = medical_out / "report.html"
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "Stage funnel" in dom and "Samples" in dom and dom.count("<img") >= 2
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        grey = im.convert("L")
        lo, hi = grey.getextrema()
        assert hi - lo > 100  # not a blank page: text and images drew
        assert len(set(grey.resize((60, 120)).getdata())) > 20


def test_report_shows_dropped_duplicates_beside_the_kept_image(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = (rng.random((8, 8, 3)) * 255).astype("uint8")
    photo = Image.fromarray(base).resize((128, 128), Image.Resampling.BICUBIC)
    photo.save(tmp_path / "a.png")
    photo.resize((96, 96)).save(tmp_path / "a_small.jpg", quality=90)  # a near-duplicate
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(tmp_path / "b.png")
    rows = [{"image": "a.png", "question": "What is shown?", "answers": ["noise"]},
            {"image": "a_small.jpg", "question": "What is shown here?", "answers": ["noise"]},
            {"image": "b.png", "question": "What is shown?", "answers": ["static"]}]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(
        "name: dups\nsources:\n  - {name: qa, kind: jsonl, path: qa.jsonl}\n"
        "dedup: {images: {method: phash, max_distance: 4}}\n")
    out = build(load_recipe(tmp_path / "r.yaml"), out=tmp_path / "out", progress=False).path
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["duplicate_image"]
    assert rejects[0]["thumb"].startswith("data:image/jpeg;base64,")
    page = (out / "report.html").read_text()
    section = page[page.index("id='duplicates'"):page.index("id='samples'")]
    assert section.count("<img") == 2 and "alt='kept'" in section and rejects[0]["duplicate_of"] in section
