"""End to end against the loopback server: COCO + the three LLaVA templates → parsed rows, a free
rerun, per-template invalidation, data-URL images, lineage, and no key on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_server import FakeOpenAI
from synth_kit import CONV, DETAIL, FAKE_KEY, files_containing, llava_recipe, serve
from vlmdata_kit import Workspace, text_of


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def test_llava_build_parses_rerun_is_free_and_key_stays_off_disk(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = ws.recipe(llava_recipe(ws, n=4))
    built = ws.build(recipe)
    assert server.counts["chat"] == 12 and server.counts["GET models"] == 3
    by_task = {t: [r for r in built.rows if r["task"] == t] for t in ("caption", "conversation", "detail", "reasoning")}
    assert {t: len(rs) for t, rs in by_task.items()} == {"caption": 4, "conversation": 4, "detail": 4, "reasoning": 4}
    conv = by_task["conversation"][0]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["messages"][0]["content"][0]["type"] == "image" and len(conv["images"]) == 1
    assert text_of(conv["messages"][0]) == "What animal is on the grass?" and text_of(conv["messages"][3]) == "Green."
    assert not any(p["type"] == "image" for p in conv["messages"][2]["content"])
    detail = by_task["detail"][0]
    from vlmdata.steps.synthesize import TEXT_PROMPTS

    assert text_of(detail["messages"][1]) == DETAIL and text_of(detail["messages"][0]) in TEXT_PROMPTS
    assert text_of(by_task["reasoning"][0]["messages"][0]) == "Why might the dog be outside?"
    meta = conv["meta"]
    assert meta["template"]["name"] == "llava/conversation" and len(meta["template"]["sha256"]) == 16
    assert meta["model"] == "gpt-4o-mini" and len(meta["request"]) == 64 and meta["tokens"]["completion"] > 0
    assert meta["cost_usd"] > 0 and meta["from_row"] and meta["cached"] is False
    assert server.image_parts == 4  # only the detail job attaches the image (as a data URL)
    assert any(p["image_url"]["url"].startswith("data:image/png;base64,") for b in server.bodies
               for m in b["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url")
    stage = next(s for s in built.manifest["stages"] if s["stage"] == "synthesize")
    jobs = stage["details"]["jobs"]
    assert jobs["conversation"]["requests_sent"] == 4 and jobs["detail"]["cost_usd"] > 0

    again = ws.build(recipe, out="out2")
    assert server.counts["chat"] == 12 and server.counts["GET models"] == 3  # zero requests, no preflight
    assert sorted(r["id"] for r in again.rows) == sorted(r["id"] for r in built.rows)
    assert all(r["meta"]["cached"] for r in again.rows if r["task"] != "caption")

    mine = ws.root / "mytemplates" / "detail.j2"
    mine.parent.mkdir()
    source = Path(__file__).parents[3].joinpath("templates/llava/detail.j2").read_text()
    mine.write_text(source + "{# a comment renders nothing: same requests #}")
    edited = llava_recipe(ws, n=4)
    edited["synthesize"][1]["template"] = "mytemplates/detail.j2"
    ws.build(ws.recipe(edited, "edited.yaml"), out="out3")
    assert server.counts["chat"] == 12
    mine.write_text(source.replace("one detailed paragraph", "one long paragraph"))
    edited = llava_recipe(ws, n=4)
    edited["synthesize"][1]["template"] = "mytemplates/detail.j2"
    ws.build(ws.recipe(edited, "edited.yaml"), out="out3")
    assert server.counts["chat"] == 12 + 4  # only the edited template's requests are new

    leaks = files_containing([ws.root / "out", ws.root / "out2", ws.root / "out3", ws.root / ".vlmdata-cache"], FAKE_KEY)
    assert leaks == []
    assert (ws.root / ".vlmdata-cache" / "synth.sqlite").is_file()


def test_keep_source_rows_false_and_n_samples(ws: Workspace, server: FakeOpenAI) -> None:
    from synth_kit import job

    recipe = llava_recipe(ws, n=2, jobs=[job("conversation", "llava/conversation", keep_source_rows=False, n=3,
                                             seed=7, temperature=1.0)])
    built = ws.build(recipe)
    assert {r["task"] for r in built.rows} == {"conversation"}
    assert server.counts["chat"] == 6 and len({b["seed"] for b in server.bodies}) == 3
    assert len({r["meta"]["request"] for r in built.rows}) == 6
    assert CONV.split("\n")[1] in text_of(built.rows[0]["messages"][0])
