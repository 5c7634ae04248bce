"""`sharegpt`: the chat files of LLaMA-Factory, ms-swift and the OpenAI messages format (JSON or JSONL).

    - {name: demo, kind: sharegpt, path: data/mllm_demo.json}
    - {name: demo, kind: sharegpt, dataset_info: data/dataset_info.json, dataset: mllm_demo}

A row is `{messages: [{role, content}]}` or `{conversations: [{from, value}]}` with an optional
top-level `images` list, `system` string and `tools`. `content` is a string with `<image>` markers or
a list of OpenAI/HF parts (see `sources/chat.py`). Image paths resolve against `image_root` (default:
the file's folder, which is LLaMA-Factory's `media_dir` default); `data:` URLs decode; other URLs are
rejects (`image_remote`), since vlmdata reads no network. `dataset_info` reads the file name, columns
and tags of one entry of LLaMA-Factory's registry, so a dataset registered there needs no other keys.
A `tools` value is ignored (the contract has no tool schema) and the number of such rows is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.config.path_types import ExistingFile, ExistingPath
from vlmdata.rows import Record, Reject, RowError
from vlmdata.sources.base import SourceSpec, _as_answers, _image_refs
from vlmdata.sources.chat import ChatTags, turns_to_messages
from vlmdata.sources.jsonstream import MalformedJson, iter_json_array_or_error

log = logging.getLogger("vlmdata.sources")
_CHAT_FORMATS = ("sharegpt", "openai")


class ShareGptColumns(BaseModel):
    """Column names (LLaMA-Factory's `columns`). `messages` unset: `messages` if a row has it, else `conversations`."""

    model_config = ConfigDict(extra="forbid")
    messages: str | None = None
    images: str = "images"
    system: str = "system"
    tools: str = "tools"
    videos: str = "videos"
    audios: str = "audios"


class ShareGptSpec(SourceSpec):
    kind: Literal["sharegpt"] = "sharegpt"
    path: ExistingPath | None = None
    dataset_info: ExistingFile | None = None  # LLaMA-Factory's registry; with `dataset`, replaces path/columns/tags
    dataset: str | None = None
    task: str = "conversation"
    columns: ShareGptColumns = Field(default_factory=ShareGptColumns)
    tags: ChatTags | None = None
    # strict: markers must match images (LLaMA-Factory); prepend: missing ones go before the first user turn (ms-swift)
    markers: Literal["strict", "prepend"] = "strict"

    @model_validator(mode="after")
    def _resolve(self) -> ShareGptSpec:
        if self.dataset_info is None:
            if self.path is None:
                raise ValueError("give 'path' (a .json/.jsonl chat file) or 'dataset_info' (LLaMA-Factory's "
                                 "dataset_info.json) with 'dataset'")
            if self.dataset is not None:
                raise ValueError("'dataset' names an entry of 'dataset_info'; give dataset_info too")
            return self
        if self.path is not None:
            raise ValueError("give 'path' or 'dataset_info', not both (dataset_info names the file)")
        entry = registry_entry(self.dataset_info, self.dataset)
        if entry.get("num_samples"):
            log.warning("source '%s': dataset_info num_samples=%s is not applied (LLaMA-Factory draws that many "
                        "rows at random); use limit: N or the recipe's mix: to sample", self.name, entry["num_samples"])
        self.path = self.dataset_info.parent / entry["file_name"]
        columns = {k: v for k, v in (entry.get("columns") or {}).items() if k in ShareGptColumns.model_fields}
        self.columns = ShareGptColumns(**columns)
        if entry.get("tags"):
            self.tags = ChatTags(**{k: v for k, v in entry["tags"].items() if k in ChatTags.model_fields})
        return self

    def default_image_root(self) -> Path:
        """LLaMA-Factory's `media_dir` default: the registry's folder; else the file's folder (or the folder)."""
        assert self.path is not None
        if self.image_root is not None:
            return self.image_root
        if self.dataset_info is not None:
            return self.dataset_info.parent
        return self.path if self.path.is_dir() else self.path.parent


def read_registry(path: Path) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json as a dict; ValueError (a config problem) if it is not one."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a dataset_info.json (expected an object of dataset entries)")
    return info


