"""`kill -9` in the middle of a build, then a rerun: every answer the server gave is paid for once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI
from synth_kit import FAKE_KEY, cached_answers, job, kill_9_mid_build, llava_recipe, serve
from vlmdata_kit import Workspace


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)




def test_kill_9_then_resume_pays_no_request_twice(ws: Workspace, server: FakeOpenAI) -> None:
    server.delay = 0.15
    recipe = ws.recipe(llava_recipe(ws, n=16, batch_size=4, jobs=[job("conversation", "llava/conversation",
                                                                      concurrency=1)]))
    # the server holds the 6th request unanswered, so the kill cuts it off in flight however loaded the
    # machine is (an answer written but not yet read would be lost, and paid twice)
    killed_with = kill_9_mid_build(ws=ws, server=server, recipe=recipe, answered=5, api_key=FAKE_KEY)
    assert 5 <= killed_with < 16

    built = ws.build(recipe)
    assert len([r for r in built.rows if r["task"] == "conversation"]) == 16
    assert len(server.answered) == 16 and set(server.answered.values()) == {1}  # each answer delivered once
    assert server.counts["chat"] == 16 + server.abandoned  # the only repeats: requests cut off in flight
    assert cached_answers(ws.root / ".vlmdata-cache" / "synth.sqlite") == 16
