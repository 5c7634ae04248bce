"""Public medical VQA sets by name: `vqa_rad`, `slake`, `pathvqa`, in the files their authors publish.

    - {name: rad, kind: vqa_rad, path: VQA_RAD Dataset Public.json, image_root: VQA_RAD Image Folder}
    - {name: slake, kind: slake, path: Slake1.0/test.json, image_root: Slake1.0/imgs}   # lang: en by default
    - {name: path, kind: pathvqa, path: pathvqa/test.jsonl, image_root: pathvqa/images/test}

Each is a thin mapping over the JSON/JSONL readers: the canonical fields come from the set's own
column names, every other column (answer_type, question_type, content_type, modality, location, ...)
stays in the row context, and the set's official split goes into `context.official_split`, so a
recipe that merges sets and re-splits with `split: {group_by: image_cluster}` can see (in the
manifest's `split.official_split_leaks`) the near-duplicate images the official splits share, while
its own split keeps them in one split.

Official splits: VQA-RAD's public JSON has one file; its `phrase_type` marks test questions
(`test_freeform`, `test_para`), everything else is train. SLAKE and PathVQA ship one file per split
(train / validate|val / test); the split is read from the file name unless `split` is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from vlmdata.config.path_types import ExistingPath
from vlmdata.rows import Record, Reject
from vlmdata.sources.base import FieldMap, SourceSpec, record_from_mapping
from vlmdata.sources.jsonstream import MalformedJson, iter_json_array_or_error


class _MedVqaSpec(SourceSpec):
    path: ExistingPath
    split: str | None = None  # the official split of every row; default: from the data or the file name


class VqaRadSpec(_MedVqaSpec):
    kind: Literal["vqa_rad"] = "vqa_rad"


class SlakeSpec(_MedVqaSpec):
    kind: Literal["slake"] = "slake"
    lang: Literal["en", "zh", "all"] = "en"


class PathVqaSpec(_MedVqaSpec):
    kind: Literal["pathvqa"] = "pathvqa"
    image_suffix: str = ".jpg"  # the release names images without one (train_0422 -> train_0422.jpg)


_SPLIT_WORDS = {"train": "train", "training": "train", "validate": "validation", "validation": "validation",
                "val": "validation", "valid": "validation", "dev": "validation", "test": "test"}


def split_from_name(path: Path) -> str | None:
    """train / validation / test from a file name such as `test.json` or `trainset.json`."""
    stem = path.name.lower().split(".")[0]
    for word in sorted(_SPLIT_WORDS, key=len, reverse=True):
        if stem == word or stem.startswith((word + "_", word + "-", word + "set")) or stem.endswith(("_" + word, "-" + word)):
            return _SPLIT_WORDS[word]
    return None


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """(locator, raw item) from a JSON array or a JSONL file; malformed input is one locator's reject."""
    if path.suffix.lower() == ".jsonl":
        with path.open("r", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield f"{path.name}:{lineno}", json.loads(line)
                    except json.JSONDecodeError as e:
                        yield f"{path.name}:{lineno}", MalformedJson(f"line {lineno}: {e.msg} at column {e.colno}")
        return
    for index, raw in iter_json_array_or_error(path):
        yield f"{path.name}[{index}]", raw


def _read(spec: _MedVqaSpec, *, image: str, official: Any, keep: Any = None,
          prepare: Any = None) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    mapped = spec if spec.fields.model_fields_set else spec.model_copy(update={"fields": FieldMap(image=image)})
    for locator, raw in _items(spec.path):
        if isinstance(raw, MalformedJson):
            yield Reject(spec.name, locator, "malformed_line", str(raw), "load")
            if spec.path.suffix.lower() != ".jsonl":
                return
            continue
        if not isinstance(raw, dict):
            yield Reject(spec.name, locator, "malformed_line", f"expected an object, got {type(raw).__name__}", "load")
            continue
        if keep is not None:
            why = keep(raw)
            if why:
                yield Reject(spec.name, locator, why[0], why[1], "load")
                continue
        if prepare is not None:
            raw = prepare(raw)
        rec = record_from_mapping(raw, spec=mapped, locator=locator, root=root)
        if isinstance(rec, Record):
            rec.context["official_split"] = spec.split or official(raw)
        yield rec


def read_vqa_rad(spec: VqaRadSpec) -> Iterator[Record | Reject]:
    by_name = split_from_name(spec.path)

    def official(raw: dict[str, Any]) -> str:
        phrase = str(raw.get("phrase_type") or "")
        return "test" if phrase.startswith("test") else (by_name or "train")

    return _read(spec, image="image_name", official=official)


def read_slake(spec: SlakeSpec) -> Iterator[Record | Reject]:
    by_name = split_from_name(spec.path) or ""

    def keep(raw: dict[str, Any]) -> tuple[str, str] | None:
        lang = str(raw.get("q_lang") or "")
        if spec.lang != "all" and lang != spec.lang:
            return ("other_language", f"q_lang is {lang!r}; this source keeps {spec.lang!r} (set lang: all to keep every language)")
        return None

    return _read(spec, image="img_name", official=lambda raw: by_name, keep=keep)


def read_pathvqa(spec: PathVqaSpec) -> Iterator[Record | Reject]:
    by_name = split_from_name(spec.path) or ""

    def prepare(raw: dict[str, Any]) -> dict[str, Any]:
        name = raw.get("image")
        if isinstance(name, str) and name and "." not in name.rsplit("/", 1)[-1]:
            return {**raw, "image": name + spec.image_suffix}
        return raw

    return _read(spec, image="image", official=lambda raw: str(raw.get("split") or by_name), prepare=prepare)
