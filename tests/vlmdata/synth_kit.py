"""Helpers for synthesis tests: the loopback OpenAI server fixture, a small COCO folder drawn with PIL,
scripted answers per template, and a recipe with the three LLaVA jobs.

    @pytest.fixture
    def server(monkeypatch): yield from serve(monkeypatch)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI, Reply
from vlmdata_kit import Workspace

FAKE_KEY = "sk-test-DISTINCTIVE-7f3a9c1e5b"
CONV = "Question:\nWhat animal is on the grass?\n===\nAnswer:\nA dog.\n===\nQuestion:\nWhat colour is the grass?\n===\nAnswer:\nGreen."
DETAIL = "A brown dog stands on a green lawn in bright daylight, looking towards a red ball."
REASON = "**Question 1:** Why might the dog be outside?\n**Answer:** It is daytime and the ball suggests it is playing."


def llava_rule(text: str, attempt: int) -> Reply:
    if "training conversations" in text:
        return Reply(text=CONV)
    if "describe pictures" in text:
        return Reply(text=DETAIL)
    if "hard questions" in text:
        return Reply(text=REASON)
    return Reply()


def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """Body of each test module's `server` fixture: a started server, the env pointing at it."""
    srv = FakeOpenAI(api_key=FAKE_KEY).start()
    srv.rule = llava_rule
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    yield srv
    srv.stop()


def coco(ws: Workspace, *, n: int = 4, categories: tuple[str, ...] = ("dog", "ball")) -> dict[str, str]:
    """images/000000000001.png ... with captions_x.json and instances_x.json; returns the source's paths."""
    images, caps, inst = [], [], []
    for i in range(1, n + 1):
        name = f"{i:012d}.png"
        ws.image(f"coco/images/{name}", seed=i, size=(64, 48))
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        caps += [{"id": 10 * i, "image_id": i, "caption": f"A dog on the grass, picture {i}."},
                 {"id": 10 * i + 1, "image_id": i, "caption": f"A dog near a ball ({i})."}]
        inst += [{"id": 100 * i + k, "image_id": i, "category_id": 1 + (k % len(categories)),
                  "bbox": [4.0 * k, 2.0, 16.0, 12.0]} for k in range(2)]
    cats = [{"id": j + 1, "name": c} for j, c in enumerate(categories)]
    ws.write("coco/captions.json", json.dumps({"images": images, "annotations": caps}))
    ws.write("coco/instances.json", json.dumps({"images": images, "annotations": inst, "categories": cats}))
    return {"path": "coco/images", "captions": "coco/captions.json", "instances": "coco/instances.json"}


def job(name: str, template: str, *, parse: str = "qa_blocks", **extra: Any) -> dict[str, Any]:
    return {"name": name, "from": ["coco"], "template": template, "model": "gpt-4o-mini", "task": name,
            "parse": parse, "concurrency": 8, "timeout_s": 5, "max_retries": 2, **extra}


def llava_recipe(ws: Workspace, *, n: int = 4, jobs: list[dict[str, Any]] | None = None,
                 **top: Any) -> dict[str, Any]:
    paths = coco(ws, n=n)
    return {"name": "llava", "seed": 0, "sources": [{"name": "coco", "kind": "coco", "task": "caption", **paths}],
            "synthesize": jobs if jobs is not None else [
                job("conversation", "llava/conversation"),
                job("detail", "llava/detail", parse="text", images="data_url"),
                job("reasoning", "llava/reasoning")], **top}


def files_containing(roots: list[Path], needle: str) -> list[Path]:
    hits = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and needle.encode() in p.read_bytes():
                hits.append(p)
    return hits


def cached_answers(db: Path) -> int:
    """Answers committed to the synthesis cache so far (0 before the file exists)."""
    try:
        with sqlite3.connect(str(db), timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def kill_9_mid_build(*, ws: Workspace, server: FakeOpenAI, recipe: Path, answered: int, api_key: str) -> int:
    """`vlmdata build` in a child process, SIGKILLed while the server holds request `answered + 1` unanswered
    (so the kill always lands on a request in flight, however loaded the machine). Returns the answers the
    cache held at the kill; the build left no output folder."""
    env = {**os.environ, "OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url}
    server.hold_after = answered
    proc = subprocess.Popen([sys.executable, "-m", "vlmdata.cli", "build", str(recipe), "-q", "--out",
                             str(ws.root / "out")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = ws.root / ".vlmdata-cache" / "synth.sqlite"
    try:
        assert server.holding.wait(120), proc.stderr.read().decode() if proc.poll() is not None else "nothing held"
        deadline = time.monotonic() + 30  # the answers before the held request reach the cache
        while cached_answers(db) < answered and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        server.hold_after = None
    assert not (ws.root / "out").exists()
    return cached_answers(db)
