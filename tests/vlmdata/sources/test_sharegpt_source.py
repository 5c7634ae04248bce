"""The `sharegpt` source (LLaMA-Factory / ms-swift / OpenAI chat files) and chat content in `hf` datasets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from vlmdata_kit import Workspace, decode, encode, picture, text_of

from vlmdata.config.errors import ConfigError

# The shape of LLaMA-Factory's data/mllm_demo.json (messages + images, markers anywhere in a user turn,
# one image listed twice) and its dataset_info.json entry; our own texts, real JPEG files.
MLLM_DEMO = [
    {"messages": [{"content": "<image>Who is in the picture?", "role": "user"},
                  {"content": "Two players of a football club.", "role": "assistant"},
                  {"content": "What are they doing?<image>", "role": "user"},
                  {"content": "They celebrate a goal.", "role": "assistant"}],
     "images": ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]},
    {"messages": [{"content": "<image>Who is he?", "role": "user"},
                  {"content": "A midfielder.", "role": "assistant"},
                  {"content": "Why is he on the ground?", "role": "user"},
                  {"content": "He slides on his knees to celebrate.", "role": "assistant"}],
     "images": ["mllm_demo_data/2.jpg"]},
    {"messages": [{"content": "<image>Please describe this image", "role": "user"},
                  {"content": "An astronaut gives a speech.", "role": "assistant"}],
     "images": ["mllm_demo_data/3.jpg"]},
]
DEMO_ENTRY = {"file_name": "mllm_demo.json", "formatting": "sharegpt",
              "columns": {"messages": "messages", "images": "images"},
              "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}


@pytest.fixture
def demo(ws: Workspace) -> Path:
    for i in (1, 2, 3):
        ws.image(f"data/mllm_demo_data/{i}.jpg", seed=i, size=(64, 48), fmt="JPEG")
    ws.write("data/mllm_demo.json", json.dumps(MLLM_DEMO, indent=2))
    return ws.write("data/dataset_info.json", json.dumps({"mllm_demo": DEMO_ENTRY, "alpaca_demo": {
        "file_name": "alpaca.json"}, "hub_one": {"hf_hub_url": "org/name"}}, indent=2))


def _parts(row: dict) -> list[list[str]]:
    return [[p["type"] for p in m["content"]] for m in row["messages"]]


@pytest.mark.parametrize("how", ["path", "dataset_info"])
def test_llamafactory_mllm_demo_reads_with_no_reject(ws: Workspace, demo: Path, how: str) -> None:
    src = ({"path": "data/mllm_demo.json"} if how == "path" else
           {"dataset_info": "data/dataset_info.json", "dataset": "mllm_demo"})
    built = ws.build({"name": "t", "sources": [{"name": "demo", "kind": "sharegpt", **src}]})
    assert built.rejects == [] and built.manifest["rejected_total"] == 0
    rows = sorted(built.rows, key=lambda r: r["meta"]["locator"])
    assert [r["meta"]["locator"] for r in rows] == [f"mllm_demo.json[{i}]" for i in range(3)]
    first = rows[0]
    assert _parts(first) == [["image", "text"], ["text"], ["text", "image"], ["text"]]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant"]
    assert text_of(first["messages"][2]) == "What are they doing?"
    assert len(first["images"]) == 2 and first["task"] == "conversation"
    expected = decode(encode(picture(1, (64, 48)), "JPEG"))
    assert decode(first["images"][0]["bytes"]).size == expected.size


def test_conversations_from_value_system_field_and_tools(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.image("imgs/a.png", seed=1)
    rows = [
        {"conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."}],
         "system": "You are terse.", "images": ["a.png"], "tools": '[{"name": "f"}]'},
        {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"},
                           {"from": "gpt", "value": "Hello."}]},
        {"conversations": [{"from": "human", "value": "Call it"}, {"from": "function_call", "value": "{}"},
                           {"from": "observation", "value": "42"}, {"from": "gpt", "value": "42."}]},
    ]
    ws.jsonl("chat.jsonl", rows)
    with caplog.at_level("WARNING", logger="vlmdata.sources"):
        built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "sharegpt", "path": "chat.jsonl",
                                                    "image_root": "imgs"}]})
    by_loc = {r["meta"]["locator"]: r for r in built.rows}
    a = by_loc["chat.jsonl:1"]
    assert [m["role"] for m in a["messages"]] == ["system", "user", "assistant"]
    assert text_of(a["messages"][0]) == "You are terse." and _parts(a)[1] == ["image", "text"]
    assert [m["role"] for m in by_loc["chat.jsonl:2"]["messages"]] == ["system", "user", "assistant"]
    assert [(r["locator"], r["reason"]) for r in built.rejects] == [("chat.jsonl:3", "unsupported_role")]
    assert "ignored on 1 row(s)" in caplog.text


def test_openai_parts_inline_images_and_data_urls(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    png = base64.b64encode(encode(picture(2), "PNG")).decode()
    rows = [
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image"},  # a bare part takes the next listed image
            {"type": "text", "text": "literal <image> stays text"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Same."}]}],
         "images": ["a.png"]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.jpg"}}]},
                      {"role": "assistant", "content": "No."}]},
    ]
    ws.write("oa.json", json.dumps(rows))
    built = ws.build({"name": "t", "sources": [{"name": "oa", "kind": "sharegpt", "path": "oa.json"}]})
    (row,) = built.rows
    assert _parts(row)[0] == ["text", "image", "image", "text"]
    assert row["messages"][0]["content"][3]["text"] == "literal <image> stays text"
    assert decode(row["images"][0]["bytes"]).tobytes() == picture(2).tobytes()  # inline first, in part order
    assert decode(row["images"][1]["bytes"]).tobytes() == picture(1).tobytes()
    assert [r["reason"] for r in built.rejects] == ["image_remote"]


@pytest.mark.parametrize(("row", "reason"), [
    ({"messages": [{"role": "user", "content": "<image><image>two?"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]}, "image_count_mismatch"),
    ({"messages": [{"role": "user", "content": "no marker"}, {"role": "assistant", "content": "x"}],
      "images": ["a.png"]}, "image_count_mismatch"),
    ({"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]}, "missing_content"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}, "bad_value"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "bad_value"),
    ({"messages": "hello"}, "bad_value"),
    ({"messages": []}, "missing_field"),
    ({"text": "no turns"}, "missing_field"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}, {"role": "assistant", "content": "x"}]},
     "unsupported_part"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], "videos": ["v.mp4"]},
     "unsupported_media"),
    ({"messages": [{"role": "user", "content": "<image>hi"}, {"role": "assistant", "content": "x"}],
      "images": ["../outside.png"]}, "path_escape"),
    ("not json", "malformed_line"),
])
def test_bad_rows_are_rejects_with_their_reason(ws: Workspace, row: object, reason: str) -> None:
    ws.image("d/a.png", seed=1)
    ws.image("outside.png", seed=2)
    good = {"messages": [{"role": "user", "content": "<image>ok?"}, {"role": "assistant", "content": "ok"}],
            "images": ["a.png"]}
    ws.jsonl("d/c.jsonl", [good, row if isinstance(row, dict) else str(row)])
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "sharegpt", "path": "d/c.jsonl"}]})
    assert len(built.rows) == 1
    assert [(r["locator"], r["reason"]) for r in built.rejects] == [("c.jsonl:2", reason)]


def test_explicit_tags_are_exact(ws: Workspace) -> None:
    ws.jsonl("c.jsonl", [
        {"chat": [{"who": "asker", "text": "Hi"}, {"who": "bot", "text": "Hello."}]},
        {"chat": [{"who": "human", "text": "Hi"}, {"who": "bot", "text": "Hello."}]},  # 'human' is not asker
    ])
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "sharegpt", "path": "c.jsonl",
                                                "columns": {"messages": "chat"},
                                                "tags": {"role_tag": "who", "content_tag": "text",
                                                         "user_tag": "asker", "assistant_tag": "bot"}}]})
    assert len(built.rows) == 1 and [r["reason"] for r in built.rejects] == ["bad_value"]


def test_dataset_info_problems_are_config_errors(ws: Workspace, demo: Path) -> None:
    for dataset, expect in [("mllm_dem", "did you mean 'mllm_demo'"), ("alpaca_demo", "alpaca"),
                            ("hub_one", "hf_hub_url")]:
        with pytest.raises(ConfigError) as err:
            ws.load({"name": "t", "sources": [{"name": "d", "kind": "sharegpt",
                                               "dataset_info": "data/dataset_info.json", "dataset": dataset}]})
        assert expect in str(err.value) and "sources[0]" in str(err.value)


def test_import_llamafactory_writes_a_recipe_that_builds(ws: Workspace, demo: Path) -> None:
    from click.testing import CliRunner

    from vlmdata.cli import main

    res = CliRunner().invoke(main, ["import-llamafactory", str(demo), "-o", str(ws.path("lf.yaml"))])
    assert res.exit_code == 0, res.output
    text = ws.path("lf.yaml").read_text()
    assert "alpaca_demo" in text and "hub_one" in text  # skipped entries are listed with why
    built = ws.build(ws.path("lf.yaml"))
    assert len(built.rows) == 3 and built.rejects == []


def test_hf_messages_with_string_content_and_null(ws: Workspace) -> None:
    import datasets

    im = {"bytes": encode(picture(3), "PNG"), "path": None}
    rows = {"messages": [
        [{"role": "user", "content": "<image>What is it?"}, {"role": "assistant", "content": "A grid."}],
        [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}],
    ], "images": [[im], []], "answers": [["a grid"], []]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(ws.path("hfds")))
    built = ws.build({"name": "t", "sources": [{"name": "h", "kind": "hf", "path": "hfds"}]})
    (row,) = built.rows
    assert _parts(row) == [["image", "text"], ["text"]] and row["answers"] == ["a grid"]
    assert [r["reason"] for r in built.rejects] == ["missing_content"]


def test_hf_conversations_in_sharegpt_form_with_a_single_image_column(ws: Workspace) -> None:
    """LLaVA-style hub datasets: `conversations` of {from, value}, one `image`, an optional `system` column."""
    import datasets

    rows = {"conversations": [
        [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A grid."}],
        [{"from": "human", "value": "<image>\n<image>\nTwo?"}, {"from": "gpt", "value": "One."}],
    ], "image": [{"bytes": encode(picture(5), "PNG"), "path": None}] * 2, "system": ["Be brief.", ""]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(ws.path("hfconv")))
    built = ws.build({"name": "t", "sources": [{"name": "h", "kind": "hf", "path": "hfconv"}],
                      "split": {"validation": 0}})
    (row,) = built.rows
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert built.image(row).tobytes() == picture(5).tobytes()
    assert [r["reason"] for r in built.rejects] == ["image_count_mismatch"]


def test_folder_of_chat_files_and_parquet(ws: Workspace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ws.image("d/imgs/a.png", seed=1)
    turn = [{"role": "user", "content": "<image>What?"}, {"role": "developer", "content": "x"}]
    ws.jsonl("d/part-0.jsonl", [{"messages": [{"role": "developer", "content": "Be brief."},
                                              {"role": "user", "content": "<image>What?"},
                                              {"role": "assistant", "content": "A grid."}], "images": ["imgs/a.png"]}])
    table = pa.Table.from_pylist([{"messages": [{"role": "user", "content": "Hi"},
                                                {"role": "model", "content": "Hello."}], "images": []},
                                  {"messages": turn, "images": ["imgs/a.png"]}])
    pq.write_table(table, ws.path("d/part-1.parquet"))
    ws.write("d/notes.txt", "not a chat file")
    built = ws.build({"name": "t", "sources": [{"name": "c", "kind": "sharegpt", "path": "d"}]})
    locs = sorted(r["meta"]["locator"] for r in built.rows)
    assert locs == ["part-0.jsonl:1", "part-1.parquet[0]"]
    first = next(r for r in built.rows if r["meta"]["locator"] == "part-0.jsonl:1")
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert [(r["locator"], r["reason"]) for r in built.rejects] == [("part-1.parquet[1]", "bad_value")]


def test_markers_prepend_follows_ms_swift(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    ws.image("b.png", seed=2)
    rows = [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Compare."},
                          {"role": "assistant", "content": "Same."}], "images": ["a.png", "b.png"]},
            {"messages": [{"role": "user", "content": "One <image> here."}, {"role": "assistant", "content": "x"}],
             "images": ["a.png", "b.png"]},
            {"messages": [{"role": "user", "content": "<image><image><image>"}, {"role": "assistant", "content": "x"}],
             "images": ["a.png"]}]
    ws.jsonl("s.jsonl", rows)
    strict = ws.build({"name": "t", "sources": [{"name": "s", "kind": "sharegpt", "path": "s.jsonl"}]}, out="o1")
    assert len(strict.rows) == 0 and len(strict.rejects) == 3
    built = ws.build({"name": "t", "sources": [{"name": "s", "kind": "sharegpt", "path": "s.jsonl",
                                                "markers": "prepend"}]}, out="o2")
    by_loc = {r["meta"]["locator"]: r for r in built.rows}
    assert _parts(by_loc["s.jsonl:1"])[1] == ["image", "image", "text"]
    assert _parts(by_loc["s.jsonl:2"])[0] == ["image", "text", "image", "text"]
    second = by_loc["s.jsonl:2"]  # as in ms-swift: prepended tags come first in the text, so take images first
    assert [decode(i["bytes"]).tobytes() for i in second["images"]] == [picture(1).tobytes(), picture(2).tobytes()]
    assert [r["reason"] for r in built.rejects] == ["image_count_mismatch"]
