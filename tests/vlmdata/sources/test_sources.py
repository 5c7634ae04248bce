"""Every tabular/folder/conversation source kind on small real files, end to end through a build."""

from __future__ import annotations

import json

import pytest
from vlmdata_kit import Workspace, decode, encode, picture, text_of

from vlmdata.schema import image_count


def user_text(row: dict) -> str:
    return text_of(next(m for m in row["messages"] if m["role"] == "user"))


def assistant_text(row: dict) -> str:
    return text_of(next(m for m in row["messages"] if m["role"] == "assistant"))


def roles(row: dict) -> list[str]:
    return [m["role"] for m in row["messages"]]


def test_jsonl_maps_fields_and_answer_shapes(ws: Workspace) -> None:
    ws.image("imgs/a.png", seed=1)
    ws.image("imgs/b.png", seed=2)
    ws.jsonl("qa.jsonl", [
        {"img": "a.png", "q": "Colour?", "ans": [{"answer": "red"}, {"answer": "red"}, {"answer": "pink"}]},
        "",  # blank lines are skipped, not rejected
        {"img": "b.png", "q": "Shape?", "ans": "square", "kind": "shape", "extra": {"k": 1}},
    ])
    built = ws.build({"name": "t", "sources": [{
        "name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs",
        "fields": {"image": "img", "question": "q", "answers": "ans", "task": "kind"}}]})
    a, b = built.rows
    assert (a["task"], b["task"]) == ("vqa", "shape")
    assert a["answers"] == ["red", "red", "pink"] and assistant_text(a) == "red"
    assert b["answers"] == ["square"] and user_text(b) == "Shape?"
    assert (a["meta"]["locator"], b["meta"]["locator"]) == ("qa.jsonl:1", "qa.jsonl:3")
    assert b["meta"]["context"]["extra"] == {"k": 1}
    assert a["meta"]["source_kind"] == "jsonl"
    assert decode(a["images"][0]["bytes"]).tobytes() == picture(1).tobytes()
    assert built.rejects == []


def test_json_array_is_read_item_by_item(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    ws.write("qa.json", json.dumps([{"image": "a.png", "question": f"q{i}?", "answer": str(i)} for i in range(5)]))
    built = ws.build({"name": "t", "sources": [{"name": "j", "kind": "json", "path": "qa.json"}]})
    assert [user_text(r) for r in built.rows] == [f"q{i}?" for i in range(5)]
    assert [r["meta"]["locator"] for r in built.rows] == [f"qa.json[{i}]" for i in range(5)]


@pytest.mark.parametrize(("text", "kept", "at"), [
    ('[{"image": "a.png", "question": "q0?", "answer": "0"}, {"image": "a.png", "question": ', 1, 1),
    ('[{"image": "a.png", "question": "q0?", "answer": "0"} {"image": "a.png"}]', 1, 1),
    ('[7, {"image": "a.png", "question": "q1?", "answer": "1"}]', 1, None),
    ('{"image": "a.png"}', 0, 0),
])
def test_malformed_json_rejects_the_broken_rest_and_keeps_the_rows_before(ws: Workspace, text: str, kept: int,
                                                                          at: int | None) -> None:
    ws.image("a.png", seed=1)
    ws.write("qa.json", text)
    ws.jsonl("more.jsonl", [{"image": "a.png", "question": "other?", "answer": "x"}])
    built = ws.build({"name": "t", "sources": [{"name": "j", "kind": "json", "path": "qa.json"},
                                               {"name": "more", "kind": "jsonl", "path": "more.jsonl"}]})
    assert len(built.by_source("j")) == kept
    assert len(built.by_source("more")) == 1  # the build went on
    [reject] = built.rejects
    assert reject["reason"] == "malformed_line" and reject["source"] == "j"
    assert reject["locator"] == f"qa.json[{0 if at is None else at}]"
    assert built.manifest["rejects"] == {"malformed_line": 1}


def test_csv_with_list_separator_and_bad_lines(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    ws.write("qa.csv", "image;question;answers;choices\n"
                       "a.png;Which colour?;blue|navy;\n"
                       "a.png;Pick one;B;red|blue|green\n"
                       "a.png;Too many;x;y;z\n")
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "csv", "path": "qa.csv", "delimiter": ";",
                                                "list_separator": "|"}]})
    open_q, mc = built.rows
    assert open_q["answers"] == ["blue", "navy"] and assistant_text(open_q) == "blue"
    assert user_text(mc).splitlines()[:4] == ["Pick one", "A. red", "B. blue", "C. green"]
    assert mc["answers"] == ["B"]
    [reject] = built.rejects
    assert (reject["reason"], reject["locator"]) == ("malformed_line", "qa.csv:4")


