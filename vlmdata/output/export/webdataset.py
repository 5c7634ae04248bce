"""`webdataset` export: tar shards of `shard_size` rows, `{key}.jpg|png` + `{key}.json`, written as a stream.

    train-000000.tar:  00000000_<id>.jpg  00000000_<id>.json  00000001_<id>.png  00000001_<id>.json ...

A row with several images stores them as `{key}.0.jpg`, `{key}.1.png` ... in part order (WebDataset
splits the key at the first dot, so they stay one sample). `{key}.json` holds the contract fields
(`id, task, source, messages, answers, meta`), messages in the HF/TRL parts form, so
`webdataset.WebDataset(...).decode("pil")` and vlmdata's `webdataset` source both read it back whole.
Keys start with the row's position, because a mixed split may hold the same row id twice. Members get
mtime 0 and no owner, so the same dataset gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from vlmdata.output.export.rows import image_ext, iter_export_rows


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def sample_members(row: dict[str, Any], *, key: str) -> list[tuple[str, bytes]]:
    """(member name, bytes) of one row: its images, then its json."""
    members = []
    images = row["images"]
    for i, im in enumerate(images):
        data = im["bytes"]
        suffix = image_ext(data) if len(images) == 1 else f"{i}.{image_ext(data)}"
        members.append((f"{key}.{suffix}", data))
    doc = {"id": row["id"], "task": row["task"], "source": row["source"], "messages": row["messages"],
           "answers": row["answers"], "meta": json.loads(row["meta"] or "{}")}
    members.append((f"{key}.json", json.dumps(doc, ensure_ascii=False).encode("utf-8")))
    return members


def export_webdataset(out_dir: Path, *, dest: Path, shard_size: int) -> dict[str, Path]:
    """Write `{split}-{n:06d}.tar` shards; returns split → its first shard (the others sit beside it)."""
    stale = sorted(p.name for p in dest.glob("*.tar"))
    if stale:  # a folder of shards is read as a whole: old shards beside new ones would be read as data
        raise ValueError(f"{dest} already holds tar shards ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); "
                         "export into an empty folder (-o DEST)")
    files: dict[str, Path] = {}
    tar: tarfile.TarFile | None = None
    current, count, shard = None, 0, 0
    try:
        for split, row in iter_export_rows(out_dir):
            if split != current or count == shard_size:
                if tar is not None:
                    tar.close()
                shard = 0 if split != current else shard + 1
                current, count = split, 0
                path = dest / f"{split}-{shard:06d}.tar"
                files.setdefault(split, path)
                tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 - closed per shard below
            key = f"{count + shard * shard_size:08d}_{row['id']}"
            for name, data in sample_members(row, key=key):
                _add(tar, name, data)
            count += 1
    finally:
        if tar is not None:
            tar.close()
    return files
