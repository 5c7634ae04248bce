"""The per-request response cache: one SQLite file, one row per answered request, committed at once.

Each response is committed the moment it arrives (WAL mode), so a build killed with `kill -9` loses at
most the requests still in flight, and the rerun pays only for those. The key is the request hash of
`prompt.build_request` (no credentials in it); rows store the answer text, finish reason and usage so
cost accounting works on cached rows too. The `batches` table is the Batch API ledger (batch.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY, job TEXT, model TEXT, text TEXT, finish_reason TEXT, refusal TEXT,
  prompt_tokens INTEGER, completion_tokens INTEGER, created REAL);
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, job TEXT, keyset TEXT, input_file_id TEXT, status TEXT, n INTEGER, created REAL);
CREATE INDEX IF NOT EXISTS batches_keyset ON batches(keyset);
"""
CACHE_FILE = "synth.sqlite"
SUBMITTING = "submitting"  # ledger status: input file uploaded, batches.create not confirmed yet


@dataclass(frozen=True)
class Response:
    """What the model answered to one request (only 200 responses are stored)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    refusal: str | None = None


class ResponseCache:
    """`get`/`put` by request key; safe to read from another process while a build writes."""

    def __init__(self, *, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CACHE_FILE
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # `put` is called from the client's worker threads

    def get(self, key: str) -> Response | None:
        row = self._db.execute("SELECT text, finish_reason, prompt_tokens, completion_tokens, refusal FROM responses "
                               "WHERE key = ?", (key,)).fetchone()
        return None if row is None else Response(text=row[0], finish_reason=row[1], prompt_tokens=row[2],
                                                 completion_tokens=row[3], refusal=row[4])

    def has(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found |= {r[0] for r in self._db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk)}
        return found

    def put(self, key: str, response: Response, *, job: str, model: str) -> None:
        """Store and commit one answer (safe from any thread; durable before it returns)."""
        with self._lock:
            self._put(key, response, job=job, model=model)

    def _put(self, key: str, response: Response, *, job: str, model: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, job, model, response.text, response.finish_reason, response.refusal,
                          response.prompt_tokens, response.completion_tokens, time.time()))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    # -- the Batch API ledger ------------------------------------------------------------------
    def open_batch(self, keyset: str) -> tuple[str, str] | None:
        """(batch_id, status) of the latest batch submitted for exactly this set of requests."""
        row = self._db.execute("SELECT batch_id, status FROM batches WHERE keyset = ? ORDER BY created DESC LIMIT 1",
                               (keyset,)).fetchone()
        return None if row is None else (row[0], row[1])

    def begin_batch(self, *, job: str, keyset: str, input_file_id: str, n: int) -> str:
        """Record an uploaded input file BEFORE its batch is created (status `submitting`), so a kill
        between `batches.create` and `submitted` is found by the rerun, which then looks the batch up
        instead of creating a second one. Returns the placeholder id that `submitted` replaces."""
        placeholder = f"{SUBMITTING}:{keyset}"
        self.record_batch(batch_id=placeholder, job=job, keyset=keyset, input_file_id=input_file_id, n=n,
                          status=SUBMITTING)
        return placeholder

    def submitted(self, placeholder: str, *, batch_id: str, status: str) -> None:
        self._db.execute("UPDATE batches SET batch_id = ?, status = ? WHERE batch_id = ?", (batch_id, status, placeholder))

    def submitting(self, keyset: str) -> tuple[str, str] | None:
        """(placeholder, input_file_id) of a batch whose creation was begun but never confirmed."""
        row = self._db.execute("SELECT batch_id, input_file_id FROM batches WHERE keyset = ? AND status = ? "
                               "ORDER BY created DESC LIMIT 1", (keyset, SUBMITTING)).fetchone()
        return None if row is None else (row[0], row[1])

    def record_batch(self, *, batch_id: str, job: str, keyset: str, input_file_id: str, n: int, status: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (batch_id, job, keyset, input_file_id, status, n, time.time()))

    def set_batch_status(self, batch_id: str, status: str) -> None:
        self._db.execute("UPDATE batches SET status = ? WHERE batch_id = ?", (status, batch_id))

    def close(self) -> None:
        self._db.close()
