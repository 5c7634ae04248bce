"""Batch API mode: JSONL → upload → batch → poll → download → rows; an in-flight batch is attached to,
never resubmitted; requests the batch failed are retried online."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI, Reply
from synth_kit import CONV, job, llava_recipe, serve
from vlmdata_kit import Workspace


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def test_batch_round_trip_attach_and_online_retry(ws: Workspace, server: FakeOpenAI) -> None:
    def rule(text: str, attempt: int) -> Reply:  # picture 3 fails inside the batch, succeeds online
        return Reply(status=500) if "picture 3." in text and attempt == 0 else Reply(text=CONV)

    server.rule = rule
    server.hold_batches = True
    spec = job("conversation", "llava/conversation", mode="batch", poll_s=0.01, batch_wait_s=0.1)
    recipe = ws.recipe(llava_recipe(ws, n=4, jobs=[spec]))
    first = ws.build(recipe)
    pending = [r for r in first.rejects if r["reason"] == "batch_pending"]
    assert len(pending) == 4 and "rerun the build to collect it" in pending[0]["detail"]
    assert server.counts["batches_created"] == 1 and server.counts["files_uploaded"] == 1
    assert server.counts["chat"] == 0
    uploaded = server.files["file-0"].decode().splitlines()
    assert len(uploaded) == 4 and json.loads(uploaded[0])["url"] == "/v1/chat/completions"
    spool = ws.root / ".vlmdata-cache" / "batches"
    assert [re.fullmatch(r"[0-9a-f]{16}\.jsonl", p.name) is not None for p in spool.iterdir()] == [True]

    ws.build(recipe, out="again")  # still in flight: attaches, does not resubmit
    assert server.counts["batches_created"] == 1 and server.counts["files_uploaded"] == 1

    server.hold_batches = False
    done = ws.build(recipe, out="done")
    rows = [r for r in done.rows if r["task"] == "conversation"]
    assert len(rows) == 4 and server.counts["batches_created"] == 1
    assert server.counts["batch_request"] == 4 and server.counts["chat"] == 1  # the failed one, online
    assert {r["meta"]["mode"] for r in rows} == {"batch"}
    details = next(s for s in done.manifest["stages"] if s["stage"] == "synthesize")["details"]["jobs"]["conversation"]
    assert details["requests_sent"] == 4 and details["budget_exhausted"] is False
    assert list(spool.iterdir()) == []  # collected: the spool file is gone

    final = ws.build(recipe, out="final")  # everything cached: no batch, no request
    assert len([r for r in final.rows if r["task"] == "conversation"]) == 4
    assert server.counts["batches_created"] == 1 and server.counts["chat"] == 1


def test_a_kill_between_batch_create_and_the_ledger_write_never_submits_twice(ws: Workspace,
                                                                              server: FakeOpenAI) -> None:
    """The server creates the batch but the build never hears back (as if killed right after
    `batches.create`): the rerun finds that batch from the ledger's recorded file id and attaches."""
    import sqlite3

    server.rule = lambda text, attempt: Reply(text=CONV)
    server.drop_batch_create = 1
    spec = job("conversation", "llava/conversation", mode="batch", poll_s=0.01, max_retries=0)
    recipe = ws.recipe(llava_recipe(ws, n=3, jobs=[spec]))
    with pytest.raises(Exception):  # noqa: B017 - the connection drop ends the first build, whatever its type
        ws.build(recipe)
    assert server.counts["batches_created"] == 1 and server.counts["files_uploaded"] == 1
    db = sqlite3.connect(ws.root / ".vlmdata-cache" / "synth.sqlite")
    assert db.execute("select status, input_file_id from batches").fetchall() == [("submitting", "file-0")]

    done = ws.build(recipe, out="again")
    assert server.counts["batches_created"] == 1 and server.counts["files_uploaded"] == 1  # attached, not resent
    assert server.counts["batch_request"] == 3 and server.counts["chat"] == 0
    assert len([r for r in done.rows if r["task"] == "conversation"]) == 3
    assert db.execute("select batch_id, status from batches").fetchall() == [("batch_0", "completed")]
    assert list((ws.root / ".vlmdata-cache" / "batches").iterdir()) == []
