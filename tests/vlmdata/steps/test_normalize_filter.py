"""normalize + filter steps: unit checks on hand-made rows, recipe validation, and a real build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmdata.build import build
from vlmdata.config.errors import ConfigError
from vlmdata.filters.custom import CustomFilter
from vlmdata.filters.empty_answer import EmptyAnswerFilter
from vlmdata.filters.image_size import ImageSizeFilter
from vlmdata.filters.refusals import RefusalsFilter
from vlmdata.filters.regex_blocklist import RegexBlocklistFilter
from vlmdata.filters.text_length import TextLengthFilter
from vlmdata.recipe import load_recipe
from vlmdata.rows import Reject
from vlmdata.steps.filter import FilterItem, build_filters
from vlmdata.steps.normalize import NormalizeStep

CUSTOM_MODULE = "vlmdata_test_custom_filters"
CUSTOM_SOURCE = '''
from vlmdata.steps.base import FilterStep


class NoFruit:
    """A plain class with keep(row): rejects answers naming a fruit."""

    def __init__(self, *, fruit: str = "banana") -> None:
        self.fruit = fruit

    def keep(self, row):
        text = " ".join(row["answers"]).lower()
        return "fruit" if self.fruit in text else True


class NotTooManyImages(FilterStep):
    name = "filter.max_images"

    def __init__(self, *, limit: int = 1) -> None:
        self.limit = limit

    def keep(self, row):
        return len(row["images"]) <= self.limit or "too_many_images"


class ReturnsFalse:
    def keep(self, row):
        return False
'''


def row(*, user: str = "What is it?", assistant: str = "A cat.", answers: list[str] | None = None,
        task: str = "vqa", sizes: list[tuple[int, int]] | None = None, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    messages += [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": user}]},
        {"role": "assistant", "content": [{"type": "text", "text": assistant}]},
    ]
    sizes = sizes if sizes is not None else [(64, 48)]
    return {"id": "x", "task": task, "source": "s", "images": [b""] * len(sizes), "image_hashes": ["h"] * len(sizes),
            "image_sizes": sizes, "messages": messages, "answers": answers if answers is not None else [assistant],
            "fields": {}, "context": {}, "meta": {"locator": "s.jsonl:1"}}


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / f"{CUSTOM_MODULE}.py").write_text(CUSTOM_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return CUSTOM_MODULE


# --- normalize -----------------------------------------------------------------------------------


def test_normalize_changes_references_not_messages() -> None:
    r = row(assistant="Two Dogs.", answers=["Two Dogs.", "2 dogs", "two"])
    out = list(NormalizeStep().process([r]))
    assert out == [r]
    assert r["answers"] == ["2 dogs", "2 dogs", "2"]
    assert r["meta"]["raw_answers"] == ["Two Dogs.", "2 dogs", "two"]
    assert r["messages"][-1]["content"][0]["text"] == "Two Dogs."


def test_normalize_records_nothing_when_unchanged() -> None:
    r = row(answers=["cat", "dog"])
    list(NormalizeStep().process([r]))
    assert r["answers"] == ["cat", "dog"] and "raw_answers" not in r["meta"]


def test_normalize_keeps_answers_that_become_empty() -> None:
    r = row(answers=[".", "the"])
    assert list(NormalizeStep().process([r])) == [r]
    assert r["answers"] == ["", ""]


def test_normalize_yes_no_and_letters_read_the_raw_answer() -> None:
    step = NormalizeStep(yes_no=True, choice_letters=True)
    assert step.normalize("Yes, it is.") == "yes"
    assert step.normalize("(B) cat") == "B"
    assert step.normalize("Nope!") == "no"
    assert NormalizeStep(answers="none", yes_no=True).normalize("Red Car") == "Red Car"
    assert NormalizeStep().normalize("Yes, it is.") == "yes it is"


def test_normalize_uses_the_number_of_choices() -> None:
    r = row(answers=["E", "(B) cat"])
    r["fields"]["choices"] = ["cat", "dog", "cow", "pig"]
    list(NormalizeStep(choice_letters=True, answers="none").process([r]))
    assert r["answers"] == ["E", "B"]


def test_normalize_only_listed_tasks() -> None:
    vqa, cap = row(answers=["The Cat"]), row(answers=["The Cat"], task="caption")
    list(NormalizeStep(tasks=["vqa"]).process([vqa, cap]))
    assert vqa["answers"] == ["cat"] and cap["answers"] == ["The Cat"]


def test_normalize_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="normalize.answers"):
        NormalizeStep(answers="squad")  # type: ignore[arg-type]


# --- filters, one by one ---------------------------------------------------------------------------


def test_text_length_chars_words_and_roles() -> None:
    f = TextLengthFilter(max_chars=10, role="assistant")
    assert f.keep(row(assistant="short")) is True
    assert f.keep(row(assistant="x" * 11)) == "text_too_long"
    assert TextLengthFilter(min_chars=3, role="assistant").keep(row(assistant="ab")) == "text_too_short"
    assert TextLengthFilter(max_words=2, role="user").keep(row(user="one two three")) == "too_many_words"
    assert TextLengthFilter(min_words=2, role="user").keep(row(user="one")) == "too_few_words"
    # any = user and assistant turns together ("abc" + "\n" + "de"); the system prompt does not count
    assert TextLengthFilter(max_chars=6, role="any").keep(row(user="abc", assistant="de", system="x" * 50)) is True
    assert TextLengthFilter(max_chars=5, role="any").keep(row(user="abc", assistant="de")) == "text_too_long"


def test_text_length_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TextLengthFilter()
    with pytest.raises(ValueError, match="min_words"):
        TextLengthFilter(min_words=5, max_words=2)


def test_image_size() -> None:
    f = ImageSizeFilter(min_side=32, max_side=1000, max_aspect=3)
    assert f.keep(row(sizes=[(64, 48)])) is True
    assert f.keep(row(sizes=[(64, 48), (20, 48)])) == "image_too_small"
    assert f.keep(row(sizes=[(1200, 600)])) == "image_too_large"
    assert f.keep(row(sizes=[(400, 100)])) == "image_aspect_ratio"
    assert f.keep(row(sizes=[(300, 100)])) is True
    assert f.keep(row(sizes=[])) is True
    with pytest.raises(ValueError, match="max_aspect"):
        ImageSizeFilter(max_aspect=0.5)


def test_empty_answer() -> None:
    f = EmptyAnswerFilter()
    assert f.keep(row()) is True
    assert f.keep(row(assistant="  \n")) == "empty_assistant"
    assert f.keep(row(answers=["", " "])) == "empty_answers"
    assert f.keep(row(answers=[])) == "empty_answers"
    assert f.keep(row(answers=[], task="caption")) is True
    assert EmptyAnswerFilter(answer_tasks=[]).keep(row(answers=[])) is True


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.",
    "I’m sorry, I cannot identify people in images.",
    "I cannot assist with that request.",
    "As an AI, I don't have eyes.",
    "As a language model I cannot see images.",
    "As an AI language model, I can't view the image.",
    "I apologize, but I am unable to describe this.",
    "Sorry, but I can't help with this.",
    "I'm unable to view the image you provided.",
])
def test_refusals_builtin(text: str) -> None:
    assert RefusalsFilter().keep(row(assistant=text)) == "refusal"


@pytest.mark.parametrize("text", ["A cat on a mat.", "Sorry is written on the sign.", "The AI robot toy is red."])
def test_refusals_keep_ordinary_answers(text: str) -> None:
    assert RefusalsFilter().keep(row(assistant=text)) is True


def test_refusals_only_look_at_the_assistant_and_take_extra_patterns() -> None:
    assert RefusalsFilter().keep(row(user="As an AI, describe this.")) is True
    f = RefusalsFilter(extra_patterns=[r"\bI will not describe\b"])
    assert f.keep(row(assistant="i will NOT describe it")) == "refusal"


def test_regex_blocklist() -> None:
    f = RegexBlocklistFilter(patterns=["lorem ipsum", r"^N/A$"])
    assert f.keep(row(user="Lorem Ipsum dolor?")) == "blocked_user_text"
    assert f.keep(row(assistant="N/A")) == "blocked_assistant_text"
    assert f.keep(row()) is True
    only_answers = RegexBlocklistFilter(patterns=["lorem"], fields=["assistant"], ignore_case=False)
    assert only_answers.keep(row(user="lorem")) is True
    assert only_answers.keep(row(assistant="Lorem")) is True
    with pytest.raises(ValueError, match="fields"):
        RegexBlocklistFilter(patterns=["x"], fields=["system"])  # type: ignore[list-item]


def test_custom_filters(custom_module: str) -> None:
    plain = CustomFilter(target=f"{custom_module}:NoFruit", args={"fruit": "kiwi"})
    assert plain.name == "filter.custom.NoFruit"
    assert plain.keep(row(answers=["a Kiwi"])) == "fruit"
    assert plain.keep(row(answers=["banana"])) is True
    step = CustomFilter(target=f"{custom_module}:NotTooManyImages")
    assert step.name == "filter.max_images"
    assert step.keep(row(sizes=[(64, 64)] * 2)) == "too_many_images"
    falsy = CustomFilter(target=f"{custom_module}:ReturnsFalse")
    rejected = list(falsy.process([row()]))
    assert isinstance(rejected[0], Reject) and rejected[0].reason == "filter.custom.ReturnsFalse"


def test_rejects_carry_reason_stage_and_locator() -> None:
    out = list(RefusalsFilter().process([row(assistant="As an AI, no."), row()]))
    assert isinstance(out[0], Reject) and not isinstance(out[1], Reject)
    assert (out[0].reason, out[0].stage, out[0].locator, out[0].row_id) == ("refusal", "filter.refusals", "s.jsonl:1", "x")


# --- the recipe's filter list --------------------------------------------------------------------


def test_filter_items_accept_names_and_mappings(custom_module: str) -> None:
    items = [FilterItem.model_validate(v) for v in (
        "refusals", {"empty_answer": None}, {"text_length": {"max_chars": 5}},
        {"custom": {"cls": f"{custom_module}:NoFruit", "args": {"fruit": "fig"}}},
    )]
    steps = build_filters(items)
    assert [s.name for s in steps] == ["filter.refusals", "filter.empty_answer", "filter.text_length",
                                       "filter.custom.NoFruit"]


def write_recipe(tmp_path: Path, data: dict[str, Any]) -> Path:
    (tmp_path / "qa.jsonl").touch()
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems(tmp_path: Path, filters: list[Any], **extra: Any) -> list[str]:
    recipe = {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}], "filter": filters, **extra}
    with pytest.raises(ConfigError) as err:
        load_recipe(write_recipe(tmp_path, recipe))
    return [str(p) for p in err.value.problems]


def test_validation_names_yaml_paths_all_at_once(tmp_path: Path, custom_module: str) -> None:
    found = problems(tmp_path, [
        {"text_length": {"max_chars": 2000}},
        {"image_size": {"min_sid": 32}},
        "refusal",
        {"text_length": {"min_chars": 10, "max_chars": 5}},
        {"text_length": {"max_chars": 5}, "image_size": {"min_side": 3}},
        {"refusals": {"extra_patterns": ["ok", "(unclosed"]}},
        {"regex_blocklist": {"patterns": []}},
        7,
        {"custom": {"cls": "no_such_module_xyz:Thing"}},
        {"custom": {"cls": f"{custom_module}:NoFruits"}},
        {"custom": {"cls": "no colon here"}},
        {"custom": {"cls": "collections:Counter"}},
        {"custom": {"cls": f"{custom_module}:NoFruit", "args": {"fruits": "x"}}},
    ], normalize={"answers": "vqaa"})
    assert "normalize.answers: unknown value 'vqaa'; did you mean 'vqa'? (choose from: vqa, none)" in found
    assert "filter[1].image_size.min_sid: unknown key 'min_sid'; did you mean 'min_side'?" in found
    assert "filter[2].refusal: unknown key 'refusal'; did you mean 'refusals'?" in found
    assert "filter[3].text_length: min_chars (10) is greater than max_chars (5)" in found
    assert any(p.startswith("filter[4]: each item names exactly one filter, got 2") for p in found)
    assert any(p.startswith("filter[5].refusals.extra_patterns[1]: not a valid regular expression") for p in found)
    assert any(p.startswith("filter[6].regex_blocklist.patterns:") for p in found)
    assert any(p.startswith("filter[7]: expected a filter name") for p in found)
    assert any(p.startswith("filter[8].custom.cls: cannot import module 'no_such_module_xyz'") for p in found)
    assert f"filter[9].custom.cls: module '{custom_module}' has no attribute 'NoFruits'; did you mean 'NoFruit'?" in found
    assert any(p.startswith("filter[10].custom.cls: expected 'module:Class'") for p in found)
    assert any(p.startswith("filter[11].custom.cls: 'collections:Counter' is neither") for p in found)
    assert any(p.startswith(f"filter[12].custom.args: do not fit {custom_module}:NoFruit") for p in found)
    assert len(found) == 13


# --- end to end ----------------------------------------------------------------------------------


def test_build_normalizes_filters_and_reports_each_filter(tmp_path: Path, custom_module: str) -> None:
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for name, size, colour in (("big.png", (48, 40), (200, 30, 30)), ("tiny.png", (8, 8), (0, 0, 255))):
        Image.new("RGB", size, colour).save(tmp_path / "imgs" / name)
    for i in range(8):  # distinct pictures so every row has its own content id
        im = Image.new("RGB", (48, 40), (20 * i, 100, 50))
        im.putpixel((i, i), (255, 255, 255))
        im.save(tmp_path / "imgs" / f"p{i}.png")
    rows = [
        {"image": "imgs/p0.png", "question": "What color is it?", "answers": ["Red.", "red", "RED"]},
        {"image": "imgs/p1.png", "question": "Describe " + "very " * 600, "answers": ["x"]},
        {"image": "imgs/tiny.png", "question": "What is it?", "answers": ["dot"]},
        {"image": "imgs/p2.png", "question": "Who is he?", "answers": ["I'm sorry, but I can't help with that."]},
        {"image": "imgs/p3.png", "question": "Anything?", "answers": ["."]},
        {"image": "imgs/p4.png", "question": "lorem ipsum?", "answers": ["dolor"]},
        {"image": "imgs/p5.png", "question": "Which fruit?", "answers": ["Banana"]},
        {"image": "imgs/p6.png", "question": "How many?", "answers": ["Two", "2", "two"]},
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = f"""
name: filtered
sources:
  - {{name: qa, kind: jsonl, path: qa.jsonl}}
