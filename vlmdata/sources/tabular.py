"""Row-per-line files: `jsonl`, `json` (an array of objects), `csv` and `parquet`.

Each maps its columns through `fields` (image, question, answers, caption, ...). A malformed JSONL
line is rejected with its line number; the build goes on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from vlmdata.paths import ExistingFile, ExistingPath
from vlmdata.rows import Record, Reject
from vlmdata.sources.base import SourceSpec, record_from_mapping
from vlmdata.sources.jsonstream import MalformedJson, iter_json_array_or_error


class JsonlSpec(SourceSpec):
    kind: Literal["jsonl"] = "jsonl"
    path: ExistingFile


class JsonSpec(SourceSpec):
    kind: Literal["json"] = "json"
    path: ExistingFile


class CsvSpec(SourceSpec):
    kind: Literal["csv"] = "csv"
    path: ExistingFile
    delimiter: str = ","
    list_separator: str | None = None  # e.g. "|" to split an `answers` cell into several answers


class ParquetSpec(SourceSpec):
    kind: Literal["parquet"] = "parquet"
    path: ExistingPath
    batch_size: int = Field(default=1024, ge=1, le=1_000_000)  # Parquet rows read at once


def read_jsonl(spec: JsonlSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    with spec.path.open("r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            locator = f"{spec.path.name}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                yield Reject(spec.name, locator, "malformed_line", f"line {lineno}: {e.msg} at column {e.colno}", "load")
                continue
            if not isinstance(raw, dict):
                yield Reject(spec.name, locator, "malformed_line", f"line {lineno}: expected an object, got {type(raw).__name__}", "load")
                continue
            yield record_from_mapping(raw, spec=spec, locator=locator, root=root)


def read_json(spec: JsonSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    for index, raw in iter_json_array_or_error(spec.path):
        locator = f"{spec.path.name}[{index}]"
        if isinstance(raw, MalformedJson):
            yield Reject(spec.name, locator, "malformed_line", str(raw), "load")
            return
        if not isinstance(raw, dict):
            yield Reject(spec.name, locator, "malformed_line", f"item {index}: expected an object", "load")
            continue
        yield record_from_mapping(raw, spec=spec, locator=locator, root=root)


def read_csv(spec: CsvSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    with spec.path.open("r", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=spec.delimiter)
        for lineno, raw in enumerate(reader, start=2):
            locator = f"{spec.path.name}:{lineno}"
            if None in raw:  # more cells than header columns
                yield Reject(spec.name, locator, "malformed_line", f"line {lineno}: more cells than header columns", "load")
                continue
            row = {k: (v if v != "" else None) for k, v in raw.items()}
            if spec.list_separator:
                for col in (spec.fields.answers, spec.fields.choices):
                    if row.get(col):
                        row[col] = row[col].split(spec.list_separator)
            yield record_from_mapping(row, spec=spec, locator=locator, root=root)


def read_parquet(spec: ParquetSpec) -> Iterator[Record | Reject]:
    import pyarrow.parquet as pq

    root = spec.default_image_root()
    files = sorted(spec.path.glob("*.parquet")) if spec.path.is_dir() else [spec.path]
    for file in files:
        index = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=spec.batch_size):
            for raw in batch.to_pylist():
                yield record_from_mapping(raw, spec=spec, locator=f"{file.name}[{index}]", root=root)
                index += 1
