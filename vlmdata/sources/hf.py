"""`hf`: a Hugging Face dataset, saved on disk (`load_from_disk`) or by hub name (`load_dataset`).

A dataset with `messages` (the row contract, TRL's format) or ShareGPT/LLaVA-style `conversations`
(`{from, value}`, with a `system` column and `images` or a single `image`) keeps its chat turns; `content`
may be parts, a plain string with `<image>` markers or OpenAI-style parts, and `content: null` is a reject
(`sources/chat.py`). Any other dataset maps its columns through `fields` like a table. Images are read as stored
bytes (no PIL decoding here; the load step verifies them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from vlmdata.config.path_types import ExistingPath
from vlmdata.rows import Record, Reject, RowError, SourceError
from vlmdata.sources.base import SourceSpec, _as_answers, _image_refs, record_from_mapping
from vlmdata.sources.chat import turns_to_messages


class HfSpec(SourceSpec):
    kind: Literal["hf"] = "hf"
    path: ExistingPath | None = None  # a folder written by save_to_disk
    dataset: str | None = None  # a hub dataset name, for users online (streamed); `name` is the source's
    config: str | None = None
    split: str = "train"
    revision: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> HfSpec:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'path' (a dataset saved on disk) or 'dataset' (a hub dataset)")
        return self

    def default_image_root(self) -> Path:
        return self.image_root or (self.path if self.path is not None else Path.cwd())


def _batches(spec: HfSpec) -> Iterator[list[dict[str, Any]]]:
    import datasets

    if spec.path is not None:
        ds = datasets.load_from_disk(str(spec.path))
        if isinstance(ds, datasets.DatasetDict):
            if spec.split not in ds:
                raise SourceError(f"source '{spec.name}': split '{spec.split}' not in {sorted(ds)} "
                                  "(set sources[].split)")
            ds = ds[spec.split]
        for table in ds.with_format("arrow").iter(batch_size=256):
            yield table.to_pylist()
        return
    stream = datasets.load_dataset(spec.dataset, spec.config, split=spec.split, revision=spec.revision, streaming=True)
    if hasattr(stream, "decode"):
        stream = stream.decode(False)
    batch: list[dict[str, Any]] = []
    for row in stream:
        batch.append(row)
        if len(batch) == 256:
            yield batch
            batch = []
    if batch:
        yield batch


def read_hf(spec: HfSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    index = 0
    for batch in _batches(spec):
        for raw in batch:
            locator = f"{spec.split}[{index}]"
            index += 1
            turns_key = next((k for k in ("messages", "conversations") if isinstance(raw.get(k), list)), None)
            if turns_key is not None:
                try:  # {role, content} or ShareGPT {from, value}; content as parts, a string with <image>
                    # markers, or OpenAI parts (sources/chat.py); images in `images` (or LLaVA-style `image`)
                    listed = _image_refs(raw.get("images") if raw.get("images") is not None else raw.get("image"),
                                         root=root)
                    messages, images = turns_to_messages(raw[turns_key], images=listed, root=root,
                                                         system=raw.get("system"), where=turns_key)
                except RowError as e:
                    yield Reject(spec.name, locator, e.reason, e.detail, "load")
                    continue
                yield Record(
                    source=spec.name,
                    locator=locator,
                    task=str(raw.get("task") or spec.task),
                    images=images,
                    fields={"answers": _as_answers(raw.get("answers"))},
                    messages=messages,
                )
            else:
                yield record_from_mapping(raw, spec=spec, locator=locator, root=root)
