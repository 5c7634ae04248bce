"""vqa_rad, slake, pathvqa: their published file layouts, official splits as a field, cross-split leaks reported."""

from __future__ import annotations

import json

from vlmdata_kit import Workspace, encode, picture


def test_three_sets_merged_report_official_split_leaks_and_resplit_leak_free(ws: Workspace) -> None:
    for i in range(6):
        ws.write(f"rad/synpic{i}.jpg", encode(picture(i, (64, 64)), "JPEG", quality=95))
    ws.write("slake/xmlab1/source.jpg", encode(picture(1, (64, 64)), "JPEG", quality=95))  # same picture as synpic1
    ws.write("slake/xmlab7/source.jpg", encode(picture(7, (64, 64)), "JPEG", quality=95))
    ws.write("path/images/test_0001.jpg", encode(picture(8, (64, 64)), "JPEG", quality=95))
    rad = [{"qid": i, "image_name": f"synpic{i % 3}.jpg", "image_organ": "CHEST", "answer": "yes",
            "answer_type": "CLOSED", "question_type": "PRES", "question": f"Is there an effusion {i}?",
            "phrase_type": "test_freeform" if i == 0 else "freeform"} for i in range(4)]
    ws.write("rad/VQA_RAD Dataset Public.json", json.dumps(rad))
    slake = [{"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Which organ is abnormal?", "answer": "Lung",
              "q_lang": "en", "location": "Lung", "modality": "CT", "answer_type": "OPEN", "base_type": "vqa",
              "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": 11},
             {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "哪个器官异常?", "answer": "肺",
              "q_lang": "zh", "location": "Lung", "modality": "CT", "answer_type": "OPEN", "base_type": "vqa",
              "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": 12},
             {"img_id": 7, "img_name": "xmlab7/source.jpg", "question": "What modality?", "answer": "CT",
              "q_lang": "en", "location": "Abdomen", "modality": "CT", "answer_type": "OPEN", "base_type": "vqa",
              "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 13}]
    ws.write("slake/test.json", json.dumps(slake))
    ws.jsonl("path/test.jsonl", [{"image": "test_0001", "question": "Is this benign?", "answer": "no"}])
    built = ws.build({"name": "m", "sources": [
        {"name": "rad", "kind": "vqa_rad", "path": "rad/VQA_RAD Dataset Public.json", "image_root": "rad"},
        {"name": "slake", "kind": "slake", "path": "slake/test.json", "image_root": "slake"},
        {"name": "path", "kind": "pathvqa", "path": "path/test.jsonl", "image_root": "path/images"}],
        "split": {"validation": 0.3, "group_by": "image_cluster"}})
    every = [{**r, "split": sp} for sp in built.manifest["splits"] for r in built.split_rows(sp)]
    rows = {(r["source"], r["meta"]["context"].get("qid", r["meta"]["locator"])): r for r in every}
    rad0 = rows[("rad", 0)]["meta"]["context"]
    assert rad0["official_split"] == "test" and rad0["answer_type"] == "CLOSED" and rad0["question_type"] == "PRES"
    assert rows[("rad", 1)]["meta"]["context"]["official_split"] == "train"
    s11 = rows[("slake", 11)]
    assert s11["answers"] == ["Lung"] and s11["meta"]["context"]["content_type"] == "Organ"
    assert s11["meta"]["context"]["official_split"] == "test" and s11["meta"]["context"]["location"] == "Lung"
    assert ("slake", 12) not in rows
    assert [(r["source"], r["reason"]) for r in built.rejects] == [("slake", "other_language")]
    [p] = [r for r in every if r["source"] == "path"]
    assert p["answers"] == ["no"] and p["meta"]["context"]["official_split"] == "test"
    leaks = json.dumps(built.manifest)
    leaks = next(v for v in _walk(built.manifest) if isinstance(v, dict) and "official_split_leaks" in v)[
        "official_split_leaks"]
    # synpic0 (rad test, qid 0) is also rad train (qid 3); synpic1 (rad train) is slake test's xmlab1
    assert leaks["groups"] == 2 and leaks["by_splits"] == {"test/train": 2}
    by_image: dict[str, set[str]] = {}
    for r in every:
        by_image.setdefault(r["meta"]["image_sha256"][0], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_image.values())  # the re-split keeps each image in one split


def _walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
