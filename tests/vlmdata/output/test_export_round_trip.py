"""Every export reads back through its matching source with the same row ids, images and messages, and
loads in the peer's own reader where it installs (webdataset); LLaVA/LLaMA-Factory conventions hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from vlmdata_kit import Built, Workspace, decode, encode, picture

from vlmdata.cli import main

SYSTEM = "You are a careful radiologist."


def _rows() -> list[dict]:
    two = {"messages": [{"role": "user", "content": "<image>\n<image>\nWhich is brighter?"},
                        {"role": "assistant", "content": "The first."}], "images": ["a.png", "b.jpg"]}
    sys_row = {"messages": [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": "<image>\nWhat is shown?"},
                            {"role": "assistant", "content": "A grid."},
                            {"role": "user", "content": "And the colour?"},
                            {"role": "assistant", "content": "Tinted."}], "images": ["c.png"]}
    sys_field = {"system": SYSTEM, "messages": [{"role": "user", "content": "<image>Describe."},
                                                {"role": "assistant", "content": "Blocks."}], "images": ["b.jpg"]}
    text_only = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}]}
    literal = {"messages": [{"role": "user", "content": [{"type": "image"},
                                                         {"type": "text", "text": "Is <image> a tag?"}]},
                            {"role": "assistant", "content": "Yes."}], "images": ["a.png"]}
    return [two, sys_row, sys_field, text_only, literal]


@pytest.fixture(scope="module")
def built(module_ws: Workspace) -> Built:
    module_ws.image("src/a.png", seed=1)
    module_ws.image("src/b.jpg", seed=2, size=(40, 30), fmt="JPEG")
    module_ws.image("src/c.png", seed=3)
    module_ws.write("src/chat.json", json.dumps(_rows()))
    b = module_ws.build({"name": "rt", "sources": [{"name": "chat", "kind": "sharegpt", "path": "src/chat.json"}]})
    assert b.rejects == [] and len(b.rows) == 5
    return b


def _export(built: Built, fmt: str, dest: Path, *extra: str) -> str:
    res = CliRunner().invoke(main, ["export", str(built.path), "--format", fmt, "-o", str(dest), *extra])
    assert res.exit_code == 0, res.output
    return res.output


def _rebuild(ws: Workspace, source: dict, out: str) -> Built:
    return ws.build({"name": "back", "sources": [{"name": "back", **source}]}, out=out)


def _same(a: Built, b: Built, *, skip: set[str] = frozenset()) -> None:
    original = {r["id"]: r for r in a.rows if r["id"] not in skip}
    again = {r["id"]: r for r in b.rows}
    assert set(again) == set(original)
    for rid, row in original.items():
        assert again[rid]["messages"] == row["messages"]
        assert [decode(i["bytes"]).tobytes() for i in again[rid]["images"]] == \
               [decode(i["bytes"]).tobytes() for i in row["images"]]


def _literal_id(built: Built) -> str:
    return next(r["id"] for r in built.rows if any("<image>" in (p["text"] or "") for m in r["messages"]
                                                    for p in m["content"]))


@pytest.mark.parametrize(("fmt", "kind", "file"), [("llava", "llava", "train.json"),
                                                   ("sharegpt", "sharegpt", "train.json"),
                                                   ("swift", "sharegpt", "train.jsonl"),
                                                   ("jsonl", "sharegpt", "train.jsonl")])
def test_chat_exports_round_trip(built: Built, ws: Workspace, fmt: str, kind: str, file: str) -> None:
    dest = ws.path(f"exp/{fmt}")
    output = _export(built, fmt, dest)
    literal = _literal_id(built)
    if fmt == "jsonl":  # explicit parts: a literal <image> is text there, so every row goes
        skip: set[str] = set()
    else:
        skip = {literal}
        assert "literal_marker: 1" in output
        (rej,) = [json.loads(x) for x in (dest / "export_rejects.jsonl").read_text().splitlines()]
        assert rej["id"] == literal and rej["reason"] == "literal_marker"
    again = _rebuild(ws, {"kind": kind, "path": str(dest / file)}, out=f"back-{fmt}")
    assert again.rejects == []
    _same(built, again, skip=skip)


def test_llava_export_follows_llava_trainers(built: Built, ws: Workspace) -> None:
    dest = ws.path("exp/llava")
    _export(built, "llava", dest)
    items = json.loads((dest / "train.json").read_text())
    for it in items:
        froms = [t["from"] for t in it["conversations"]]
        assert set(froms) <= {"human", "gpt"} and froms[0] == "human"  # LLaVA's train.py: no KeyError 'system'
        markers = sum(t["value"].count("<image>") for t in it["conversations"])
        n = 0 if "image" not in it else 1 if isinstance(it["image"], str) else len(it["image"])
        assert markers == n
        if n:
            assert it["conversations"][0]["value"].startswith("<image>")
    folded = [it for it in items if "system" in it]
    assert len(folded) == 2
    for it in folded:
        assert it["system"] == SYSTEM and it["conversations"][0]["value"].startswith("<image>\n" + SYSTEM + "\n")
    multi = [it for it in items if isinstance(it.get("image"), list)]
    assert len(multi) == 1 and len(multi[0]["image"]) == 2  # the list form LLaVA-NeXT/OneVision reads
    assert all(not Path(p).is_absolute() and (dest / p).is_file() for p in multi[0]["image"])


def test_sharegpt_and_swift_paths(built: Built, ws: Workspace) -> None:
    dest = ws.path("exp/abs")
    _export(built, "swift", dest, "--absolute-paths")
    lines = [json.loads(x) for x in (dest / "train.jsonl").read_text().splitlines()]
    paths = [p for r in lines for p in r["images"]]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    for r in lines:
        assert sum(m["content"].count("<image>") for m in r["messages"]) == len(r["images"])
        assert set(r) == {"messages", "images"}
    rel = ws.path("exp/rel")
    _export(built, "sharegpt", rel)
    rows = json.loads((rel / "train.json").read_text())
    assert all(not Path(p).is_absolute() and (rel / p).is_file() for r in rows for p in r["images"])
    assert any(r["messages"][0]["role"] == "system" for r in rows)
    info = json.loads((rel / "dataset_info.json").read_text())["rt_train"]
    tags = info["tags"]
    for r in rows:  # LLaMA-Factory's SharegptDatasetConverter rules (documented in its data/README.md)
        turns = r["messages"]
        if turns[0][tags["role_tag"]] == tags["system_tag"]:
            turns = turns[1:]
        odd, even = (tags["user_tag"],), (tags["assistant_tag"],)
        assert all(t[tags["role_tag"]] in (odd, even)[i % 2] for i, t in enumerate(turns))
        assert len(turns) % 2 == 0


def test_webdataset_export_shards_and_round_trip(built: Built, ws: Workspace) -> None:
    import webdataset as wds

    dest = ws.path("exp/wds")
    _export(built, "webdataset", dest, "--shard-size", "2")
    shards = sorted(p.name for p in dest.glob("*.tar"))
    assert shards == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    samples = list(wds.WebDataset([str(dest / s) for s in shards], shardshuffle=False).decode("pil"))
    assert len(samples) == 5
    by_id = {s["json"]["id"]: s for s in samples}
    for row in built.rows:
        s = by_id[row["id"]]
        assert s["json"]["messages"] == row["messages"] and s["json"]["task"] == row["task"]
        images = [s[k] for k in sorted(k for k in s if k.endswith(("jpg", "png")))]
        assert [im.convert("RGB").tobytes() for im in images] == [decode(i["bytes"]).tobytes() for i in row["images"]]
    again = _rebuild(ws, {"kind": "webdataset", "path": str(dest)}, out="back-wds")
    assert again.rejects == []
    _same(built, again)
    ranged = _rebuild(ws, {"kind": "webdataset", "path": str(dest / "train-{000000..000001}.tar")}, out="back-r")
    assert len(ranged.rows) == 4
    res = CliRunner().invoke(main, ["export", str(built.path), "--format", "webdataset", "-o", str(dest)])
    assert res.exit_code == 2 and "already holds tar shards" in res.output  # old shards would be read as data


def test_webdataset_source_reads_caption_shards_and_rejects(ws: Workspace) -> None:
    import io
    import tarfile

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(ws.path("laion/000.tar"), "w") as tar:
        add(tar, "a1.jpg", encode(picture(1), "JPEG"))
        add(tar, "a1.txt", b"a tinted grid")
        add(tar, "a2.png", encode(picture(2), "PNG"))
        add(tar, "a2.json", json.dumps({"question": "Colour?", "answer": "blue"}).encode())
        add(tar, "a3.txt", b"no image here")
        add(tar, "a4.jpg", encode(picture(4), "JPEG"))
        add(tar, "a4.json", b"{broken")
    ws.write("laion/001.tar", b"this is not a tar file at all" * 40)
    built = ws.build({"name": "w", "sources": [{"name": "l", "kind": "webdataset", "path": "laion"}]})
    by_loc = {r["meta"]["locator"]: r for r in built.rows}
    assert set(by_loc) == {"000.tar:a1", "000.tar:a2"}
    assert by_loc["000.tar:a1"]["task"] == "caption" and by_loc["000.tar:a1"]["answers"] == ["a tinted grid"]
    assert by_loc["000.tar:a2"]["answers"] == ["blue"]
    assert sorted((r["locator"], r["reason"]) for r in built.rejects) == [
        ("000.tar:a3", "image_missing"), ("000.tar:a4", "malformed_line"), ("001.tar", "malformed_shard")]


def test_webdataset_source_reads_fsspec_urls(ws: Workspace, built: Built) -> None:
    dest = ws.path("exp/wds-url")
    _export(built, "webdataset", dest)
    again = _rebuild(ws, {"kind": "webdataset", "path": f"file://{dest}/train-*.tar"}, out="back-url")
    _same(built, again)
