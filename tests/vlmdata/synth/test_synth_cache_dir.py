"""`synthesize[].cache_dir` is where that job's answers are cached: a rerun anywhere that names it is free."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI
from synth_kit import job, llava_recipe, serve
from vlmdata_kit import Workspace


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def _rows(db) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from responses").fetchone()[0]


def test_a_jobs_cache_dir_holds_its_answers(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = llava_recipe(ws, n=3, jobs=[job("conversation", "llava/conversation", cache_dir="caches/conv"),
                                         job("reasoning", "llava/reasoning")])
    built = ws.build(ws.recipe(recipe))
    assert server.counts["chat"] == 6
    own, default = ws.root / "caches/conv/synth.sqlite", ws.root / ".vlmdata-cache/synth.sqlite"
    assert _rows(own) == 3 and _rows(default) == 3  # each job's answers where its recipe put them
    jobs = next(s for s in built.manifest["stages"] if s["stage"] == "synthesize")["details"]["jobs"]
    assert jobs["conversation"]["cache"] == str(own.parent) and jobs["reasoning"]["cache"] == str(default.parent)

    # another output folder and another default cache: the job with its own cache_dir pays nothing again
    from vlmdata.build import build

    build(ws.load(ws.recipe(recipe)), out=ws.root / "elsewhere/out", cache_dir=ws.root / "other-cache",
          progress=False)
    assert server.counts["chat"] == 6 + 3
