"""`imagefolder`: every image file under a folder, optionally labelled.

Labels come from a CSV or JSONL file (`labels:`) keyed by the image's path relative to the folder
(column `file_name`, as in Hugging Face's imagefolder), or from the parent folder's name
(`label_from: folder`, for class-per-folder layouts). Files are visited in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from vlmdata.config.path_types import ExistingDir, ExistingFile
from vlmdata.rows import Record, Reject
from vlmdata.sources.base import SourceSpec, record_from_mapping
from vlmdata.sources.labels import read_labels

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".dcm"}


class ImageFolderSpec(SourceSpec):
    kind: Literal["imagefolder"] = "imagefolder"
    path: ExistingDir
    task: str = "caption"
    labels: ExistingFile | None = None
    key: str = "file_name"  # the labels file's column that names the image (relative path)
    label_from: Literal["labels", "folder"] = "labels"


def read_imagefolder(spec: ImageFolderSpec) -> Iterator[Record | Reject]:
    labels: dict[str, dict[str, Any]] = {}
    if spec.labels:
        labels, bad = read_labels(spec.labels, key=spec.key, source=spec.name)
        yield from bad
    root = spec.path
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = file.relative_to(root).as_posix()
        raw: dict[str, Any] = {spec.fields.image: rel}
        if spec.label_from == "folder":
            raw[spec.fields.label] = file.parent.name
        elif labels:
            if rel not in labels:
                yield Reject(spec.name, rel, "missing_label", f"{rel} has no row in {spec.labels.name}", "load")
                continue
            raw.update({k: v for k, v in labels[rel].items() if k != spec.key})
        yield record_from_mapping(raw, spec=spec, locator=rel, root=root)
