"""Instruct: labels → chat turns (VQA suffix, multiple choice, caption prompt pool, label, template)."""

from __future__ import annotations

import pytest
from vlmdata_kit import Built, Workspace, sha16, text_of

from vlmdata.recipe import MC_SUFFIX
from vlmdata.steps.instruct import CAPTION_PROMPTS, LABEL_QUESTION

SUFFIX = "Answer the question using a single word or phrase."
MY_PROMPTS = ["Caption this.", "What do you see?", "Describe briefly."]
TEMPLATE = """{% block system %}You read {{ modality }} images.{% endblock %}
{% block user %}Is the {{ organ }} normal? ({{ n_images }} image){% endblock %}
{% block assistant %}{{ answer | upper }}{% endblock %}
"""


@pytest.fixture(scope="module")
def recipe(module_ws: Workspace):
    ws = module_ws
    for i in range(16):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("vqa.jsonl", [
        {"image": "0.png", "question": "What colour? ", "answers": ["red", "blue", "blue", "red", "blue"]},
        {"image": "1.png", "question": "Tie?", "answers": ["x", "y", "y", "x"]},
    ])
    ws.jsonl("plain.jsonl", [{"image": "2.png", "question": "No suffix?", "answer": "yes"}])
    ws.jsonl("mc.jsonl", [
        {"image": "3.png", "question": "Which shape?", "choices": ["circle", "Square", "star"], "answer": "square"},
        {"image": "4.png", "question": "Which one?", "choices": ["a1", "b1"], "answer": "b"},
    ])
    ws.jsonl("cap.jsonl", [{"image": f"{i}.png", "caption": [f"picture {i}", f"image {i}"]} for i in range(5, 16)])
    ws.jsonl("mycap.jsonl", [{"image": f"{i}.png", "caption": f"picture {i}"} for i in range(5, 10)])
    ws.jsonl("label.jsonl", [{"image": "0.png", "label": "zebra"}])
    ws.write("tmpl/organ.j2", TEMPLATE)
    ws.jsonl("tmpl.jsonl", [{"image": "1.png", "organ": "liver", "modality": "CT", "answers": ["yes"]}])

    def src(name: str, task: str) -> dict:
        return {"name": name, "kind": "jsonl", "path": f"{name}.jsonl", "image_root": "imgs", "task": task}

    return ws.recipe({
        "name": "instruct", "seed": 0,
        "instruct": {"vqa": {"suffix": SUFFIX, "system": "You are terse."}, "mycap": {"prompts": MY_PROMPTS},
                     "organ": {"template": "tmpl/organ.j2"}, "label": {"suffix": "One word."}},
        "sources": [src("vqa", "vqa"), src("plain", "plainvqa"), src("mc", "vqa"), src("cap", "caption"),
                    src("mycap", "mycap"), src("label", "label"), src("tmpl", "organ")],
    })


@pytest.fixture(scope="module")
def built(module_ws: Workspace, recipe) -> Built:
    return module_ws.build(recipe, out="seed0")


@pytest.fixture(scope="module")
def reseeded(module_ws: Workspace, recipe) -> Built:
    return module_ws.build(recipe, out="seed1", overrides=["seed=1"])


def turns(row: dict) -> list[tuple[str, str]]:
    return [(m["role"], text_of(m)) for m in row["messages"]]


def test_vqa_suffix_system_and_majority_answer(built: Built) -> None:
    a, tie = built.by_source("vqa")
    assert turns(a) == [("system", "You are terse."), ("user", f"What colour?\n{SUFFIX}"), ("assistant", "blue")]
    assert a["messages"][1]["content"][0] == {"type": "image", "text": None}
    assert a["answers"] == ["red", "blue", "blue", "red", "blue"]  # all references kept for scoring
    assert turns(tie)[-1] == ("assistant", "x")  # a tie goes to the answer seen first
    [plain] = built.by_source("plain")
    assert turns(plain) == [("user", "No suffix?"), ("assistant", "yes")]


def test_multiple_choice_letters(built: Built) -> None:
    by_text, by_letter = built.by_source("mc")
    assert turns(by_text) == [("system", "You are terse."), ("user", f"Which shape?\nA. circle\nB. Square\nC. star\n{MC_SUFFIX}"), ("assistant", "B")]
    assert by_text["answers"] == ["B"]
    assert turns(by_letter)[-1] == ("assistant", "B") and by_letter["answers"] == ["B"]
    assert "A. a1\nB. b1" in turns(by_letter)[1][1]


def test_caption_prompt_comes_from_the_pool_and_is_deterministic(built: Built, reseeded: Built,
                                                                 module_ws: Workspace, recipe) -> None:
    caps = built.by_source("cap")
    assert len(caps) == 11
    for row in caps:
        (_, user), (_, assistant) = turns(row)
        assert user in CAPTION_PROMPTS
        assert assistant in row["answers"] and len(row["answers"]) == 2
    prompts = [turns(r)[0][1] for r in caps]
    assert len(set(prompts)) > 1  # drawn per row, not one prompt for all
    again = module_ws.build(recipe, out="seed0-again")
    assert [turns(r) for r in again.by_source("cap")] == [turns(r) for r in caps]
    other = [turns(r) for r in reseeded.by_source("cap")]
    assert other != [turns(r) for r in caps]
    mine = [turns(r)[0][1] for r in built.by_source("mycap")]
    assert set(mine) <= set(MY_PROMPTS)


def test_label_question(built: Built) -> None:
    [row] = built.by_source("label")
    assert turns(row) == [("user", f"{LABEL_QUESTION}\nOne word."), ("assistant", "zebra")]
    assert row["answers"] == ["zebra"]


def test_template_rows_carry_template_name_and_hash(built: Built, module_ws: Workspace) -> None:
    [row] = built.by_source("tmpl")
    assert turns(row) == [("system", "You read CT images."), ("user", "Is the liver normal? (1 image)"),
                          ("assistant", "YES")]
    assert row["meta"]["template"] == {"name": "tmpl/organ.j2", "sha256": sha16(module_ws.root / "tmpl/organ.j2")}
    assert row["answers"] == ["yes"]
    assert "template" not in built.by_source("vqa")[0]["meta"]


def test_every_row_has_a_content_id_and_recipe_lineage(built: Built) -> None:
    assert all(len(r["id"]) == 32 for r in built.rows)
    assert len({r["id"] for r in built.rows}) == len(built.rows)
    assert {r["meta"]["recipe_hash"] for r in built.rows} == {built.manifest["recipe_sha256"]}
    assert built.manifest["tasks"] == {"caption": 11, "label": 1, "mycap": 5, "organ": 1, "plainvqa": 1, "vqa": 4}
