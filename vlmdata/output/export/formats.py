"""Exports for the trainers people already use: LLaVA json, ShareGPT (LLaMA-Factory), ms-swift JSONL,
plain JSONL, WebDataset tar shards and an lmms-eval task.

    vlmdata export out/medical --format sharegpt [--images-dir DIR] [-o DEST] [--absolute-paths]

Images are written once per content hash (`<pixel sha>.<ext>`) and referenced by path relative to the
export folder (LLaMA-Factory's `media_dir` default; `ROOT_IMAGE_DIR=DEST` for ms-swift), or absolute
with `absolute_paths`. `<image>` markers stand where the image parts were, so every export reads back
through its matching source (`llava`, `sharegpt`, `jsonl`→`hf`-like, `webdataset`) with the same
messages and therefore the same row ids.

Two conventions, decided here once:
- A literal marker in text (`<image>`, and for sharegpt/swift also `<video>`/`<audio>`, which
  LLaMA-Factory and ms-swift count too) would be read as a placeholder by every trainer of that format.
  Such a row is not exported: it goes to `DEST/export_rejects.jsonl` with reason `literal_marker` and
  is counted. Nothing is escaped, because no trainer un-escapes.
- LLaVA json has no system role (LLaVA's `train.py` maps only human/gpt: a system turn is a KeyError).
  A leading system turn is folded into the first human turn, after its image marker, and also kept in a
  top-level `system` key, which LLaVA's trainers ignore and the `llava` source reads to unfold it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmdata.output.export.lmms_eval import export_lmms_eval
from vlmdata.output.export.rows import image_ext, iter_export_rows
from vlmdata.output.export.webdataset import export_webdataset
from vlmdata.sources.llava_system import fold_system

log = logging.getLogger("vlmdata.output.export.formats")
FORMATS = ("llava", "sharegpt", "swift", "jsonl", "webdataset", "lmms_eval")
IMAGE_TOKEN = "<image>"
_FROM = {"user": "human", "assistant": "gpt", "system": "system"}
# Placeholders each format's trainers count in text (LLaMA-Factory's mm_plugin and ms-swift: image/video/audio).
RESERVED = {"llava": ("<image>",), "sharegpt": ("<image>", "<video>", "<audio>"),
            "swift": ("<image>", "<video>", "<audio>")}


@dataclass
class ExportResult:
    """Where each split went, and the rows left out with why (also in `rejects_path`)."""

    files: dict[str, Path]
    rejected: Counter = field(default_factory=Counter)
    rejects_path: Path | None = None


class ExportSkip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def flatten(content: list[dict[str, Any]], *, reserved: tuple[str, ...] = ("<image>",)) -> str:
    """Content parts → one string with `<image>` markers where the images were; ExportSkip on a literal marker."""
    pieces = []
    for part in content:
        if part["type"] == "image":
            pieces.append(IMAGE_TOKEN)
        elif part.get("text"):
            hit = next((tok for tok in reserved if tok in part["text"]), None)
            if hit:
                raise ExportSkip("literal_marker", f"text holds a literal {hit}, which trainers of this format read "
                                                   f"as a placeholder: {part['text'][:120]!r}")
            pieces.append(part["text"])
    return "\n".join(pieces)


def _save_images(row: dict[str, Any], *, images_dir: Path, rel_to: Path | None) -> list[str]:
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    hashes = meta.get("image_sha256") or []
    paths = []
    for i, im in enumerate(row["images"]):
        data = im["bytes"]
        stem = hashes[i] if i < len(hashes) else f"{row['id']}_{i}"
        path = images_dir / f"{stem}.{image_ext(data)}"
        if not path.exists():
            path.write_bytes(data)
        paths.append(path.resolve().as_posix() if rel_to is None else Path(os.path.relpath(path, rel_to)).as_posix())
    return paths


class _SplitFiles:
    """One file per split, opened at its first row: JSON lines (`as_lines`), else one JSON array."""

    def __init__(self, dest: Path, *, as_lines: bool) -> None:
        self.dest, self.as_lines = dest, as_lines
        self.files: dict[str, Path] = {}
        self._handles: dict[str, Any] = {}
        self._first: dict[str, bool] = {}

    def write(self, split: str, record: dict[str, Any]) -> None:
        if split not in self._handles:
            self.files[split] = self.dest / f"{split}.{'jsonl' if self.as_lines else 'json'}"
            self._handles[split] = self.files[split].open("w", encoding="utf-8")
            if not self.as_lines:
                self._handles[split].write("[\n")
            self._first[split] = True
        f = self._handles[split]
        if self.as_lines:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            f.write(("" if self._first[split] else ",\n") + json.dumps(record, ensure_ascii=False))
            self._first[split] = False

    def close(self) -> dict[str, Path]:
        """Close every file (ending the JSON arrays); returns split → file."""
        for f in self._handles.values():
            if not self.as_lines:
                f.write("\n]\n")
            f.close()
        return self.files


def export(out_dir: Path, *, fmt: str, dest: Path, images_dir: Path | None = None, name: str | None = None,
           absolute_paths: bool = False, shard_size: int = 1000, final_dest: Path | None = None) -> ExportResult:
    """Write every split of the dataset at `out_dir` in `fmt` under `dest`.

    `final_dest`: where `dest` will be once the build renames its folder into place (absolute paths
    written into a file, as lmms-eval's task needs, point there)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format '{fmt}' (choose from: {', '.join(FORMATS)})")
    name = name or _dataset_name(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    if fmt == "webdataset":
        return ExportResult(files=export_webdataset(out_dir, dest=dest, shard_size=shard_size))
    if fmt == "lmms_eval":
        return ExportResult(files=export_lmms_eval(out_dir, dest=dest, name=name, final_dest=final_dest))
    images_dir = images_dir or dest / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(files={})
    out = _SplitFiles(dest, as_lines=fmt in ("jsonl", "swift"))
    rejects = None
    try:
        for split, row in iter_export_rows(out_dir):
            try:
                _record(fmt, row, images=None)  # checks the text before any image is written
            except ExportSkip as e:
                if rejects is None:
                    result.rejects_path = dest / "export_rejects.jsonl"
                    rejects = result.rejects_path.open("w", encoding="utf-8")
                rejects.write(json.dumps({"stage": f"export:{fmt}", "split": split, "id": row["id"],
                                          "source": row["source"], "reason": e.reason, "detail": e.detail},
                                         ensure_ascii=False) + "\n")
                result.rejected[e.reason] += 1
                continue
            images = _save_images(row, images_dir=images_dir, rel_to=None if absolute_paths else dest)
            out.write(split, _record(fmt, row, images=images))
    finally:
        result.files.update(out.close())
        if rejects is not None:
            rejects.close()
    if fmt == "sharegpt":
        _write_dataset_info(dest, name=name, files=result.files, ranking=_is_preference(out_dir))
    if result.rejected:
        log.warning("export %s: %d row(s) not exported (%s); see %s", fmt, sum(result.rejected.values()),
                    ", ".join(f"{k}: {v}" for k, v in result.rejected.items()), result.rejects_path)
    return result


def _dataset_name(out_dir: Path) -> str:
    """The recipe's name from the manifest (the folder may be called anything), else the folder's name."""
    try:
        return str(json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))["name"])
    except (OSError, ValueError, KeyError):
        return out_dir.name


