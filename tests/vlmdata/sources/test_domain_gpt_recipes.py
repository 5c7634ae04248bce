"""The satellite and document GPT recipes: plan offline with no key (prompts carry the chip / page
context), and build against the real loopback OpenAI-compatible server, where a misquoting answer is
rejected by the page grounding check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_server import FakeOpenAI, Reply
from synth_kit import FAKE_KEY, serve
from vlmdata_kit import Workspace, text_of

pytest.importorskip("rasterio")
pytest.importorskip("pypdfium2")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def _plan(recipe: str, cache: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    out = subprocess.run([sys.executable, "-m", "vlmdata.cli", "plan", str(ROOT / "recipes" / recipe), "--show", "1",
                          "--cache", str(cache)], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "no request was sent" in out.stdout
    return out.stdout


def test_gpt_recipes_plan_offline_with_the_context_in_the_prompt(tmp_path: Path) -> None:
    sat = _plan("satellite-gpt.yaml", tmp_path)
    assert "job chip_qa: model gpt-4o-mini (online), 38 rows -> 38 requests (0 cached)" in sat
    assert re.search(r"centre: \d+\.\d\d° N, \d+\.\d\d° W", sat) and "coordinate reference system: EPSG:32618" in sat
    doc = _plan("document-gpt.yaml", tmp_path)
    assert "job page_qa: model gpt-4o-mini (online), 6 rows -> 6 requests (0 cached)" in doc  # 1 + 5 pages
    assert "Lines with their boxes" in doc and "5.1 Hyper Parameter Optimization [0." in doc


def test_document_gpt_builds_and_rejects_answers_that_misquote_the_page(ws: Workspace, server: FakeOpenAI) -> None:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    def rule(text: str, attempt: int) -> Reply:
        if "5.1 Hyper Parameter Optimization" in text:  # the arXiv page: quotes a heading that is there
            return Reply(text='Question:\nWhich section covers tuning?\n===\nAnswer:\n"5.1 Hyper Parameter Optimization"')
        return Reply(text='Question:\nWhat does the page call it?\n===\nAnswer:\n"The Word Machine of 1899"')

    server.rule = rule
    result = build(load_recipe(ROOT / "recipes/document-gpt.yaml"), out=ws.root / "document-gpt", progress=False)
    assert server.counts["chat"] == 6 and server.image_parts == 6
    assert result.manifest["tasks"]["conversation"] == 1
    assert result.manifest["rejects"]["grounding_quote"] == 5
    import datasets

    rows = [r for split in datasets.load_from_disk(str(result.path)).values() for r in split]
    conv = next(r for r in rows if r["task"] == "conversation")
    assert text_of(conv["messages"][1]) == '"5.1 Hyper Parameter Optimization"'
    assert not any(r["source"] == "pages" and r["task"] != "conversation" for r in rows)  # keep_source_rows: false
    assert FAKE_KEY not in (result.path / "manifest.json").read_text()


def test_satellite_gpt_builds_against_the_server(ws: Workspace, server: FakeOpenAI) -> None:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    result = build(load_recipe(ROOT / "recipes/satellite-gpt.yaml"), out=ws.root / "satellite-gpt", progress=False)
    tasks = result.manifest["tasks"]
    assert tasks["geo_vqa"] == tasks["conversation"] == 38 and server.image_parts == 38
    assert any("ground extent:" in str(b) for b in server.bodies)