normalize: {{answers: vqa}}
filter:
  - {{text_length: {{max_chars: 2000}}}}
  - {{image_size: {{min_side: 16}}}}
  - refusals
  - empty_answer
  - {{regex_blocklist: {{patterns: ["lorem ipsum"], fields: [user]}}}}
  - {{custom: {{cls: "{custom_module}:NoFruit", args: {{fruit: banana}}}}}}
output: {{report: false}}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    result = build(load_recipe(path), out=tmp_path / "out", progress=False)

    funnel = {s["stage"]: s for s in result.manifest["stages"]}
    assert [s["stage"] for s in result.manifest["stages"]] == [
        "load", "instruct", "normalize", "filter.text_length", "filter.image_size", "filter.refusals",
        "filter.empty_answer", "filter.regex_blocklist", "filter.custom.NoFruit",
    ]
    assert funnel["normalize"]["in"] == funnel["normalize"]["out"] == 8
    assert funnel["filter.text_length"]["rejected"] == {"text_too_long": 1}
    assert funnel["filter.image_size"]["rejected"] == {"image_too_small": 1}
    assert funnel["filter.refusals"]["rejected"] == {"refusal": 1}
    assert funnel["filter.empty_answer"]["rejected"] == {"empty_answers": 1}
    assert funnel["filter.regex_blocklist"]["rejected"] == {"blocked_user_text": 1}
    assert funnel["filter.custom.NoFruit"]["rejected"] == {"fruit": 1}
    assert funnel["filter.custom.NoFruit"]["out"] == result.manifest["rows"] == 2

    rejects = [json.loads(line) for line in (result.path / "rejects.jsonl").read_text().splitlines()]
    assert sorted((r["stage"], r["reason"], r["locator"]) for r in rejects) == [
        ("filter.custom.NoFruit", "fruit", "qa.jsonl:7"),
        ("filter.empty_answer", "empty_answers", "qa.jsonl:5"),
        ("filter.image_size", "image_too_small", "qa.jsonl:3"),
        ("filter.refusals", "refusal", "qa.jsonl:4"),
        ("filter.regex_blocklist", "blocked_user_text", "qa.jsonl:6"),
        ("filter.text_length", "text_too_long", "qa.jsonl:2"),
    ]
    assert all(r.get("id") for r in rejects)

    import datasets

    kept = {r["answers"][0]: r for r in datasets.load_from_disk(str(result.path))["train"]}
    red, two = kept["red"], kept["2"]
    assert red["answers"] == ["red", "red", "red"]
    # the model learns one annotator's text (a tie of spellings goes to the normalised one), not a rewrite
    assert red["messages"][-1]["content"][0]["text"] == "red"
    assert json.loads(red["meta"])["raw_answers"] == ["Red.", "red", "RED"]
    assert two["answers"] == ["2", "2", "2"]
