"""Read a built dataset's shards batch by batch, without memory-mapping them.

`datasets.load_from_disk` memory-maps every shard; touching one column of every batch then faults in
the pages around it (kernel read-ahead), and those file pages count towards the process's RSS. The
report and the exporters only need one pass, so they read the Arrow IPC streams sequentially here:
one record batch in memory at a time, whatever the dataset's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def splits(out_dir: Path) -> list[str]:
    return list(json.loads((out_dir / "dataset_dict.json").read_text(encoding="utf-8"))["splits"])


def iter_batches(out_dir: Path, split: str, *, columns: list[str] | None = None) -> Iterator[Any]:
    """pyarrow RecordBatches of one split, in order (optionally only `columns`)."""
    import pyarrow as pa

    state = json.loads((out_dir / split / "state.json").read_text(encoding="utf-8"))
    for entry in state["_data_files"]:
        with pa.OSFile(str(out_dir / split / entry["filename"])) as f:
            for batch in pa.ipc.open_stream(f):
                yield batch.select(columns) if columns else batch


def iter_rows(out_dir: Path, split: str) -> Iterator[dict[str, Any]]:
    """Rows as plain dicts with raw image bytes ({'bytes', 'path'}); nothing is decoded."""
    for batch in iter_batches(out_dir, split):
        yield from batch.to_pylist()
