"""What every source shares: its recipe fields, the field mapping, and raw-row → Record conversion.

A source adapter only knows its file format. It yields `Record`s (or `Reject`s for rows it cannot
parse) one at a time, so a source never holds the whole dataset in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.config.path_types import ExistingDir
from vlmdata.media.verify import resolve_under
from vlmdata.rows import ImageRef, Record, Reject, RowError
from vlmdata.sources.data_url import decode_data_url, is_data_url, is_remote_url
from vlmdata.sources.encoding import check_text

# A row missing one of these explicitly mapped columns is rejected; other fields are optional per row
# (a missing answer is caught when instructions are made).
REQUIRED_WHEN_MAPPED = frozenset({"image", "question"})
CANONICAL_FIELDS = ("id", "image", "question", "answer", "answers", "caption", "choices", "label", "task")


class FieldMap(BaseModel):
    """Which column of the source holds each canonical field (defaults: the same name)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    image: str = "image"
    question: str = "question"
    answer: str = "answer"
    answers: str = "answers"
    caption: str = "caption"
    choices: str = "choices"
    label: str = "label"
    task: str | None = None


class SourceSpec(BaseModel):
    """Recipe fields every source has. `task` names the rows' task; `limit` reads only the first N rows."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    task: str = "vqa"
    image_root: ExistingDir | None = None
    fields: FieldMap = Field(default_factory=FieldMap)
    limit: int | None = Field(default=None, ge=1)
    max_reject_ratio: float | None = Field(default=None, ge=0, le=1)  # over all stages (reject_budget.py)

    def default_image_root(self) -> Path:
        """Where relative image paths resolve when `image_root` is not given."""
        path: Path = getattr(self, "path")  # noqa: B009 - every concrete spec has a path
        return self.image_root or (path if path.is_dir() else path.parent)


_MAX_PATH, _MAX_NAME = 4096, 255  # PATH_MAX and NAME_MAX (Linux, macOS): longer is an OSError


def _image_refs(value: Any, *, root: Path) -> list[ImageRef]:
    """A field value (path, list of paths, bytes, or HF {'bytes','path'} dict) -> image refs."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [r for v in value for r in _image_refs(v, root=root)]
    if isinstance(value, bytes | bytearray):
        return [ImageRef(data=bytes(value))]
    if isinstance(value, dict):
        if value.get("bytes"):
            return [ImageRef(data=bytes(value["bytes"]))]
        if value.get("path"):
            return _image_refs(value["path"], root=root)
        raise RowError("bad_value", "image dict has neither 'bytes' nor 'path'")
    if isinstance(value, str):
        if not value.strip():
            raise RowError("image_missing", "image path is empty")
        if is_data_url(value):
            return [ImageRef(data=decode_data_url(value))]
        if is_remote_url(value):
            raise RowError("image_remote", f"{value[:200]!r} is a URL; vlmdata reads no network: download the "
                                           "images and give local paths (or data: URLs)")
        if "\0" in value:
            raise RowError("bad_path", f"image path contains a NUL byte: {value[:200]!r}")
        if len(value.encode("utf-8", "surrogateescape")) > _MAX_PATH or any(
                len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME for part in value.split("/")):
            raise RowError("bad_path", f"image path is longer than the OS allows ({len(value)} characters, "
                                       f"starts {value[:80]!r})")
        return [ImageRef(path=resolve_under(root, value))]
    raise RowError("bad_value", f"image field has unsupported type {type(value).__name__}")


def is_missing(value: Any) -> bool:
    """None or a float NaN (JSONL `NaN`, a Parquet/pandas null): a missing value, never the text "nan"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_answers(value: Any) -> list[str]:
    """answers as a list of strings; accepts a string, a list, or VQA-style [{'answer': ...}]."""
    if is_missing(value):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            if isinstance(v, dict) and "answer" in v:
                if not is_missing(v["answer"]):
                    out.append(str(v["answer"]))
            elif not is_missing(v):
                out.append(str(v))
        return out
    return [str(value)]


def _no_nan(value: Any) -> Any:
    """`value` with float NaNs replaced by None (a NaN in `meta` would make it invalid JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def record_from_mapping(raw: dict[str, Any], *, spec: SourceSpec, locator: str, root: Path) -> Record | Reject:
    """Map a raw dict through `spec.fields` into a Record; explicitly mapped but absent columns reject."""
    explicit = spec.fields.model_fields_set
    fields: dict[str, Any] = {}
    try:
        check_text(raw)
        for canonical in CANONICAL_FIELDS:
            column = getattr(spec.fields, canonical)
            if column is None:
                continue
            if column not in raw or is_missing(raw[column]):
                if canonical in explicit and canonical in REQUIRED_WHEN_MAPPED:
                    raise RowError("missing_field", f"column '{column}' (fields.{canonical}) is missing")
                continue
            fields[canonical] = _no_nan(raw[column])
        images = _image_refs(fields.pop("image", None), root=root)
        if "answers" in fields or "answer" in fields:
            fields["answers"] = _as_answers(fields.get("answers", fields.get("answer")))
            fields.pop("answer", None)
        if "choices" in fields and not isinstance(fields["choices"], list):
            raise RowError("bad_value", f"choices must be a list, got {type(fields['choices']).__name__}")
        task = str(fields.pop("task", spec.task))
    except RowError as e:
        return Reject(source=spec.name, locator=locator, reason=e.reason, detail=e.detail, stage="load")
    except Exception as e:  # a value no rule above expected: this row's reject, not the source's end
        return Reject(source=spec.name, locator=locator, reason="internal_error",
                      detail=f"load: {type(e).__name__}: {str(e)[:300]}", stage="load")
    context = {k: _no_nan(v) for k, v in raw.items() if _jsonable(v)}
    return Record(source=spec.name, locator=locator, task=task, images=images, fields=fields, context=context)


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):  # the common case, without encoding
        return True
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def limited(records: Iterator[Record | Reject], limit: int | None) -> Iterator[Record | Reject]:
    """Stop after `limit` records (rejects do not count towards the limit)."""
    if limit is None:
        yield from records
        return
    n = 0
    for r in records:
        yield r
        if isinstance(r, Record):
            n += 1
            if n >= limit:
                return
