"""Write: rows → Arrow, then a `datasets.DatasetDict` saved with `save_to_disk`.

Rows stream into one Arrow IPC staging file per split (constant memory), written with the contract's
exact `Features`. At the end each staging file is memory-mapped as a `datasets.Dataset` and saved in
shards. Internal columns (hashes, fields, context) are dropped; lineage goes into `meta` as JSON.
The caller writes into a temporary folder and renames it into place, so a crash never leaves half a
dataset under the final name.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from vlmdata.schema import COLUMNS, features
from vlmdata.steps.base import Row


class ArrowWriter:
    """The sink of a build: `write(rows, split=...)` many times, then `finish(dest)`."""

    name: ClassVar[str] = "write"

    def __init__(self, *, staging_dir: Path, recipe_hash: str) -> None:
        import pyarrow as pa

        self.staging_dir = staging_dir
        self.recipe_hash = recipe_hash
        self.features = features()
        self.schema: pa.Schema = self.features.arrow_schema
        self._writers: dict[str, Any] = {}
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
        }

    def write(self, rows: list[Row]) -> None:
        """Append rows to their split's staging file (`row["split"]`, default train)."""
        by_split: dict[str, list[Row]] = {}
        for r in rows:
            by_split.setdefault(r.get("split") or "train", []).append(r)
        for split, part in by_split.items():
            self._write_split(part, split)

    def _write_split(self, rows: list[Row], split: str) -> None:
        import pyarrow as pa

        if split not in self._writers:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            sink = pa.OSFile(str(self.staging_dir / f"{split}.arrow"), "wb")
            self._writers[split] = (sink, pa.ipc.new_stream(sink, self.schema))
        table = pa.Table.from_pylist([self._contract_row(r) for r in rows], schema=self.schema)
        self._writers[split][1].write_table(table)
        self.counts["split"][split] += len(rows)
        for r in rows:
            self.counts["task"][r["task"]] += 1
            self.counts["source"][r["source"]] += 1

    def finish(self, dest: Path, *, max_shard_size: str) -> dict[str, int]:
        """Close staging files and save the DatasetDict under `dest`; returns rows per split."""
        import datasets

        for sink, writer in self._writers.values():
            writer.close()
            sink.close()
        splits = {}
        order = {name: i for i, name in enumerate(("train", "validation", "test"))}
        for split in sorted(self._writers, key=lambda k: (order.get(k, len(order)), k)):
            ds = datasets.Dataset.from_file(str(self.staging_dir / f"{split}.arrow"))
            splits[split] = ds.cast(self.features) if ds.features != self.features else ds
        if not splits:  # an empty build is still a valid, loadable dataset
            splits["train"] = datasets.Dataset.from_dict({c: [] for c in COLUMNS}, features=self.features)
        # Shard counts computed here: datasets would give an empty split 0 shards, which it cannot load back.
        from datasets.utils.py_utils import convert_file_size_to_int

        shard_bytes = convert_file_size_to_int(max_shard_size)
        num_shards = {k: max(1, min(len(v), v.data.nbytes // shard_bytes + 1)) for k, v in splits.items()}
        datasets.DatasetDict(splits).save_to_disk(str(dest), num_shards=num_shards)
        return {k: len(v) for k, v in splits.items()}
