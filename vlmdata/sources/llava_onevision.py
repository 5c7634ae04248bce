"""`llava_onevision`: a LLaVA-OneVision / LLaVA-NeXT data YAML, i.e. a mixture of LLaVA json files.

    # data.yaml, as LLaVA-NeXT's train.py reads it (json_path relative to this file here)
    datasets:
      - {json_path: llava_1.5_mix665k.json, sampling_strategy: "first:10%"}
      - {json_path: ocr.jsonl, sampling_strategy: "end:3000"}
      - {json_path: chart.json, sampling_strategy: "random:500"}
      - {json_path: docs.json}                      # all

    - {name: ov, kind: llava_onevision, path: data.yaml, image_root: images/}

Sampling follows LLaVA-NeXT: `first:N` / `end:N` keep the first / last N items, `N%` is
ceil(N * count / 100), `random:N` keeps N items chosen under `seed` (default: the recipe's seed; the
same seed keeps the same items), `all` keeps everything. Kept items are read in file order, each as a
`llava` row (`sources/llava.py`), located as `file.json[i]`; items a strategy leaves out are not rows
and not rejects (the mixture asked for them to be left out). The YAML is checked when the recipe is.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from vlmdata.config.path_types import ExistingFile
from vlmdata.rows import Record, Reject, RowError
from vlmdata.sources.base import SourceSpec, _image_refs
from vlmdata.sources.jsonstream import MalformedJson, iter_json_array_or_error
from vlmdata.sources.llava import conversation_to_messages
from vlmdata.sources.llava_system import unfold_system

_STRATEGY = re.compile(r"^(?:all|(first|end|random):(\d+)(%?))$")


class LlavaOneVisionSpec(SourceSpec):
    kind: Literal["llava_onevision"] = "llava_onevision"
    path: ExistingFile  # the data YAML
    task: str = "conversation"
    seed: int | None = Field(default=None, validate_default=True)  # default: the recipe's seed

    @field_validator("seed")
    @classmethod
    def _recipe_seed(cls, value: int | None, info: ValidationInfo) -> int:
        if value is not None:
            return value
        seed = (info.context or {}).get("seed", 0)
        return seed if isinstance(seed, int) else 0

    @model_validator(mode="after")
    def _check_mixture(self) -> LlavaOneVisionSpec:
        mixture_entries(self.path)
        return self

    def default_image_root(self) -> Path:
        return self.image_root or self.path.parent


def mixture_entries(path: Path) -> list[tuple[Path, str]]:
    """(json file, strategy) per entry of the data YAML; ValueError naming every bad entry at once."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path} is not readable YAML ({e})") from None
    items = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path} has no 'datasets:' list of {{json_path, sampling_strategy}}")
    out, problems = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("json_path"), str):
            problems.append(f"datasets[{i}] has no json_path")
            continue
        file = (path.parent / item["json_path"]).resolve()
        strategy = str(item.get("sampling_strategy", "all")).strip()
        if not file.is_file():
            problems.append(f"datasets[{i}].json_path: file not found: {file}")
        if not file.name.endswith((".json", ".jsonl")):
            problems.append(f"datasets[{i}].json_path: {file.name} is not .json or .jsonl")
        m = _STRATEGY.match(strategy)
        if m is None or (m.group(3) and int(m.group(2)) > 100):
            problems.append(f"datasets[{i}].sampling_strategy = {strategy!r}: use all, first:N, end:N, random:N "
                            "(N a count, or a percentage like 10%)")
        out.append((file, strategy))
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return out


def _items(file: Path) -> Iterator[tuple[int, Any]]:
    if file.name.endswith(".json"):
        yield from iter_json_array_or_error(file)
        return
    with file.open("r", encoding="utf-8", errors="replace") as f:
        index = 0
        for line in f:
            if not line.strip():
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as e:
                yield index, RowError("malformed_line", f"item {index}: {e.msg} at column {e.colno}")
            index += 1


def kept_indices(*, count: int, strategy: str, seed: int, salt: str) -> range | set[int]:
    """Which of `count` items a LLaVA-NeXT sampling strategy keeps."""
    m = _STRATEGY.match(strategy)
    assert m is not None  # checked at validation
    if m.group(1) is None:
        return range(count)
    n = math.ceil(int(m.group(2)) * count / 100) if m.group(3) else int(m.group(2))
    n = min(n, count)
    if m.group(1) == "first":
        return range(n)
    if m.group(1) == "end":
        return range(count - n, count)
    return set(random.Random(f"{seed}:{salt}").sample(range(count), n))


def _record(raw: Any, *, spec: LlavaOneVisionSpec, locator: str, root: Path) -> Record:
    if not isinstance(raw, dict) or not isinstance(raw.get("conversations"), list):
        raise RowError("malformed_line", "item has no 'conversations' list")
    images = _image_refs(raw.get(spec.fields.image), root=root)
    messages = unfold_system(conversation_to_messages(raw["conversations"], n_images=len(images)), raw.get("system"))
    context = {"llava_id": raw["id"]} if isinstance(raw.get("id"), str | int) else {}
    return Record(source=spec.name, locator=locator, task=spec.task, images=images, messages=messages, context=context)


def read_llava_onevision(spec: LlavaOneVisionSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    assert spec.seed is not None
    for entry, (file, strategy) in enumerate(mixture_entries(spec.path)):
        needs_count = strategy != "all" and not (strategy.startswith("first:") and not strategy.endswith("%"))
        count = sum(1 for _, x in _items(file) if not isinstance(x, MalformedJson)) if needs_count else None
        keep = (kept_indices(count=count, strategy=strategy, seed=spec.seed, salt=f"{entry}:{file.name}")
                if count is not None else None)
        limit = int(strategy.split(":")[1]) if strategy.startswith("first:") and count is None else None
        for index, raw in _items(file):
            if limit is not None and index >= limit:
                break
            locator = f"{file.name}[{index}]"
            if isinstance(raw, MalformedJson):  # unreadable from here on, whatever the strategy keeps
                yield Reject(spec.name, locator, "malformed_line", str(raw), "load")
                continue
            if keep is not None and index not in keep:
                continue
            if isinstance(raw, RowError):
                yield Reject(spec.name, locator, raw.reason, raw.detail, "load")
                continue
            try:
                yield _record(raw, spec=spec, locator=locator, root=root)
            except RowError as e:
                yield Reject(spec.name, locator, e.reason, e.detail, "load")
