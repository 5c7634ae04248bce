"""The vqav2 source: official questions + annotations JSON and COCO-named images, built for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmdata.answers import vqa_accuracy
from vlmdata.build import build
from vlmdata.config.errors import ConfigError
from vlmdata.plan import make_plan
from vlmdata.recipe import load_recipe
from vlmdata.rows import Record, Reject
from vlmdata.sources import read_source
from vlmdata.sources.vqav2 import VqaV2Spec

ANSWERS_1 = ["2", "two", "2", "2", "Two", "3", "2", "2 ", "2", "2"]
ANSWERS_2 = ["yes"] * 10


def picture(path: Path, seed: int, fmt: str) -> None:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 160))
    ImageDraw.Draw(im).rectangle((seed, seed, seed + 10, seed + 8), fill=(255, 255, 0))
    im.save(path, format=fmt)


def answers(values: list[str]) -> list[dict[str, Any]]:
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(values)]


def vqa_files(root: Path, *, pattern_name: str = "COCO_val2014_{:012d}.jpg", fmt: str = "JPEG") -> None:
    """Three questions on image 1, 2 and 7 (7 has no picture); question 40 has no annotation."""
    (root / "val2014").mkdir(parents=True)
    for image_id in (1, 2):
        picture(root / "val2014" / pattern_name.format(image_id), image_id, fmt)
    questions = {"info": {}, "data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "How many dogs are there?", "question_id": 10},
        {"image_id": 2, "question": "Is it sunny?", "question_id": 20},
        {"image_id": 7, "question": "What is this?", "question_id": 30},
        {"image_id": 2, "question": "Unannotated?", "question_id": 40},
        {"image_id": 1, "question_id": 50},
    ]}
    annotations = {"annotations": [
        {"question_id": 10, "image_id": 1, "answers": answers(ANSWERS_1), "multiple_choice_answer": "2",
         "question_type": "how many", "answer_type": "number"},
        {"question_id": 20, "image_id": 2, "answers": answers(ANSWERS_2), "multiple_choice_answer": "yes",
         "question_type": "is it", "answer_type": "yes/no"},
        {"question_id": 30, "image_id": 7, "answers": answers(["dog"] * 10), "multiple_choice_answer": "dog",
         "question_type": "what is this", "answer_type": "other"},
    ]}
    (root / "questions.json").write_text(json.dumps(questions))
    (root / "annotations.json").write_text(json.dumps(annotations))


def recipe_file(root: Path, source: dict[str, Any], **extra: Any) -> Path:
    data = {"name": "vqa", "sources": [{"name": "vqav2", "kind": "vqav2", **source}],
            "instruct": {"vqa": {"suffix": "Answer the question using a single word or phrase."}},
            "output": {"report": False}, **extra}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def spec(root: Path, **fields: Any) -> VqaV2Spec:
    data = {"name": "v", "questions": "questions.json", "annotations": "annotations.json",
            "image_root": "val2014", **fields}
    return VqaV2Spec.model_validate(data, context={"base_dir": str(root)})


def test_reader_joins_questions_and_annotations(tmp_path: Path) -> None:
    vqa_files(tmp_path)
    out = list(read_source(spec(tmp_path)))
    records = [r for r in out if isinstance(r, Record)]
    rejects = {r.locator: r for r in out if isinstance(r, Reject)}
    assert [r.fields["question"] for r in records] == ["How many dogs are there?", "Is it sunny?", "What is this?"]
    first = records[0]
    assert first.fields["answers"] == ANSWERS_1  # all ten, in order, untouched
    assert first.images[0].path == (tmp_path / "val2014" / "COCO_val2014_000000000001.jpg").resolve()
    assert first.context == {"question_id": 10, "image_id": 1, "question_type": "how many", "answer_type": "number",
                             "multiple_choice_answer": "2"}
    assert (first.task, first.locator) == ("vqa", "questions.json[0]")
    assert rejects["questions.json[3]"].reason == "missing_annotation"
    assert rejects["questions.json[4]"].reason == "malformed_line"


def test_test_split_has_no_answers(tmp_path: Path) -> None:
    vqa_files(tmp_path)
    records = [r for r in read_source(spec(tmp_path, annotations=None)) if isinstance(r, Record)]
    assert len(records) == 4
    assert all("answers" not in r.fields for r in records)
    assert records[3].context == {"question_id": 40, "image_id": 2}


def test_image_pattern_and_split_override(tmp_path: Path) -> None:
    vqa_files(tmp_path, pattern_name="{:06d}.png", fmt="PNG")
    records = [r for r in read_source(spec(tmp_path, image_pattern="{image_id:06d}.png")) if isinstance(r, Record)]
    assert records[0].images[0].path.name == "000001.png"
    other = [r for r in read_source(spec(tmp_path, split="test2015")) if isinstance(r, Record)]
    assert other[0].images[0].path.name == "COCO_test2015_000000000001.jpg"


def test_malformed_file_is_one_reject(tmp_path: Path) -> None:
    vqa_files(tmp_path)
    (tmp_path / "questions.json").write_text('{"questions": [')
    out = list(read_source(spec(tmp_path)))
    assert len(out) == 1 and isinstance(out[0], Reject) and out[0].reason == "malformed_file"
    (tmp_path / "questions.json").write_text('{"qs": []}')
    assert [r.reason for r in read_source(spec(tmp_path))] == ["malformed_file"]


def test_validation_problems(tmp_path: Path) -> None:
    vqa_files(tmp_path)
    path = recipe_file(tmp_path, {"questions": "nope.json", "image_root": "val2014", "image_pattern": "{img}.jpg",
                                  "annotation": "annotations.json"})
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    found = [str(p) for p in err.value.problems]
    assert any(p.startswith("sources[0].questions: path not found") for p in found)
    assert any(p.startswith("sources[0].image_pattern: '{img}.jpg' must use only {image_id}") for p in found)
    assert "sources[0].annotation: unknown key 'annotation'; did you mean 'annotations'?" in found


def test_build_end_to_end_with_normalize(tmp_path: Path) -> None:
    vqa_files(tmp_path)
    path = recipe_file(tmp_path, {"questions": "questions.json", "annotations": "annotations.json",
                                  "image_root": "val2014"},
                       normalize={"answers": "vqa"}, filter=["empty_answer"])
    loaded = load_recipe(path)
    assert any(line.startswith("source vqav2 (vqav2: ") for line in make_plan(loaded).describe())
    result = build(loaded, out=tmp_path / "out", progress=False)
    import datasets

    rows = list(datasets.load_from_disk(str(result.path))["train"])
    assert len(rows) == 2
    by_q = {json.loads(r["meta"])["context"]["question_id"]: r for r in rows}
    count, sunny = by_q[10], by_q[20]
    assert count["answers"] == ["2", "2", "2", "2", "2", "3", "2", "2", "2", "2"]
    meta = json.loads(count["meta"])
    assert meta["raw_answers"] == ANSWERS_1
    assert meta["context"]["question_type"] == "how many" and meta["context"]["answer_type"] == "number"
    assert count["messages"][-1]["content"][0]["text"] == "2"
    assert count["messages"][0]["content"][-1]["text"].startswith("How many dogs are there?\nAnswer the question")
    assert sunny["answers"] == ANSWERS_2 and "raw_answers" not in json.loads(sunny["meta"])
    # the official metric on the raw references: "Two" matches because the references differ
    assert vqa_accuracy("Two", meta["raw_answers"]) == 1.0

    rejects = [json.loads(line) for line in (result.path / "rejects.jsonl").read_text().splitlines()]
    reasons = sorted((r["stage"], r["reason"], r["locator"]) for r in rejects)
    assert reasons == [("load", "image_missing", "questions.json[2]"),
                       ("load", "malformed_line", "questions.json[4]"),
                       ("load", "missing_annotation", "questions.json[3]")]
