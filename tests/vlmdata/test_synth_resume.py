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
    # concurrency 1: when a commit is seen the next request is inside the server's delay, so the kill
    # cuts it off before an answer is written (an answer written but not yet read would be lost too)
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": server.base_url}
    proc = subprocess.Popen([sys.executable, "-m", "vlmdata.cli", "build", str(recipe), "-q", "--out",
                             str(ws.root / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = str(ws.root / ".vlmdata-cache" / "synth.sqlite")
    deadline = time.monotonic() + 60
    while _cached(db) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = _cached(db)
    assert 5 <= killed_with < 16 and not (ws.root / "out").exists()

    built = ws.build(recipe)
    assert len([r for r in built.rows if r["task"] == "conversation"]) == 16
    assert len(server.answered) == 16 and set(server.answered.values()) == {1}  # each answer delivered once
    assert server.counts["chat"] == 16 + server.abandoned  # the only repeats: requests cut off in flight
    assert _cached(db) == 16
