"""Row-per-line files: `jsonl`, `json` (an array of objects), `csv` and `parquet`.

Each maps its columns through `fields` (image, question, answers, caption, ...). A malformed JSONL
line, a CSV line that the csv module refuses (a cell over its field limit, a broken quote) and a row
with invalid UTF-8 (`bad_encoding`, see encoding.py) are rejected with their line number; the build
goes on. `NaN` cells and values are missing values, never the answer "nan".
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from vlmdata.config.path_types import ExistingFile, ExistingPath
from vlmdata.rows import Record, Reject
from vlmdata.sources.base import SourceSpec, record_from_mapping
from vlmdata.sources.encoding import find_bad_text
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
    with spec.path.open("r", encoding="utf-8-sig", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            locator = f"{spec.path.name}:{lineno}"
            bad = find_bad_text(line, f"line {lineno}")
            if bad:
                yield Reject(spec.name, locator, "bad_encoding", f"{bad}; re-save the file as UTF-8", "load")
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                yield Reject(spec.name, locator, "malformed_line", f"line {lineno}: {e.msg} at column {e.colno}", "load")
                continue
            except RecursionError:
                yield Reject(spec.name, locator, "malformed_line", f"line {lineno}: nested too deeply", "load")
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


def _csv_rows(f: Any, *, delimiter: str, where: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row dict) per CSV row, or (line, reason text) where the csv module refuses a row;
    reading goes on after a refused row (the csv reader resets at the next line)."""
    reader = csv.reader(f, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield 1, f"{where}:1: the header line is unreadable ({e})"
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield reader.line_num, f"line {reader.line_num}: {e}"
            continue
        if not cells:
            continue
        if len(cells) > len(header):
            yield reader.line_num, f"line {reader.line_num}: more cells than header columns"
            continue
        yield reader.line_num, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))


def read_csv(spec: CsvSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    with spec.path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for lineno, raw in _csv_rows(f, delimiter=spec.delimiter, where=spec.path.name):
            locator = f"{spec.path.name}:{lineno}"
            if isinstance(raw, str):
                yield Reject(spec.name, locator, "malformed_line", raw, "load")
                continue
            bad = find_bad_text(raw)
            if bad:
                yield Reject(spec.name, locator, "bad_encoding", f"line {lineno}: {bad}; re-save the file as UTF-8",
                             "load")
                continue
            row = {k: (None if v == "" or _is_nan_text(v) else v) for k, v in raw.items()}
            if spec.list_separator:
                for col in (spec.fields.answers, spec.fields.choices):
                    if row.get(col):
                        row[col] = row[col].split(spec.list_separator)
            yield record_from_mapping(row, spec=spec, locator=locator, root=root)


def _is_nan_text(value: str) -> bool:
    """A CSV cell that pandas and spreadsheets write for a missing value."""
    return value.strip().lower() in ("nan", "-nan")


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
