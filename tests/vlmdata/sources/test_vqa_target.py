"""The VQA training target: `multiple_choice_answer` first, else a majority that ignores annotator order;
the ten raw human answers stay in the written dataset for the official metric."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from test_vqav2 import answers, picture, recipe_file

from vlmdata.answers import vqa_accuracy
from vlmdata.build import build
from vlmdata.config.errors import ConfigError
from vlmdata.recipe import load_recipe
from vlmdata.vqa_target import majority_answer, target_answer

# A tie between "yes" and "no", the consensus says "no"; a spelling tie inside one answer.
TIED = ["yes", "no", "yes", "no", "yes", "no", "yes", "no", "maybe", "Yes"]
SPELLINGS = ["Two", "2", "two", "two", "2", "3", "three", "cat", "dog", "Two"]


def test_majority_groups_by_vqa_normalisation_and_ignores_order() -> None:
    assert majority_answer(SPELLINGS) == "2"  # "two"/"Two"/"2" are one answer (6 votes); spellings tie 2-2-2
    assert majority_answer(TIED) == "yes"  # yes 5 (with "Yes") beats no 4
    assert majority_answer(["no", "yes"] * 5) == "no"  # a true tie: first in sort order
    rng = random.Random(0)
    for values in (SPELLINGS, TIED, ["b", "a", "c", "a", "b", "c"]):
        seen = set()
        for _ in range(50):
            shuffled = values[:]
            rng.shuffle(shuffled)
            seen.add(majority_answer(shuffled))
        assert len(seen) == 1, values
    for perm in itertools.permutations(["Red.", "red", "RED"]):
        assert majority_answer(list(perm)) == "red"


def test_consensus_wins_when_present() -> None:
    assert target_answer(TIED, rule="consensus", row_values={"multiple_choice_answer": "no"}) == "no"
    assert target_answer(TIED, rule="majority", row_values={"multiple_choice_answer": "no"}) == "yes"
    assert target_answer(TIED, rule="consensus", row_values={"multiple_choice_answer": " "}) == "yes"
    assert target_answer(TIED, rule="consensus", row_values={}) == "yes"


def _files(root: Path) -> None:
    (root / "val2014").mkdir(parents=True)
    picture(root / "val2014" / "COCO_val2014_000000000001.jpg", 1, "JPEG")
    questions = {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "Is the light on?", "question_id": 1},
        {"image_id": 1, "question": "How many chairs?", "question_id": 2}]}
    annotations = {"annotations": [
        {"question_id": 1, "image_id": 1, "answers": answers(TIED), "multiple_choice_answer": "no"},
        {"question_id": 2, "image_id": 1, "answers": answers(SPELLINGS)}]}  # no consensus: the majority
    (root / "questions.json").write_text(json.dumps(questions))
    (root / "annotations.json").write_text(json.dumps(annotations))


@pytest.mark.parametrize(("rule", "light"), [(None, "no"), ("consensus", "no"), ("majority", "yes")])
def test_build_learns_the_chosen_target_and_keeps_the_raw_answers(tmp_path: Path, rule: str | None,
                                                                   light: str) -> None:
    _files(tmp_path)
    instruct = {"vqa": {"suffix": "Answer briefly.", **({"target": rule} if rule else {})}}
    path = recipe_file(tmp_path, {"questions": "questions.json", "annotations": "annotations.json",
                                  "image_root": "val2014"}, instruct=instruct, normalize={"answers": "vqa"})
    import datasets

    rows = list(datasets.load_from_disk(str(build(load_recipe(path), out=tmp_path / "out",
                                                   progress=False).path))["train"])
    by_q = {json.loads(r["meta"])["context"]["question_id"]: r for r in rows}
    for qid, raw, target in ((1, TIED, light), (2, SPELLINGS, "2")):
        row, meta = by_q[qid], json.loads(by_q[qid]["meta"])
        assert row["messages"][-1]["content"][0]["text"] == target
        # the raw human answers, all ten in order, where the official metric needs them
        references = meta.get("raw_answers", row["answers"])
        assert references == raw
        assert vqa_accuracy(target, references) == vqa_accuracy(target, raw)
    assert vqa_accuracy("2", json.loads(by_q[2]["meta"])["raw_answers"]) == 1.0


def test_a_typo_in_target_is_named(tmp_path: Path) -> None:
    _files(tmp_path)
    path = recipe_file(tmp_path, {"questions": "questions.json", "annotations": "annotations.json",
                                  "image_root": "val2014"}, instruct={"vqa": {"target": "majorty"}})
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert any(str(p).startswith("instruct.vqa.target:") and "majority" in str(p) for p in err.value.problems)
