"""Write: rows → the final Arrow shards of a `datasets.DatasetDict`, in one pass.

Rows stream straight into the shard files of the `save_to_disk` layout (`SPLIT/data-0000k-of-0000n.arrow`,
Arrow IPC streams with the contract's exact `Features`), rolling over to a new shard past
`max_shard_size`. At the end the shards are renamed to their final `-of-n` names and the small JSON
files that `datasets.load_from_disk` reads (`state.json`, `dataset_info.json`, `dataset_dict.json`)
are written. Nothing is copied or memory-mapped again, so memory stays flat however large the build.
Internal columns (hashes, fields, context) are dropped; lineage goes into `meta` as JSON. The caller
writes into a temporary folder and renames it into place, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vlmdata.rows import Reject
from vlmdata.schema import features
from vlmdata.steps.base import Row

SPLIT_ORDER = ("train", "validation", "test")


@dataclass
class _SplitFiles:
    """The open shard of one split and the shards already closed."""

    folder: Path
    shards: list[Path] = field(default_factory=list)
    sink: Any = None
    writer: Any = None
    shard_bytes: int = 0
    rows: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class ArrowWriter:
    """The sink of a build: `write(rows)` many times (rows carry `split`), then `finish()`."""

    name: ClassVar[str] = "write"

    def __init__(self, *, dest: Path, recipe_hash: str, max_shard_size: str = "500MB",
                 preference: bool = False) -> None:
        import pyarrow as pa
        from datasets.utils.py_utils import convert_file_size_to_int

        self.dest = dest
        self.recipe_hash = recipe_hash
        self.preference = preference  # a preference dataset: `chosen` and `rejected` columns too
        self.features = features(preference=preference)
        self.schema: pa.Schema = self.features.arrow_schema
        self.max_shard_bytes = convert_file_size_to_int(max_shard_size)
        self._splits: dict[str, _SplitFiles] = {}
        self.rejects: list[Any] = []  # rows that did not fit the contract's types (stage `write`)
        self._id_hashes = bytearray()  # 8 bytes per written row (mix repeats left out): duplicate-id check
        self._dup_ids: list[str] | None = None
        self.counts: dict[str, Counter[str]] = {"split": Counter(), "task": Counter(), "source": Counter()}

    def _contract_row(self, row: Row) -> dict[str, Any]:
        meta = dict(row["meta"])
        meta["recipe_hash"] = self.recipe_hash
        meta["image_sha256"] = row["image_hashes"]
        if row.get("context"):
            meta["context"] = row["context"]
        return {
            "id": row["id"],
            "task": row["task"],
            "source": row["source"],
            "images": [{"bytes": b, "path": None} for b in row["images"]],
            "messages": row["messages"],
            "answers": [str(a) for a in row["answers"]],
            "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str),
        } | ({"chosen": row["chosen"], "rejected": row["rejected"]} if self.preference else {})

    def write(self, rows: list[Row]) -> None:
        """Append rows to their split's current shard (`row["split"]`, default train)."""
        by_split: dict[str, list[Row]] = {}
        for r in rows:
            by_split.setdefault(r.get("split") or "train", []).append(r)
        for split, part in by_split.items():
            self._write_split(part, split)

    def _open_shard(self, files: _SplitFiles) -> None:
        import pyarrow as pa

        files.folder.mkdir(parents=True, exist_ok=True)
        path = files.folder / f".shard-{len(files.shards):05d}.arrow"
        files.shards.append(path)
        files.sink = pa.OSFile(str(path), "wb")
        files.writer = pa.ipc.new_stream(files.sink, self.schema)
        files.shard_bytes = 0

    def _close_shard(self, files: _SplitFiles) -> None:
        if files.writer is not None:
            files.writer.close()
            files.sink.close()
            files.writer = files.sink = None

    def _write_split(self, rows: list[Row], split: str) -> None:
        import pyarrow as pa

        files = self._splits.get(split)
        if files is None:
            files = self._splits[split] = _SplitFiles(folder=self.dest / split)
            self._open_shard(files)
        elif files.shard_bytes >= self.max_shard_bytes:
            self._close_shard(files)
            self._open_shard(files)
        try:
            table = pa.Table.from_pylist([self._contract_row(r) for r in rows], schema=self.schema)
        except Exception:  # one row that does not fit the contract: that row is rejected, not the build
            rows, table = self._fitting(rows)
            if not rows:
                return
        files.writer.write_table(table)
        files.shard_bytes += table.nbytes
        files.rows += len(rows)
        for r in rows:
            if not (r.get("meta") or {}).get("mix", {}).get("repeat"):
                self._id_hashes += hashlib.blake2b(r["id"].encode(), digest_size=8).digest()
            files.digest.update(r["id"].encode())
            self.counts["split"][split] += 1
            self.counts["task"][r["task"]] += 1
            self.counts["source"][r["source"]] += 1

    @property
    def rows_written(self) -> int:
        return sum(f.rows for f in self._splits.values())

    def _fitting(self, rows: list[Row]) -> tuple[list[Row], Any]:
        """The rows that convert to the contract's Arrow types, one by one; the others become
        `internal_error` rejects of the `write` stage (`self.rejects`)."""
        import pyarrow as pa

        kept, tables = [], []
        for r in rows:
            try:
                tables.append(pa.Table.from_pylist([self._contract_row(r)], schema=self.schema))
                kept.append(r)
            except Exception as e:
                meta = r.get("meta") or {}
                self.rejects.append(Reject(source=str(r.get("source", "")), locator=str(meta.get("locator", "")),
                                           reason="internal_error", detail=f"write: {type(e).__name__}: {str(e)[:300]}",
                                           stage="write", row_id=r.get("id"), extra={"exception": type(e).__name__}))
        return kept, (pa.concat_tables(tables) if tables else None)

    def duplicate_ids(self) -> list[str]:
        """Ids written more than once (mix repeats aside), found from 8-byte hashes kept while writing
        (flat memory); the ids themselves are read back from the shards only when there are some."""
        if self._dup_ids is not None:
            return self._dup_ids
        import numpy as np
        import pyarrow as pa

        hashes = np.frombuffer(bytes(self._id_hashes), dtype="<u8")
        values, counts = np.unique(hashes, return_counts=True)
        dup = set(values[counts > 1].tolist())
        found: set[str] = set()
        if dup:
            for files in self._splits.values():
                for shard in files.shards:
                    path = shard if shard.exists() else files.folder / shard.name
                    if not path.exists():
                        continue
                    with pa.memory_map(str(path)) as source:
                        for batch in pa.ipc.open_stream(source):
                            for rid in batch.column("id").to_pylist():
                                h = int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest(), "little")
                                if h in dup:
                                    found.add(rid)
        self._dup_ids = sorted(found)
        return self._dup_ids

    def warnings(self) -> list[dict[str, Any]]:
        """What the manifest's `warnings` records about the written rows (duplicate ids)."""
        dups = self.duplicate_ids()
        if not dups:
            return []
        return [{"kind": "duplicate_ids", "count": len(dups), "examples": dups[:10],
                 "message": f"{len(dups)} row id(s) occur more than once (the same images and turns, e.g. a "
                            "source listed twice or repeated lines); add `dedup: {text: {method: exact}}` "
                            "(or dedup.images) to the recipe to keep one of each"}]

    def finish(self) -> dict[str, int]:
        """Close the shards and write the `save_to_disk` metadata; returns rows per split."""
        import datasets

        if not self._splits:  # an empty build is still a valid, loadable dataset
            self._splits["train"] = _SplitFiles(folder=self.dest / "train")
            self._open_shard(self._splits["train"])
        order = sorted(self._splits, key=lambda k: (SPLIT_ORDER.index(k) if k in SPLIT_ORDER else len(SPLIT_ORDER), k))
        info = datasets.DatasetInfo(features=self.features)
        for split in order:
            files = self._splits[split]
            self._close_shard(files)
            n = len(files.shards)
            names = [f"data-{k:05d}-of-{n:05d}.arrow" for k in range(n)]
            for shard, final_name in zip(files.shards, names, strict=True):
                shard.rename(files.folder / final_name)
            files.shards = [files.folder / name for name in names]
            state = {
                "_data_files": [{"filename": name} for name in names],
                "_fingerprint": files.digest.hexdigest()[:16],
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": None,
            }
            (files.folder / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            info.write_to_directory(str(files.folder))
        (self.dest / "dataset_dict.json").write_text(json.dumps({"splits": order}) + "\n", encoding="utf-8")
        return {split: self._splits[split].rows for split in order}
