"""Every reject reason lands in rejects.jsonl with source, locator and reason; the build goes on and counts it."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from vlmdata_kit import Built, Workspace, dicom_file, encode, picture, png_header_only

MAX_PIXELS = 40 * 40  # small on purpose: a 64x64 picture is "too large" without making a huge file

# reason -> [(source, locator)], all in one build
EXPECTED = {
    "malformed_line": [("qa", "qa.jsonl:2")],
    "missing_field": [("qa", "qa.jsonl:3")],
    "image_missing": [("qa", "qa.jsonl:4")],
    "image_empty": [("qa", "qa.jsonl:5")],
    "image_corrupt": [("qa", "qa.jsonl:6"), ("qa", "qa.jsonl:7")],
    # 12: a 512x512 DICOM over max_pixels 1600, refused from its header before its pixels are decoded
    "image_too_large": [("qa", "qa.jsonl:8"), ("qa", "qa.jsonl:9"), ("qa", "qa.jsonl:12")],
    "path_escape": [("qa", "qa.jsonl:10"), ("qa", "qa.jsonl:11")],
    "missing_answer": [("qa", "qa.jsonl:13")],
    "bad_value": [("qa", "qa.jsonl:14")],
    "no_instruction": [("plain", "plain.jsonl:1")],
    "template_error": [("tmpl", "tmpl.jsonl:2")],
    "image_count_mismatch": [("conv", "conv.json[0]")],
    "no_assistant_turn": [("conv", "conv.json[1]")],
}


@pytest.fixture(scope="module")
def zoo(module_ws: Workspace) -> Built:
    ws = module_ws
    ws.image("data/imgs/good.png", seed=1)
    ws.image("data/imgs/big.png", seed=2, size=(64, 64))
    ws.write("data/imgs/empty.png", b"")
    ws.write("data/imgs/corrupt.png", b"this is not an image at all")
    ws.write("data/imgs/truncated.jpg", encode(picture(3, (64, 48)), "JPEG")[:300])
    ws.write("data/imgs/bomb.png", png_header_only(100_000, 100_000))
    ws.copy(dicom_file("JPEG-lossy.dcm"), "data/imgs/lossy.dcm")
    ws.image("data/outside.png", seed=4)
    good = {"image": "good.png", "question": "What colour?", "answers": ["red"]}
    ws.jsonl("data/qa.jsonl", [
        good,                                                                  # 1 kept
        '{"image": "good.png", "question": ',                                  # 2 malformed_line
        {"image": "good.png", "answers": ["red"]},                             # 3 missing_field (question)
        {**good, "image": "nope.png"},                                         # 4 image_missing
        {**good, "image": "empty.png"},                                        # 5 image_empty
        {**good, "image": "corrupt.png"},                                      # 6 image_corrupt
        {**good, "image": "truncated.jpg"},                                    # 7 image_corrupt
        {**good, "image": "big.png"},                                          # 8 image_too_large
        {**good, "image": "bomb.png"},                                         # 9 image_too_large (header only)
        {**good, "image": "../outside.png"},                                   # 10 path_escape
        {**good, "image": str(ws.root / "data/outside.png")},                  # 11 path_escape (absolute)
        {**good, "image": "lossy.dcm"},                                        # 12 image_too_large (header)
        {"image": "good.png", "question": "What colour?"},                     # 13 missing_answer
        {**good, "choices": ["blue", "green"]},                                # 14 bad_value
        {**good, "question": "And now?"},                                      # 15 kept
    ])
    ws.jsonl("data/plain.jsonl", [{"image": "imgs/good.png", "note": "nothing to ask"}])
    ws.write("data/undefined.j2", "{% block user %}Describe {{ organ }} in {{ modality }}.{% endblock %}")
    ws.jsonl("data/tmpl.jsonl", [{"image": "imgs/good.png", "organ": "liver", "modality": "CT", "answer": "fine"},
                                 {"image": "imgs/good.png", "organ": "liver", "answer": "fine"}])
    ws.write("data/conv.json", json.dumps([
        {"image": "good.png", "conversations": [{"from": "human", "value": "<image><image> two?"},
                                                {"from": "gpt", "value": "no"}]},
        {"image": "good.png", "conversations": [{"from": "human", "value": "<image> hello?"}]},
        {"image": "good.png", "conversations": [{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "hi"}]},
    ]))
    return ws.build({
        "name": "zoo",
        "images": {"max_pixels": MAX_PIXELS},
        "instruct": {"templ": {"template": "data/undefined.j2"}},
        "sources": [
            {"name": "qa", "kind": "jsonl", "path": "data/qa.jsonl", "image_root": "data/imgs",
             "fields": {"image": "image", "question": "question"}},
            {"name": "plain", "kind": "jsonl", "path": "data/plain.jsonl", "task": "caption"},
            {"name": "tmpl", "kind": "jsonl", "path": "data/tmpl.jsonl", "task": "templ"},
            {"name": "conv", "kind": "llava", "path": "data/conv.json", "image_root": "data/imgs"},
        ],
    }, out="zoo")


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_reason_is_logged_with_source_and_locator(zoo: Built, reason: str) -> None:
    got = [(r["source"], r["locator"]) for r in zoo.rejects if r["reason"] == reason]
    assert got == EXPECTED[reason]
    for r in zoo.rejects:
        if r["reason"] == reason:
            assert r["detail"] and r["stage"] in ("load", "instruct")
            assert zoo.manifest["rejects"][reason] == len(EXPECTED[reason])


def test_rejects_carry_useful_details(zoo: Built) -> None:
    detail = {r["locator"]: r["detail"] for r in zoo.rejects}
    assert detail["qa.jsonl:2"].startswith("line 2:")
    assert "fields.question" in detail["qa.jsonl:3"]
    assert "64x64 = 4096 pixels > max_pixels 1600" in detail["qa.jsonl:8"]
    assert "100000x100000" in detail["qa.jsonl:9"]
    assert "outside image_root" in detail["qa.jsonl:10"] and "outside image_root" in detail["qa.jsonl:11"]
    assert "'modality' is undefined" in detail["tmpl.jsonl:2"]
    assert "'blue', 'green'" in detail["qa.jsonl:14"]


def test_the_build_goes_on_and_counts_everything(zoo: Built) -> None:
    kept = Counter(r["source"] for r in zoo.rows)
    assert kept == {"qa": 2, "tmpl": 1, "conv": 1}
    assert [r["meta"]["locator"] for r in zoo.by_source("qa")] == ["qa.jsonl:1", "qa.jsonl:15"]
    m = zoo.manifest
    assert m["rows"] == len(zoo.rows) == 4
    assert m["rejected_total"] == len(zoo.rejects) == sum(len(v) for v in EXPECTED.values())
    assert m["rejects"] == dict(sorted(Counter(r["reason"] for r in zoo.rejects).items()))
    assert m["rows"] + m["rejected_total"] == 15 + 1 + 2 + 3  # every input row is somewhere
    for stage in m["stages"]:
        assert stage["in"] - stage["out"] == sum(stage["rejected"].values()), stage
    stages = {s["stage"]: s for s in m["stages"]}
    assert stages["load"]["in"] == 21
    assert stages["instruct"]["in"] == stages["load"]["out"]
    assert set(stages["instruct"]["rejected"]) == {"missing_answer", "bad_value", "no_instruction", "template_error",
                                                   "no_assistant_turn"}


def test_rendered_template_row_is_kept(zoo: Built) -> None:
    [row] = zoo.by_source("tmpl")
    assert row["messages"][0]["content"][-1]["text"] == "Describe liver in CT."
    assert row["answers"] == ["fine"]


def test_rejects_are_in_the_card(zoo: Built) -> None:
    card = (zoo.path / "README.md").read_text()
    for reason, where in EXPECTED.items():
        assert f"| {reason} | {len(where)} |" in card


def test_rows_that_arrive_with_messages_are_checked(ws: Workspace) -> None:
    """A dataset already in the row contract (hf): image parts vs images are checked at load (sources/chat.py,
    like LLaVA rows), a row with nothing to learn from at the instruct stage."""
    import datasets

    from vlmdata.schema import COLUMNS, features, image_part, message, text_part

    png = encode(picture(1), "PNG")
    one_image = [message("user", [image_part(), text_part("q")]), message("assistant", [text_part("a")])]
    two_parts = [message("user", [image_part(), image_part(), text_part("q")]), message("assistant", [text_part("a")])]
    silent = [message("user", [image_part(), text_part("q")]), message("assistant", [text_part("")])]
    rows = [(one_image, "ok"), (two_parts, "mismatch"), (silent, "silent")]
    ds = datasets.Dataset.from_dict({c: [] for c in COLUMNS}, features=features())
    for msgs, rid in rows:
        ds = ds.add_item({"id": rid, "task": "vqa", "source": "x", "images": [{"bytes": png, "path": None}],
                          "messages": msgs, "answers": ["a"], "meta": "{}"})
    ds.save_to_disk(str(ws.path("contract")))
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "hf", "path": "contract"}]})
    assert len(built.rows) == 1 and built.rows[0]["messages"] == one_image
    assert [(r["reason"], r["locator"], r["stage"]) for r in built.rejects] == [
        ("image_count_mismatch", "train[1]", "load"), ("no_assistant_turn", "train[2]", "instruct")]


def test_image_values_that_are_not_paths_become_images_or_rejects(ws) -> None:
    """data: URLs are decoded as images; over-long paths, NUL bytes, remote URLs and broken data URLs are
    rejects with their reason, and the good row survives."""
    import base64

    from vlmdata_kit import encode, picture

    url = "data:image/png;base64," + base64.b64encode(encode(picture(1), "PNG")).decode()
    ws.jsonl("qa.jsonl", [{"image": url, "question": "q?", "answers": ["a"]},
                          {"image": "x" * 5000, "question": "q?", "answers": ["a"]},
                          {"image": "d/" + "y" * 300 + ".png", "question": "q?", "answers": ["a"]},
                          {"image": "a\0b.png", "question": "q?", "answers": ["a"]},
                          {"image": "https://example.org/a.png", "question": "q?", "answers": ["a"]},
                          {"image": "data:image/png;base64,@@@", "question": "q?", "answers": ["a"]}])
    built = ws.build({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                      "split": {"validation": 0}})
    assert len(built.rows) == 1
    assert built.image(built.rows[0]).tobytes() == picture(1).tobytes()
    assert built.manifest["rejects"] == {"bad_path": 3, "image_remote": 1, "image_corrupt": 1}