def test_csv_without_list_separator_keeps_cells_whole(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    ws.write("qa.csv", "image,question,answers\na.png,Which?,blue|navy\n")
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "csv", "path": "qa.csv"}]})
    assert built.rows[0]["answers"] == ["blue|navy"]


def test_parquet_with_image_bytes_paths_and_hf_structs(ws: Workspace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    png = encode(picture(1), "PNG")
    jpg = encode(picture(2), "JPEG", quality=90)
    ws.image("pq/imgs/c.png", seed=3)
    image_struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([png, jpg], pa.binary()), "caption": ["one", "two"]}),
                   ws.path("pq/bytes.parquet"))
    pq.write_table(pa.table({"image": ["imgs/c.png"], "caption": ["three"]}), ws.path("pq/paths.parquet"))
    pq.write_table(pa.table({"image": pa.array([{"bytes": png, "path": None}], image_struct), "caption": ["four"]}),
                   ws.path("pq/struct.parquet"))
    built = ws.build({"name": "t", "sources": [
        {"name": "bytes", "kind": "parquet", "path": "pq/bytes.parquet", "task": "caption"},
        {"name": "paths", "kind": "parquet", "path": "pq/paths.parquet", "task": "caption"},
        {"name": "struct", "kind": "parquet", "path": "pq/struct.parquet", "task": "caption"},
        {"name": "folder", "kind": "parquet", "path": "pq", "task": "caption", "batch_size": 1}]})
    by = {s: built.by_source(s) for s in ("bytes", "paths", "struct", "folder")}
    assert [r["answers"] for r in by["bytes"]] == [["one"], ["two"]]
    assert by["bytes"][0]["images"][0]["bytes"] == png  # an RGB PNG is stored as it came
    assert by["bytes"][1]["images"][0]["bytes"] == jpg
    assert decode(by["paths"][0]["images"][0]["bytes"]).tobytes() == picture(3).tobytes()
    assert by["struct"][0]["images"][0]["bytes"] == png
    assert by["struct"][0]["meta"]["image_sha256"] == by["bytes"][0]["meta"]["image_sha256"]
    assert [r["meta"]["locator"] for r in by["folder"]] == ["bytes.parquet[0]", "bytes.parquet[1]", "paths.parquet[0]",
                                                            "struct.parquet[0]"]
    assert built.rejects == []


def test_hf_dataset_saved_to_disk_as_a_plain_table(ws: Workspace) -> None:
    import datasets

    png = encode(picture(4), "PNG")
    ds = datasets.Dataset.from_dict(
        {"picture": [{"bytes": png, "path": None}], "query": ["What is it?"], "answers": [["a box"]]},
        features=datasets.Features({"picture": datasets.Image(), "query": datasets.Value("string"),
                                    "answers": datasets.Sequence(datasets.Value("string"))}))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(ws.path("hfds")))
    built = ws.build({"name": "t", "sources": [{"name": "hfsrc", "kind": "hf", "path": "hfds", "split": "test",
                                                "fields": {"image": "picture", "question": "query"}}]})
    [row] = built.rows
    assert row["source"] == "hfsrc" and row["task"] == "vqa"
    assert user_text(row) == "What is it?" and row["answers"] == ["a box"]
    assert row["images"][0]["bytes"] == png
    assert row["meta"]["locator"] == "test[0]"


