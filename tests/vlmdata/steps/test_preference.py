"""Preference pairs from labels: the row contract, hard negatives never partly right, rejects, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from vlmdata.answers import vqa_accuracy
from vlmdata.build import build
from vlmdata.config.errors import ConfigError
from vlmdata.recipe import load_recipe
from vlmdata.rows import Reject
from vlmdata.schema import (
    PREFERENCE_COLUMNS,
    assistant_texts,
    features,
    image_part,
    message,
    preference_problems,
    preference_row_id,
    text_part,
    trl_preference,
)
from vlmdata.steps.preference import PreferenceSpec, PreferenceStep

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "shapes-preference.yaml"


def _row(i: int, *, answer: str, refs: list[str], task: str = "vqa", context: dict | None = None,
         caption: bool = False) -> dict:
    user = message("user", [image_part(), text_part("Describe the image." if caption else "What is it?")])
    return {"id": f"r{i}", "task": task, "source": "s", "images": [b"x"], "image_hashes": [f"img{i}"],
            "messages": [user, message("assistant", [text_part(answer)])], "answers": refs,
            "fields": {"caption": answer} if caption else {"question": "What is it?"},
            "context": context or {}, "meta": {"locator": f"f:{i}"}}


def _run(step: PreferenceStep, rows: list[dict]) -> list:
    keys = step.key(rows)
    table = pa.table({"_idx": list(range(len(rows))), **keys})
    state = step.fit(table)
    for i, r in enumerate(rows):
        r["_idx"] = i
    return list(step.apply(rows, state))


def test_hard_negative_never_scores_above_zero_and_keeps_the_answer_type():
    # "two" is one of row 0's ten references: VQA accuracy 0.3, so it must never be row 0's rejected answer
    rows = [_row(0, answer="2", refs=["2"] * 9 + ["two"], context={"answer_type": "number"}),
            _row(1, answer="two", refs=["two"] * 10, context={"answer_type": "number"}),
            _row(2, answer="3", refs=["3"] * 10, context={"answer_type": "number"}),
            _row(3, answer="yes", refs=["yes"] * 10, context={"answer_type": "yes/no"}),
            _row(4, answer="no", refs=["no"] * 10, context={"answer_type": "yes/no"})]
    for seed in range(20):
        out = _run(PreferenceStep(spec=PreferenceSpec(), seed=seed), [dict(r) for r in rows])
        by_row = {p["meta"]["preference"]["row"]: p for p in out}
        assert len(out) == 5
        for r in rows:
            rejected = assistant_texts(by_row[r["id"]]["rejected"])[0]
            assert vqa_accuracy(rejected, r["answers"]) == 0.0
        assert assistant_texts(by_row["r0"]["rejected"]) == ["3"]  # same answer type, not "yes"/"no", not "two"
        assert assistant_texts(by_row["r3"]["rejected"]) == ["no"]


def test_a_reference_in_other_case_or_punctuation_is_never_a_rejected_answer():
    from vlmdata.steps.preference import is_wrong

    assert vqa_accuracy("Dog.", ["dog"] * 10) == 0.0  # the official metric normalises only disagreeing references
    assert not is_wrong("Dog.", ["dog"] * 10) and not is_wrong("the dog", ["dog"] * 10)
    assert is_wrong("cat", ["dog"] * 10) and not is_wrong("two", ["2"] * 9 + ["two"])
    rows = [_row(0, answer="dog", refs=["dog"] * 10), _row(1, answer="Dog.", refs=["dog"] * 10),
            _row(2, answer="cat", refs=["cat"] * 10)]
    out = {p["meta"]["preference"]["row"]: p for p in _run(PreferenceStep(spec=PreferenceSpec(), seed=0), rows)}
    assert assistant_texts(out["r0"]["rejected"]) == ["cat"] and assistant_texts(out["r1"]["rejected"]) == ["cat"]


def test_pairs_keep_the_contract_and_ids_hash_all_three_parts():
    rows = [_row(i, answer=a, refs=[a]) for i, a in enumerate(["cat", "dog", "bird"])]
    out = _run(PreferenceStep(spec=PreferenceSpec(), seed=0), rows)
    for pair in out:
        assert pair["task"] == "preference" and preference_problems(pair) == []
        assert pair["messages"][-1]["role"] == "user"
        assert pair["id"] == preference_row_id(image_hashes=pair["image_hashes"], prompt=pair["messages"],
                                               chosen=pair["chosen"], rejected=pair["rejected"])
        swapped = preference_row_id(image_hashes=pair["image_hashes"], prompt=pair["messages"],
                                    chosen=pair["rejected"], rejected=pair["chosen"])
        assert swapped != pair["id"]


def test_a_row_without_a_possible_negative_is_a_counted_reject():
    rows = [_row(0, answer="cat", refs=["cat"]), _row(1, answer="Cat.", refs=["cat"])]  # only the same answer
    out = _run(PreferenceStep(spec=PreferenceSpec(), seed=0), rows)
    assert [type(x) for x in out] == [Reject, Reject]
    assert {x.reason for x in out} == {"no_negative"} and out[0].row_id == "r0"


def test_captions_get_a_perturbed_attribute_or_a_mismatched_caption():
    rows = [_row(0, answer="A red circle on the left.", refs=[], caption=True),
            _row(1, answer="Two squares.", refs=[], caption=True)]
    spec = PreferenceSpec(attributes={"colour": ["red", "blue"], "position": ["left", "right"]})
    out = {p["meta"]["preference"]["row"]: p for p in _run(PreferenceStep(spec=spec, seed=0), rows)}
    perturbed = assistant_texts(out["r0"]["rejected"])[0]
    assert perturbed in {"A blue circle on the left.", "A red circle on the right."}
    assert out["r0"]["meta"]["preference"]["kind"].startswith("perturb:")
    assert assistant_texts(out["r1"]["rejected"]) == ["A red circle on the left."]  # the other image's caption
    assert out["r1"]["meta"]["preference"] == {"from": "labels", "task": "vqa", "row": "r1", "kind": "mismatch",
                                               "rejected_from": "r0"}


def test_preference_problems_names_each_broken_part():
    row = {"messages": [message("assistant", [text_part("hi")])], "images": [b"x"],
           "chosen": [message("assistant", [text_part("a")]), message("user", [text_part("b")])],
           "rejected": [message("assistant", [image_part()])]}
    problems = preference_problems(row)
    assert "messages (the prompt) must end with the user turn" in problems
    assert "chosen must be exactly one assistant turn" in problems
    assert any("rejected must hold text parts only" in p for p in problems)
    assert any("1 image(s)" in p for p in problems)


def test_bad_preference_section_is_refused_with_its_path(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(f"extends: {RECIPE}\npreference: {{from: judges, attributes: {{colour: [red]}}}}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(bad)
    text = str(err.value)
    assert "preference.from" in text and "preference.attributes" in text


@pytest.mark.slow
def test_shapes_preference_recipe_builds_pairs_with_leak_free_splits(tmp_path):
    import datasets

    loaded = load_recipe(RECIPE, overrides=["sources.0.count=60"])
    result = build(loaded, out=tmp_path / "out", progress=False)
    dd = datasets.load_from_disk(str(result.path))
    assert set(dd) == {"train", "validation"}
    seen: dict[str, set[str]] = {}
    kinds = set()
    for split, ds in dd.items():
        assert ds.features == features(preference=True) and tuple(ds.column_names) == PREFERENCE_COLUMNS
        for row in ds:
            meta = json.loads(row["meta"])
            assert row["task"] == "preference" and preference_problems(row) == []
            kinds.add(meta["preference"]["kind"])
            if meta["preference"]["kind"] == "hard_negative":
                assert vqa_accuracy(assistant_texts(row["rejected"])[0], row["answers"]) == 0.0
            seen.setdefault(split, set()).update(meta["image_sha256"])
    assert not (seen["train"] & seen["validation"])
    assert "hard_negative" in kinds and any(k.startswith("perturb:") for k in kinds)
    stage = next(s for s in result.manifest["stages"] if s["stage"] == "preference")
    assert stage["details"]["pairs"] == stage["out"]
    trl = trl_preference(dd["train"])
    assert trl.column_names == ["prompt", "chosen", "rejected", "images"]
    again = build(loaded, out=tmp_path / "again", progress=False)  # seeded: the same pairs again
    assert datasets.load_from_disk(str(again.path))["train"]["id"] == dd["train"]["id"]


@pytest.mark.slow
def test_preference_exports_and_report_show_pairs(tmp_path):
    from vlmdata.output.export.formats import export
    from vlmdata.output.report.html import render_report

    loaded = load_recipe(RECIPE, overrides=["sources.0.count=20", "split.validation=0.3"])
    out = build(loaded, out=tmp_path / "out", progress=False).path
    import datasets

    train = datasets.load_from_disk(str(out))["train"]
    first = train[0]
    share = export(out, fmt="sharegpt", dest=tmp_path / "sharegpt")
    records = json.loads(share.files["train"].read_text())
    assert len(records) == len(train)
    rec = records[0]
    assert rec["messages"][-1]["role"] == "user" and rec["messages"][-1]["content"].count("<image>") == len(rec["images"])
    assert rec["chosen"] == {"role": "assistant", "content": assistant_texts(first["chosen"])[0]}
    assert rec["rejected"] == {"role": "assistant", "content": assistant_texts(first["rejected"])[0]}
    info = json.loads((tmp_path / "sharegpt" / "dataset_info.json").read_text())
    entry = info["shapes-preference_train"]
    assert entry["ranking"] is True and entry["columns"]["chosen"] == "chosen"
    swift = export(out, fmt="swift", dest=tmp_path / "swift")
    line = json.loads(swift.files["train"].read_text().splitlines()[0])
    assert line["messages"][-1] == {"role": "assistant", "content": assistant_texts(first["chosen"])[0]}
    assert line["rejected_response"] == assistant_texts(first["rejected"])[0]
    llava = export(out, fmt="llava", dest=tmp_path / "llava")  # no preference form: every row a counted reject
    assert llava.rejected == {"preference_row": len(train) + len(datasets.load_from_disk(str(out))["validation"])}
    html = render_report(out)
    assert "class='prefpair'" in html and "<span class='role'>rejected</span>" in html


def test_from_run_pairs_the_reference_with_the_runs_wrong_answers(tmp_path):
    rows = [_row(i, answer=a, refs=[a] * 3) for i, a in enumerate(["cat", "dog", "bird"])]
    preds = tmp_path / "predictions.jsonl"
    preds.write_text("\n".join(json.dumps({"id": i, "task": "vqa", "prediction": p, "answers": []})
                               for i, p in (("r0", "a dog"), ("r1", "Dog."))) + "\n")
    spec = PreferenceSpec.model_validate({"from": "run", "predictions": str(preds)})
    out = _run(PreferenceStep(spec=spec, seed=0), rows)
    pairs = [x for x in out if not isinstance(x, Reject)]
    rejects = {x.row_id: x.reason for x in out if isinstance(x, Reject)}
    assert rejects == {"r1": "prediction_correct", "r2": "no_prediction"}
    assert len(pairs) == 1 and assistant_texts(pairs[0]["chosen"]) == ["cat"]
    assert assistant_texts(pairs[0]["rejected"]) == ["a dog"]
    assert pairs[0]["meta"]["preference"]["kind"] == "on_policy"


def test_from_run_needs_its_predictions(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(f"extends: {RECIPE}\npreference: {{from: run}}\n")
    with pytest.raises(ConfigError, match="preference.predictions"):
        load_recipe(bad)


def test_inspect_shows_both_sides_of_a_pair(tmp_path):
    from click.testing import CliRunner

    from vlmdata.cli import main

    out = build(load_recipe(RECIPE, overrides=["sources.0.count=10"]), out=tmp_path / "out", progress=False).path
    result = CliRunner().invoke(main, ["inspect", str(out), "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "   chosen: " in result.output and " rejected: " in result.output
