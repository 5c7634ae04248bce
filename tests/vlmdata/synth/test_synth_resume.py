"""`kill -9` in the middle of a build, then a rerun: every answer the server gave is paid for once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI
from synth_kit import FAKE_KEY, job, llava_recipe, serve
from vlmdata_kit import Workspace


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def _cached(db: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_pays_no_request_twice(ws: Workspace, server: FakeOpenAI) -> None:
    server.delay = 0.15
    recipe = ws.recipe(llava_recipe(ws, n=16, batch_size=4, jobs=[job("conversation", "llava/conversation",
                                                                      concurrency=1)]))
    # the server holds the 6th request unanswered, so the kill cuts it off in flight however loaded the
    # machine is (an answer written but not yet read would be lost, and paid twice)
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": server.base_url}
    server.hold_after = 5
    proc = subprocess.Popen([sys.executable, "-m", "vlmdata.cli", "build", str(recipe), "-q", "--out",
                             str(ws.root / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = str(ws.root / ".vlmdata-cache" / "synth.sqlite")
    assert server.holding.wait(120), proc.stderr.read().decode() if proc.poll() is not None else "no request held"
    deadline = time.monotonic() + 30  # the answers before the held request reach the cache
    while _cached(db) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    server.hold_after = None
    killed_with = _cached(db)
    assert 5 <= killed_with < 16 and not (ws.root / "out").exists()

    built = ws.build(recipe)
    assert len([r for r in built.rows if r["task"] == "conversation"]) == 16
    assert len(server.answered) == 16 and set(server.answered.values()) == {1}  # each answer delivered once
    assert server.counts["chat"] == 16 + server.abandoned  # the only repeats: requests cut off in flight
    assert _cached(db) == 16