def _preference_record(fmt: str, row: dict[str, Any], *, paths: list[str]) -> dict[str, Any]:
    """A preference row (prompt in `messages`, `chosen`, `rejected`) in the trainer's own preference format.

    - sharegpt (LLaMA-Factory, `ranking: true` in dataset_info.json): `messages` = the prompt, `chosen` and
      `rejected` one assistant message each;
    - swift (ms-swift RLHF): `messages` = prompt + the chosen turn, `rejected_response` = the rejected text.
    LLaVA json has no preference form: such rows go to export_rejects.jsonl (`preference_row`)."""
    reserved = RESERVED.get(fmt, ("<image>",))

    def turns(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": flatten(m["content"], reserved=reserved)} for m in messages]

    if fmt == "sharegpt":
        return {"messages": turns(row["messages"]), "chosen": turns(row["chosen"])[0],
                "rejected": turns(row["rejected"])[0], "images": paths}
    if fmt == "swift":
        return {"messages": turns(row["messages"] + row["chosen"]),
                "rejected_response": turns(row["rejected"])[0]["content"], "images": paths}
    raise ExportSkip("preference_row", f"{fmt} has no preference-pair format; export sharegpt, swift or jsonl")


def _record(fmt: str, row: dict[str, Any], *, images: list[str] | None) -> dict[str, Any]:
    paths = images or []
    if row.get("chosen") and fmt != "jsonl":
        return _preference_record(fmt, row, paths=paths)
    if fmt == "llava":
        try:
            messages, system = fold_system(row["messages"])
        except ValueError as e:
            raise ExportSkip("system_turn", str(e)) from None
        rec: dict[str, Any] = {"id": row["id"]}
        if paths:
            rec["image"] = paths[0] if len(paths) == 1 else paths  # a list: LLaVA-NeXT/OneVision's train.py
        if system is not None:
            rec["system"] = system
        rec["conversations"] = [{"from": _FROM[m["role"]], "value": flatten(m["content"], reserved=RESERVED[fmt])}
                                for m in messages]
        return rec
    if fmt in ("sharegpt", "swift"):
        return {"messages": [{"role": m["role"], "content": flatten(m["content"], reserved=RESERVED[fmt])}
                             for m in row["messages"]], "images": paths}
    return {"id": row["id"], "task": row["task"], "source": row["source"], "images": paths,
            "messages": row["messages"], "answers": row["answers"], "meta": json.loads(row["meta"] or "{}"),
            **({"chosen": row["chosen"], "rejected": row["rejected"]} if row.get("chosen") else {})}


def _is_preference(out_dir: Path) -> bool:
    """Whether the saved dataset has the preference columns (vlmdata.schema.PREFERENCE_COLUMNS)."""
    for info in out_dir.glob("*/dataset_info.json"):
        return "chosen" in (json.loads(info.read_text(encoding="utf-8")).get("features") or {})
    return False


def _write_dataset_info(dest: Path, *, name: str, files: dict[str, Path], ranking: bool = False) -> None:
    """A LLaMA-Factory `dataset_info.json` so `llamafactory-cli` finds each split by name
    (`ranking: true` with chosen/rejected columns for a preference dataset: its DPO/RM stages)."""
    info = {}
    columns = {"messages": "messages", "images": "images"}
    if ranking:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    for split, path in files.items():
        info[f"{name}_{split}"] = {
            "file_name": path.name,
            "formatting": "sharegpt",
            **({"ranking": True} if ranking else {}),
            "columns": columns,
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