def test_hf_source_name_is_the_recipe_name_not_the_hub_dataset(ws: Workspace) -> None:
    import datasets

    datasets.Dataset.from_dict({"x": [1]}).save_to_disk(str(ws.path("hfds")))
    loaded = ws.load({"name": "t", "sources": [{"name": "mine", "kind": "hf", "path": "hfds"}]})
    assert loaded.recipe.sources[0].name == "mine"
    from vlmdata.config.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of 'path'"):
        ws.load({"name": "t", "sources": [{"name": "mine", "kind": "hf", "path": "hfds", "dataset": "org/ds"}]})


def test_hf_dataset_in_the_row_contract_passes_through_with_its_messages(ws: Workspace) -> None:
    ws.image("imgs/a.png", seed=1)
    ws.image("imgs/b.png", seed=2)
    ws.jsonl("qa.jsonl", [{"image": "a.png", "question": "Colour?", "answers": ["red", "pink"]},
                          {"image": ["a.png", "b.png"], "caption": "two pictures"}])
    first = ws.build({"name": "first", "seed": 3, "instruct": {"vqa": {"suffix": "One word.", "system": "Be brief."}},
                      "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}]},
                     out="first")
    again = ws.build({"name": "again", "sources": [{"name": "prev", "kind": "hf", "path": "first", "task": "other"}]},
                     out="again")
    assert len(again.rows) == len(first.rows) == 2
    for old, new in zip(first.rows, again.rows, strict=True):
        assert new["messages"] == old["messages"]
        assert new["id"] == old["id"]
        assert new["answers"] == old["answers"]
        assert new["task"] == old["task"]  # the row's own task wins over the source default
        assert new["source"] == "prev"
        assert [i["bytes"] for i in new["images"]] == [i["bytes"] for i in old["images"]]
    assert roles(again.rows[0]) == ["system", "user", "assistant"]
    assert image_count(again.rows[1]["messages"]) == 2


def test_imagefolder_with_labels_csv(ws: Workspace) -> None:
    ws.image("pics/cats/a.png", seed=1)
    ws.image("pics/dogs/b.jpg", seed=2, fmt="JPEG")
    ws.image("pics/c.png", seed=3)
    ws.write("pics/notes.txt", "not an image")
    ws.write("labels.csv", "file_name,caption\ncats/a.png,a cat\ndogs/b.jpg,a dog\n")
    built = ws.build({"name": "t", "sources": [{"name": "f", "kind": "imagefolder", "path": "pics",
                                                "labels": "labels.csv"}]})
    assert [(r["meta"]["locator"], r["answers"], r["task"]) for r in built.rows] == [
        ("cats/a.png", ["a cat"], "caption"), ("dogs/b.jpg", ["a dog"], "caption")]
    [reject] = built.rejects
    assert (reject["reason"], reject["locator"]) == ("missing_label", "c.png")


def test_imagefolder_with_labels_jsonl(ws: Workspace) -> None:
    ws.image("pics/a.png", seed=1)
    ws.image("pics/b.png", seed=2)
    ws.jsonl("labels.jsonl", [{"file_name": "a.png", "question": "Count?", "answers": ["2", "two"]},
                              {"file_name": "b.png", "label": "zebra"}])
    built = ws.build({"name": "t", "sources": [{"name": "f", "kind": "imagefolder", "path": "pics", "task": "vqa",
                                                "labels": "labels.jsonl"}]})
    a, b = built.rows
    assert user_text(a) == "Count?" and a["answers"] == ["2", "two"]
    assert user_text(b) == "What is shown in this image?" and assistant_text(b) == "zebra"


def test_imagefolder_label_from_folder(ws: Workspace) -> None:
    for i, cls in enumerate(["cat", "cat", "dog"]):
        ws.image(f"pics/{cls}/{i}.png", seed=i)
    built = ws.build({"name": "t", "instruct": {"label": {"suffix": "Answer with one word."}},
                      "sources": [{"name": "f", "kind": "imagefolder", "path": "pics", "task": "label",
                                   "label_from": "folder"}]})
    assert [assistant_text(r) for r in built.rows] == ["cat", "cat", "dog"]
    assert user_text(built.rows[0]) == "What is shown in this image?\nAnswer with one word."
    assert all(r["answers"] == [assistant_text(r)] for r in built.rows)


def test_llava_markers_roles_and_prepended_images(ws: Workspace) -> None:
    ws.image("imgs/a.png", seed=1)
    ws.image("imgs/b.png", seed=2)
    ws.write("conv.json", json.dumps([
        {"id": "m1", "image": "a.png", "conversations": [
            {"from": "system", "value": "You look closely."},
            {"from": "human", "value": "What colour?\n<image>"},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "Sure?"},
            {"from": "gpt", "value": "Yes."}]},
        {"id": "m2", "image": ["a.png", "b.png"], "conversations": [
            {"from": "user", "value": "Compare <image> and <image>."},
            {"from": "assistant", "value": "They differ."}]},
        {"id": "m3", "image": "b.png", "conversations": [
            {"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "Blocks."}]},
        {"id": "m4", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]))
    built = ws.build({"name": "t", "sources": [{"name": "l", "kind": "llava", "path": "conv.json",
                                                "image_root": "imgs"}]})
    m1, m2, m3, m4 = built.rows
    assert roles(m1) == ["system", "user", "assistant", "user", "assistant"]
    assert m1["messages"][1]["content"] == [{"type": "text", "text": "What colour?"}, {"type": "image", "text": None}]
    assert text_of(m1["messages"][4]) == "Yes."
    assert [p["type"] for p in m2["messages"][0]["content"]] == ["text", "image", "text", "image", "text"]
    assert len(m2["images"]) == 2
    assert m3["messages"][0]["content"] == [{"type": "image", "text": None}, {"type": "text", "text": "Describe it."}]
    assert m4["images"] == [] and image_count(m4["messages"]) == 0
    assert all(r["task"] == "conversation" for r in built.rows)
    assert m1["meta"]["context"] == {"llava_id": "m1"} and m1["meta"]["locator"] == "conv.json[0]"


def test_llava_unknown_role_is_a_bad_value(ws: Workspace) -> None:
    ws.image("a.png")
    ws.write("conv.json", json.dumps([{"image": "a.png", "conversations": [{"from": "bot", "value": "<image>x"}]},
                                      {"image": "a.png", "conversations": "nope"}]))
    built = ws.build({"name": "t", "sources": [{"name": "l", "kind": "llava", "path": "conv.json"}]})
    assert [(r["reason"], r["locator"]) for r in built.rejects] == [("bad_value", "conv.json[0]"),
                                                                    ("malformed_line", "conv.json[1]")]
    assert "conversations[0].from = 'bot'" in built.rejects[0]["detail"]


def test_source_limit_and_build_limit(ws: Workspace) -> None:
    ws.image("a.png")
    ws.jsonl("qa.jsonl", ["{bad"] + [{"image": "a.png", "question": f"q{i}?", "answer": "a"} for i in range(6)])
    built = ws.build({"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl", "limit": 4},
                                               {"name": "b", "kind": "jsonl", "path": "qa.jsonl"}]}, limit=2)
    assert [user_text(r) for r in built.by_source("a")] == ["q0?", "q1?"]  # min(source limit, build limit)
    assert len(built.by_source("b")) == 2
    assert built.manifest["limit"] == 2
    assert [r["reason"] for r in built.rejects] == ["malformed_line", "malformed_line"]  # rejects do not count
