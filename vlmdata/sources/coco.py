"""`coco`: a COCO image folder with its captions and/or instances JSON (symbolic context for LLMs).

Each image becomes one row: its captions as the `caption` field (so `instruct` can make caption rows)
and, in `context` for synthesis templates, `captions`, `boxes` ([{category, bbox}]) and `box_lines`
(`category: [x1, y1, x2, y2]`), boxes normalised to [0, 1] with 3 decimals as in LLaVA's prompts, plus
`counts` per category and the image's `width`, `height`, `file_name`, `image_id`. Images with no
caption and no box are skipped (they carry nothing to say). Rows come in image-id order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from vlmdata.config.path_types import ExistingDir, ExistingFile
from vlmdata.media.verify import resolve_under
from vlmdata.rows import ImageRef, Record, Reject, RowError
from vlmdata.sources.base import SourceSpec
from vlmdata.sources.encoding import check_text


class CocoSpec(SourceSpec):
    kind: Literal["coco"] = "coco"
    path: ExistingDir  # the image folder (e.g. train2017/)
    captions: ExistingFile | None = None  # captions_*.json
    instances: ExistingFile | None = None  # instances_*.json
    task: str = "caption"

    @model_validator(mode="after")
    def _some_labels(self) -> CocoSpec:
        if self.captions is None and self.instances is None:
            raise ValueError("coco needs `captions` and/or `instances` (paths to the COCO annotation JSON files)")
        return self


def _load(path: Path) -> dict[str, Any]:
    # invalid UTF-8 survives as surrogates: the image whose caption holds it is rejected `bad_encoding`
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as f:
        return json.load(f)


def _bad_annotation(spec: CocoSpec, path: Path, i: int, e: Exception) -> Reject:
    return Reject(spec.name, f"{path.name}:annotations[{i}]", "malformed_annotation",
                  f"{type(e).__name__}: {e} (an annotation needs image_id and caption / category_id and bbox)", "load")


def _box(bbox: list[float], width: int, height: int) -> list[float]:
    x, y, w, h = bbox
    return [round(min(max(v, 0.0), 1.0), 3) for v in (x / width, y / height, (x + w) / width, (y + h) / height)]


def read_coco(spec: CocoSpec) -> Iterator[Record | Reject]:
    images: dict[int, dict[str, Any]] = {}
    captions: dict[int, list[str]] = defaultdict(list)
    boxes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if spec.captions is not None:
        data = _load(spec.captions)
        images.update({im["id"]: im for im in data.get("images", [])})
        for i, ann in enumerate(data.get("annotations", [])):
            try:
                captions[ann["image_id"]].append(str(ann["caption"]).strip())
            except (KeyError, TypeError) as e:
                yield _bad_annotation(spec, spec.captions, i, e)
    if spec.instances is not None:
        data = _load(spec.instances)
        images.update({im["id"]: im for im in data.get("images", [])})
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        for i, ann in enumerate(data.get("annotations", [])):
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
                boxes[ann["image_id"]].append({"category": names.get(ann["category_id"], str(ann["category_id"])),
                                               "bbox": [x, y, w, h]})
            except (KeyError, TypeError, ValueError) as e:
                yield _bad_annotation(spec, spec.instances, i, e)
    for image_id in sorted(images):
        im = images[image_id]
        locator = f"{im['file_name']}#{image_id}"
        if not captions.get(image_id) and not boxes.get(image_id):
            continue
        width, height = int(im.get("width") or 0), int(im.get("height") or 0)
        try:
            image = resolve_under(spec.path, im["file_name"])
            check_text(captions.get(image_id, []), "caption")
        except RowError as e:
            yield Reject(spec.name, locator, e.reason, e.detail, "load")
            continue
        if boxes.get(image_id) and (width <= 0 or height <= 0):
            yield Reject(spec.name, locator, "bad_value", "image entry lacks width/height to normalise boxes", "load")
            continue
        norm = [{"category": b["category"], "bbox": _box(b["bbox"], width, height)} for b in boxes.get(image_id, [])]
        context = {"image_id": image_id, "file_name": im["file_name"], "width": width, "height": height,
                   "captions": captions.get(image_id, []), "boxes": norm,
                   "box_lines": [f"{b['category']}: {b['bbox']}" for b in norm],
                   "counts": dict(Counter(b["category"] for b in norm))}
        fields: dict[str, Any] = {"caption": captions[image_id]} if captions.get(image_id) else {}
        yield Record(source=spec.name, locator=locator, task=spec.task,
                     images=[ImageRef(path=image)], fields=fields, context=context)
