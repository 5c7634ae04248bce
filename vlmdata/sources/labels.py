"""Label files joined to image files (`labels:` of imagefolder and dicom), read line by line.

A malformed line (broken JSON, not an object, no key column, invalid UTF-8, a CSV cell over the csv
module's limit) or a second line for the same file becomes a reject with its line number; the other
lines still label their images. NaN and empty cells are missing values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmdata.rows import Reject
from vlmdata.sources.base import _no_nan
from vlmdata.sources.encoding import find_bad_text
from vlmdata.sources.tabular import _csv_rows, _is_nan_text


def read_labels(path: Path, *, key: str, source: str) -> tuple[dict[str, dict[str, Any]], list[Reject]]:
    """{relative file name: label row} and the rejects of the lines that could not be used."""
    labels: dict[str, dict[str, Any]] = {}
    rejects: list[Reject] = []

    def bad(lineno: int, reason: str, detail: str) -> None:
        rejects.append(Reject(source, f"{path.name}:{lineno}", reason, f"labels line {lineno}: {detail}", "load"))

    def add(lineno: int, row: dict[str, Any]) -> None:
        found = find_bad_text(row)
        if found:
            bad(lineno, "bad_encoding", f"{found}; re-save the file as UTF-8")
        elif row.get(key) in (None, ""):
            bad(lineno, "malformed_line", f"no '{key}' column naming the file (key: {key})")
        elif str(row[key]) in labels:
            bad(lineno, "duplicate_label", f"a second line for '{row[key]}' (the first one is used)")
        else:
            labels[str(row[key])] = row

    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        if path.suffix.lower() == ".csv":
            for lineno, row in _csv_rows(f, delimiter=",", where=path.name):
                if isinstance(row, str):
                    bad(lineno, "malformed_line", row)
                else:
                    add(lineno, {k: (None if v == "" or _is_nan_text(v) else v) for k, v in row.items()})
            return labels, rejects
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if find_bad_text(line):
                bad(lineno, "bad_encoding", f"{find_bad_text(line)}; re-save the file as UTF-8")
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                bad(lineno, "malformed_line", f"not JSON ({getattr(e, 'msg', type(e).__name__)})")
                continue
            if not isinstance(row, dict):
                bad(lineno, "malformed_line", f"expected an object, got {type(row).__name__}")
                continue
            add(lineno, _no_nan(row))
    return labels, rejects
