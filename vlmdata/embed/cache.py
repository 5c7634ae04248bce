"""Embeddings by content hash, in one SQLite file under the build cache folder.

Key: (model fingerprint, kind, content sha256). The fingerprint hashes the model folder's
config and processor files plus each weight file's name, size and first MiB, so retraining or
swapping the weights under the same path invalidates the cache, while a second build of the same
recipe re-embeds nothing (it does not even load the model). Values are float16 bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def model_fingerprint(path: Path) -> str:
    """A short hash of what decides a model's outputs (see module doc); a file path hashes the file's head."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        with p.open("rb") as f:
            head = f.read(1 << 20)
        if p.suffix in WEIGHT_SUFFIXES:
            h.update(str(p.stat().st_size).encode())
            h.update(head)
        else:
            h.update(head)
    return h.hexdigest()[:24]


class EmbeddingCache:
    """get/put float16 vectors by (kind, sha); one connection, opened lazily, in the driver process."""

    def __init__(self, *, path: Path, model: str) -> None:
        self.path = path
        self.model = model
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (model TEXT, kind TEXT, sha TEXT, vec BLOB, "
                             "PRIMARY KEY (model, kind, sha))")
        return self._db

    def get(self, *, kind: str, shas: Iterable[str]) -> dict[str, np.ndarray]:
        shas = list(dict.fromkeys(shas))
        out: dict[str, np.ndarray] = {}
        db = self._conn()
        for lo in range(0, len(shas), 500):
            part = shas[lo:lo + 500]
            q = f"SELECT sha, vec FROM emb WHERE model=? AND kind=? AND sha IN ({','.join('?' * len(part))})"
            for sha, vec in db.execute(q, [self.model, kind, *part]):
                out[sha] = np.frombuffer(vec, dtype=np.float16)
        return out

    def put(self, *, kind: str, items: dict[str, np.ndarray]) -> None:
        db = self._conn()
        db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)",
                       [(self.model, kind, sha, np.asarray(v, np.float16).tobytes()) for sha, v in items.items()])
        db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __getstate__(self) -> dict[str, object]:  # a connection does not pickle; reopen where used
        return {"path": self.path, "model": self.model, "_db": None}
