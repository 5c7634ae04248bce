"""Exports for the trainers people already use: LLaVA json, ShareGPT (LLaMA-Factory), plain JSONL.

    vlmdata export out/medical --format sharegpt [--images-dir DIR] [-o DEST]

Images are written once per content hash (`<pixel sha>.<ext>`) and referenced by relative path, so a
row that reuses an image costs no extra disk. `<image>` markers stand where the image parts were, so
importing a LLaVA export with the `llava` source gives back the same messages and the same row ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = ("llava", "sharegpt", "jsonl")
IMAGE_TOKEN = "<image>"
_FROM = {"user": "human", "assistant": "gpt", "system": "system"}


def _ext(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _flatten(content: list[dict[str, Any]]) -> str:
    """Content parts → one string with `<image>` markers where the images were."""
    pieces = []
    for part in content:
        if part["type"] == "image":
            pieces.append(IMAGE_TOKEN)
        elif part.get("text"):
            pieces.append(part["text"])
    return "\n".join(pieces)


def _rows(out_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    from vlmdata.arrow_io import iter_rows, splits

    for split in splits(out_dir):
        for row in iter_rows(out_dir, split):  # raw image bytes, no PIL decode, no memory map
            yield split, row


def _save_images(row: dict[str, Any], *, images_dir: Path, rel_to: Path) -> list[str]:
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    hashes = meta.get("image_sha256") or []
    paths = []
    for i, im in enumerate(row["images"]):
        data = im["bytes"]
        stem = hashes[i] if i < len(hashes) else f"{row['id']}_{i}"
        path = images_dir / f"{stem}.{_ext(data)}"
        if not path.exists():
            path.write_bytes(data)
        paths.append(Path(_relpath(path, rel_to)).as_posix())
    return paths


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def export(out_dir: Path, *, fmt: str, dest: Path, images_dir: Path | None = None, name: str | None = None) -> dict[str, Path]:
    """Write every split of the dataset at `out_dir` in `fmt` under `dest`; returns split → file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format '{fmt}' (choose from: {', '.join(FORMATS)})")
    dest.mkdir(parents=True, exist_ok=True)
    images_dir = images_dir or dest / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    name = name or out_dir.name
    files: dict[str, Path] = {}
    handles: dict[str, Any] = {}
    first: dict[str, bool] = {}
    try:
        for split, row in _rows(out_dir):
            if split not in handles:
                files[split] = dest / f"{split}.{'jsonl' if fmt == 'jsonl' else 'json'}"
                handles[split] = files[split].open("w", encoding="utf-8")
                if fmt != "jsonl":
                    handles[split].write("[\n")
                first[split] = True
            images = _save_images(row, images_dir=images_dir, rel_to=dest)
            record = _record(fmt, row, images)
            f = handles[split]
            if fmt == "jsonl":
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                f.write(("" if first[split] else ",\n") + json.dumps(record, ensure_ascii=False))
                first[split] = False
    finally:
        for f in handles.values():
            if fmt != "jsonl":
                f.write("\n]\n")
            f.close()
    if fmt == "sharegpt":
        _write_dataset_info(dest, name=name, files=files)
    return files


def _record(fmt: str, row: dict[str, Any], images: list[str]) -> dict[str, Any]:
    if fmt == "llava":
        rec: dict[str, Any] = {"id": row["id"]}
        if images:
            rec["image"] = images[0] if len(images) == 1 else images
        rec["conversations"] = [{"from": _FROM[m["role"]], "value": _flatten(m["content"])} for m in row["messages"]]
        return rec
    if fmt == "sharegpt":
        return {"messages": [{"role": m["role"], "content": _flatten(m["content"])} for m in row["messages"]],
                "images": images}
    return {"id": row["id"], "task": row["task"], "source": row["source"], "images": images,
            "messages": row["messages"], "answers": row["answers"], "meta": json.loads(row["meta"] or "{}")}


def _write_dataset_info(dest: Path, *, name: str, files: dict[str, Path]) -> None:
    """A LLaMA-Factory `dataset_info.json` so `llamafactory-cli` finds each split by name."""
    info = {}
    for split, path in files.items():
        info[f"{name}_{split}"] = {
            "file_name": path.name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
