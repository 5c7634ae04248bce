"""What resume guarantees, measured with two `kill -9`s at concurrency 16 (the README's promise):
rows are never lost, an answer already received (committed to the cache) is never requested again,
and only requests in flight at a kill — at most `concurrency` — are sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_server import FakeOpenAI
from synth_kit import FAKE_KEY, cached_answers, job, llava_recipe, serve
from vlmdata_kit import Workspace

ROWS, CONCURRENCY = 64, 16


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def _build_until(recipe: Path, ws: Workspace, server: FakeOpenAI, db: Path, *, kill_at: int) -> None:
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": server.base_url}
    proc = subprocess.Popen([sys.executable, "-m", "vlmdata.cli", "build", str(recipe), "-q", "--out",
                             str(ws.root / "out")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while cached_answers(db) < kill_at and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_two_kills_at_concurrency_16(ws: Workspace, server: FakeOpenAI) -> None:
    server.delay = 0.3
    recipe = ws.recipe(llava_recipe(ws, n=ROWS, batch_size=32, jobs=[
        job("conversation", "llava/conversation", concurrency=CONCURRENCY, keep_source_rows=False)]))
    db = ws.root / ".vlmdata-cache" / "synth.sqlite"
    kills, in_flight = 0, []
    for kill_at in (12, 36):
        sent_before, cached_before = server.counts["chat"], cached_answers(db)
        _build_until(recipe, ws, server, db, kill_at=kill_at)
        kills += 1
        cached = cached_answers(db)
        assert kill_at <= cached < ROWS and not (ws.root / "out").exists()
        # every request this run sent was either committed to the cache or in flight when it was killed
        in_flight.append((server.counts["chat"] - sent_before) - (cached - cached_before))
    assert all(0 <= n <= CONCURRENCY for n in in_flight), in_flight
    before_last = server.counts["chat"]
    cached = cached_answers(db)
    built = ws.build(recipe)
    rows = [r for r in built.rows if r["task"] == "conversation"]
    assert len(rows) == ROWS  # rows are never lost
    assert server.counts["chat"] - before_last == ROWS - cached  # answers already received are never paid again
    resent = [d for d, n in server.attempts.items() if n > 1]
    assert len(resent) <= CONCURRENCY * kills  # only requests in flight at a kill were sent again
    assert len(server.attempts) == ROWS and cached_answers(db) == ROWS
    print(f"in flight at the kills: {in_flight}; sent again: {len(resent)}; requests in all: {server.counts['chat']} "
          f"for {ROWS} answers")
