"""`dicom`: DICOM files (a file, or every DICOM file under a folder, found by the 'DICM' magic).

Each file becomes one row whose image is the windowed 8-bit rendering (see `vlmdata.dicom_image`) and
whose context holds the non-identifying header fields (modality, body part, plane, ...), for
instruction templates. Labels can be joined from a CSV/JSONL file keyed by the file's relative path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.paths import ExistingPath
from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.sources.base import SourceSpec, _as_answers, is_missing
from vlmdata.sources.labels import read_labels


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")
    center: float
    width: float = Field(gt=0)


class DicomSpec(SourceSpec):
    kind: Literal["dicom"] = "dicom"
    path: ExistingPath
    task: str = "report"
    window: Window | None = None  # overrides the header's WindowCenter/WindowWidth
    frame: Literal["middle", "first"] | int = "middle"
    labels: ExistingPath | None = None
    key: str = "file_name"


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom(spec: DicomSpec) -> Iterator[Record | Reject]:
    import pydicom

    from vlmdata.dicom_image import header_context, read_header

    root = spec.path if spec.path.is_dir() else spec.path.parent
    files = sorted(p for p in spec.path.rglob("*") if p.is_file() and _is_dicom(p)) if spec.path.is_dir() else [spec.path]
    labels: dict[str, dict[str, Any]] = {}
    if spec.labels:
        labels, bad = read_labels(spec.labels, key=spec.key, source=spec.name)
        yield from bad
    window = (spec.window.center, spec.window.width) if spec.window else None
    for file in files:
        rel = file.relative_to(root).as_posix()
        try:
            try:
                with file.open("rb") as f:
                    ds = read_header(f)  # never inflates a deflated file's pixel data
            except Exception:
                ds = pydicom.dcmread(file, stop_before_pixels=True)
            context: dict[str, Any] = header_context(ds)
        except Exception as e:
            yield Reject(spec.name, rel, "dicom_error", f"cannot read header: {type(e).__name__}: {e}", "load")
            continue
        context["file_name"] = rel
        fields: dict[str, Any] = {}
        if labels:
            extra = labels.get(rel, {})
            context.update({k: v for k, v in extra.items() if k != spec.key})
            for key in ("question", "caption", "label", "choices"):
                if not is_missing(extra.get(key)):
                    fields[key] = extra[key]
            ans = extra.get("answers") if not is_missing(extra.get("answers")) else extra.get("answer")
            if not is_missing(ans):
                fields["answers"] = _as_answers(ans)
        yield Record(source=spec.name, locator=rel, task=spec.task,
                     images=[ImageRef(path=file, window=window, frame=spec.frame)], fields=fields, context=context)

