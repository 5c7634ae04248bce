"""`vqav2`: the official VQA v2 (and v1) files: a questions JSON, an annotations JSON and COCO images.

    - {name: vqav2, kind: vqav2, questions: v2_OpenEnded_mscoco_val2014_questions.json,
       annotations: v2_mscoco_val2014_annotations.json, image_root: val2014}

Questions and annotations are joined on `question_id`. All 10 human answers are kept in order (the
official accuracy needs every one of them, duplicates included); test splits have no annotations, so
their rows have no answers. `question_type`, `answer_type`, `multiple_choice_answer`, `question_id`
and `image_id` go into the row's context (and so into `meta`), to report accuracy per type later.

Image file names follow `image_pattern`, formatted with `image_id` and `split` (the questions file's
`data_subtype`, e.g. train2014, unless `split` is given). Both JSON files are read whole (VQAv2's
largest annotations file is about 0.3 GB).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from vlmdata.config.path_types import ExistingDir, ExistingFile
from vlmdata.rows import Record, Reject, RowError
from vlmdata.sources.base import SourceSpec, _image_refs
from vlmdata.sources.encoding import check_text

CONTEXT_KEYS = ("question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer")


class VqaV2Spec(SourceSpec):
    kind: Literal["vqav2"] = "vqav2"
    questions: ExistingFile
    annotations: ExistingFile | None = None
    image_root: ExistingDir
    image_pattern: str = "COCO_{split}_{image_id:012d}.jpg"
    split: str | None = None  # default: the questions file's data_subtype

    @field_validator("image_pattern")
    @classmethod
    def _pattern_formats(cls, value: str) -> str:
        try:
            value.format(image_id=1, split="train2014")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"'{value}' must use only {{image_id}} (with a format such as :012d) and "
                             f"{{split}}: {type(e).__name__}: {e}") from None
        return value

    @property
    def path(self) -> Path:
        """The questions file: what plans and messages show as this source's path."""
        return self.questions


def _load(path: Path, key: str) -> tuple[dict[str, Any], list[Any]]:
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as f:  # bad bytes: that row's bad_encoding
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise RowError("malformed_file", f"{path.name}: expected a JSON object with a '{key}' list")
    items = data.pop(key)
    return data, items


def read_vqav2(spec: VqaV2Spec) -> Iterator[Record | Reject]:
    name = spec.questions.name
    try:
        header, questions = _load(spec.questions, "questions")
        annotations = _index(_load(spec.annotations, "annotations")[1]) if spec.annotations else None
    except (RowError, json.JSONDecodeError, UnicodeDecodeError) as e:
        detail = e.detail if isinstance(e, RowError) else f"not valid JSON: {e}"
        yield Reject(spec.name, name, "malformed_file", detail, "load")
        return
    split = spec.split or str(header.get("data_subtype") or "")
    for i, q in enumerate(questions):
        locator = f"{name}[{i}]"
        try:
            rec = _record(q, spec=spec, split=split, annotations=annotations, locator=locator)
            check_text({"fields": rec.fields, "context": rec.context})
            yield rec
        except RowError as e:
            yield Reject(spec.name, locator, e.reason, e.detail, "load")
        except Exception as e:  # a shape no rule expected: this question's reject, reading goes on
            yield Reject(spec.name, locator, "internal_error", f"load: {type(e).__name__}: {str(e)[:300]}", "load")


def _index(annotations: list[Any]) -> dict[Any, dict[str, Any]]:
    return {a["question_id"]: a for a in annotations if isinstance(a, dict) and "question_id" in a}


def _record(q: Any, *, spec: VqaV2Spec, split: str, annotations: dict[Any, dict[str, Any]] | None,
            locator: str) -> Record:
    if not isinstance(q, dict) or any(k not in q for k in ("image_id", "question", "question_id")):
        raise RowError("malformed_line", "a question needs image_id, question and question_id")
    try:
        file_name = spec.image_pattern.format(image_id=int(q["image_id"]), split=split)
    except (TypeError, ValueError) as e:
        raise RowError("bad_value", f"image_id {q['image_id']!r}: {e}") from None
    fields: dict[str, Any] = {"question": str(q["question"])}
    context: dict[str, Any] = {"question_id": q["question_id"], "image_id": q["image_id"]}
    if annotations is not None:
        ann = annotations.get(q["question_id"])
        if ann is None:
            raise RowError("missing_annotation", f"question_id {q['question_id']} has no annotation")
        fields["answers"] = [str(a["answer"]) for a in ann.get("answers") or [] if isinstance(a, dict) and "answer" in a]
        context.update({k: ann[k] for k in CONTEXT_KEYS if k in ann and k not in context})
    images = _image_refs(file_name, root=spec.image_root)
    return Record(source=spec.name, locator=locator, task=spec.task, images=images, fields=fields, context=context)