def entry_problem(name: str, entry: Any, *, folder: Path) -> str | None:
    """Why the sharegpt source cannot read this registry entry, or None when it can."""
    if not isinstance(entry, dict):
        return f"entry '{name}' is not an object"
    for hub in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"):
        if hub in entry:
            return (f"entry '{name}' is read from {hub} = {entry[hub]!r}; vlmdata reads local files "
                    "(download it, or use kind: hf with dataset: NAME when online)")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in _CHAT_FORMATS:
        return (f"entry '{name}' has formatting '{formatting}'; the sharegpt source reads sharegpt/openai "
                "(an alpaca file reads with kind: json, fields: {question: instruction, answer: output})")
    if entry.get("ranking"):
        return f"entry '{name}' is a preference (ranking) dataset; vlmdata rows have one answer"
    if "file_name" not in entry:
        return f"entry '{name}' has no file_name"
    target = folder / entry["file_name"]
    if not target.exists():
        return f"entry '{name}': file not found: {target}"
    if target.is_file() and target.suffix not in SUFFIXES:
        return f"entry '{name}': {target.name} is not {'/'.join(SUFFIXES)} (the sharegpt source reads those)"
    return None


def registry_entry(path: Path, dataset: str | None) -> dict[str, Any]:
    info = read_registry(path)
    if dataset is None:
        if len(info) != 1:
            raise ValueError(f"{path} has {len(info)} entries; name one with 'dataset' ({', '.join(sorted(info)[:10])})")
        dataset = next(iter(info))
    if dataset not in info:
        import difflib

        close = difflib.get_close_matches(dataset, list(info), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (entries: {', '.join(sorted(info)[:10])})"
        raise ValueError(f"no entry '{dataset}' in {path}{hint}")
    problem = entry_problem(dataset, info[dataset], folder=path.parent)
    if problem:
        raise ValueError(problem)
    return info[dataset]


SUFFIXES = (".json", ".jsonl", ".parquet")


def chat_files(path: Path) -> list[Path]:
    """The file itself, or a folder's .json/.jsonl/.parquet files in name order (LLaMA-Factory allows both)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    return [path]


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """(locator, item) for a JSON array, a JSONL file (told apart by the first character) or a Parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for item in batch.to_pylist():
                yield f"{path.name}[{index}]", item
                index += 1
        return
    with path.open("r", encoding="utf-8", errors="replace") as f:
        head = f.read(4096).lstrip()
    if head.startswith("["):
        for index, item in iter_json_array_or_error(path):
            yield f"{path.name}[{index}]", item
        return
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path.name}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path.name}:{lineno}", MalformedJson(f"line {lineno}: {e.msg} at column {e.colno}", index=lineno)


def chat_record(raw: Any, *, spec: ShareGptSpec, locator: str, root: Path) -> Record:
    """One chat row -> a Record; raises RowError with the reason when it does not fit."""
    if not isinstance(raw, dict):
        raise RowError("malformed_line", f"expected an object, got {type(raw).__name__}")
    cols = spec.columns
    key = cols.messages or ("messages" if "messages" in raw else "conversations")
    if key not in raw:
        raise RowError("missing_field", f"row has no '{key}' (columns.messages)" if cols.messages else
                       "row has neither 'messages' nor 'conversations' (set columns.messages)")
    for media in (cols.videos, cols.audios):
        if raw.get(media):
            raise RowError("unsupported_media", f"row has '{media}'; vlmdata rows hold images only")
    listed = _image_refs(raw.get(cols.images), root=root)
    messages, images = turns_to_messages(raw[key], images=listed, root=root, tags=spec.tags,
                                         system=raw.get(cols.system), where=key,
                                         prepend_missing=spec.markers == "prepend")
    fields: dict[str, Any] = {}
    if raw.get(spec.fields.answers) is not None:
        fields["answers"] = _as_answers(raw[spec.fields.answers])
    task = str(raw.get(spec.fields.task) or spec.task) if spec.fields.task else spec.task
    context = {k: raw[k] for k in ("id",) if isinstance(raw.get(k), str | int)}
    return Record(source=spec.name, locator=locator, task=task, images=images, fields=fields, messages=messages,
                  context=context)


def read_sharegpt(spec: ShareGptSpec) -> Iterator[Record | Reject]:
    assert spec.path is not None
    root = spec.default_image_root()
    with_tools = 0
    for locator, raw in (item for file in chat_files(spec.path) for item in _items(file)):
        if isinstance(raw, MalformedJson):
            yield Reject(spec.name, locator, "malformed_line", str(raw), "load")
            continue
        try:
            record = chat_record(raw, spec=spec, locator=locator, root=root)
        except RowError as e:
            yield Reject(spec.name, locator, e.reason, e.detail, "load")
            continue
        if raw.get(spec.columns.tools):
            with_tools += 1
        yield record
    if with_tools:
        log.warning("source '%s': '%s' ignored on %d row(s) (tool schemas are not part of the row contract)",
                    spec.name, spec.columns.tools, with_tools)
