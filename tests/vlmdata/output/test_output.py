"""What a build leaves on disk: a DatasetDict with the exact contract features, manifest, card, rejects."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml
from PIL import Image
from vlmdata_kit import Built, Workspace

from vlmdata.schema import COLUMNS, features, image_count


@pytest.fixture(scope="module")
def built(module_ws: Workspace) -> Built:
    ws = module_ws
    ws.image("imgs/rgb.jpg", seed=1, fmt="JPEG")
    ws.image("imgs/palette.png", seed=2, mode="P")
    ws.image("imgs/rgba.png", seed=3, mode="RGBA")
    ws.image("imgs/grey.png", seed=4, mode="L")
    ws.image("imgs/cmyk.jpg", seed=5, mode="CMYK", fmt="JPEG")
    ws.jsonl("qa.jsonl", [{"image": f, "question": f"What is {f}?", "answers": ["x"]}
                          for f in ("rgb.jpg", "palette.png", "rgba.png", "grey.png", "cmyk.jpg")]
             + ["not json"])
    ws.write("conv.json", json.dumps([{"image": ["rgb.jpg", "grey.png"], "conversations": [
        {"from": "human", "value": "Compare."}, {"from": "gpt", "value": "Different."}]}]))
    return ws.build({"name": "contract", "description": "A test set.", "license": "cc-by-4.0",
                     "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"},
                                 {"name": "conv", "kind": "llava", "path": "conv.json", "image_root": "imgs"}]})


def test_load_from_disk_gives_the_contract(built: Built) -> None:
    dd = datasets.load_from_disk(str(built.path))
    assert isinstance(dd, datasets.DatasetDict)
    assert list(dd) == ["train"]
    train = dd["train"]
    assert train.features == features()
    assert tuple(train.column_names) == COLUMNS
    assert len(train) == 6
    for row in train:
        assert row["images"], row["id"]
        for im in row["images"]:
            assert isinstance(im, Image.Image) and im.mode == "RGB"
        assert image_count(row["messages"]) == len(row["images"])
        assert [m["role"] for m in row["messages"]][-1] == "assistant"
        for m in row["messages"]:
            for part in m["content"]:
                assert part["type"] in ("image", "text")
                assert (part["text"] is None) == (part["type"] == "image")
        meta = json.loads(row["meta"])
        assert meta["recipe_hash"] == built.manifest["recipe_sha256"]
        assert len(meta["image_sha256"]) == len(row["images"])
    assert len(train[5]["images"]) == 2


def test_manifest_records_the_funnel_versions_and_recipe(built: Built) -> None:
    m = json.loads((built.path / "manifest.json").read_text())
    assert m == json.loads(json.dumps(built.manifest))
    assert m["name"] == "contract"
    assert len(m["recipe_sha256"]) == 16
    assert m["recipe"]["sources"][0]["name"] == "qa"
    assert m["recipe_path"] == str(built.path.parent / "recipe.yaml")
    assert isinstance(m["wall_seconds"], float) and m["wall_seconds"] > 0
    assert m["created"].endswith("+00:00")
    for pkg in ("python", "vlmdata", "datasets", "pyarrow", "pillow", "pydicom", "pydantic"):
        assert m["versions"][pkg] and m["versions"][pkg] != "not installed", pkg
    assert m["versions"]["datasets"] == datasets.__version__
    stages = {s["stage"]: s for s in m["stages"]}
    assert stages["load"] == {"stage": "load", "in": 7, "out": 6, "rejected": {"malformed_line": 1}}
    assert stages["instruct"]["in"] == 6 and stages["instruct"]["out"] == 6
    assert m["rejects"] == {"malformed_line": 1} and m["rejected_total"] == 1
    assert (m["rows"], m["splits"]) == (6, {"train": 6})
    assert m["tasks"] == {"conversation": 1, "vqa": 5}
    assert m["sources"] == {"conv": 1, "qa": 5}
    resolved = yaml.safe_load((built.path / "recipe.resolved.yaml").read_text())
    assert resolved == m["recipe"]


def test_card_and_rejects_file(built: Built) -> None:
    card = (built.path / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["pretty_name"] == "contract" and front["license"] == "cc-by-4.0"
    assert "visual-question-answering" in front["task_categories"]
    assert "A test set." in card and "| train | 6 |" in card and "| malformed_line | 1 |" in card
    lines = (built.path / "rejects.jsonl").read_text().splitlines()
    assert [json.loads(line)["locator"] for line in lines] == ["qa.jsonl:6"]


def test_empty_build_is_still_a_loadable_dataset(ws: Workspace) -> None:
    ws.jsonl("qa.jsonl", ["{broken", {"image": "nope.png", "question": "q", "answer": "a"}])
    built = ws.build({"name": "empty", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}]})
    dd = datasets.load_from_disk(str(built.path))
    assert len(dd["train"]) == 0 and dd["train"].features == features()
    assert built.manifest["rows"] == 0 and built.manifest["rejects"] == {"image_missing": 1, "malformed_line": 1}
