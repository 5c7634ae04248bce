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
        table = pa.Table.from_pylist([self._contract_row(r) for r in rows], schema=self.schema)
        files.writer.write_table(table)
        files.shard_bytes += table.nbytes
        files.rows += len(rows)
        for r in rows:
            files.digest.update(r["id"].encode())
            self.counts["split"][split] += 1
            self.counts["task"][r["task"]] += 1
            self.counts["source"][r["source"]] += 1

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
