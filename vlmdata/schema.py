"""The row contract between vlmdata and vlmtrain.

Every dataset vlmdata writes, and every dataset vlmtrain reads, has exactly these columns:

| column     | type                                  | meaning                                                  |
|------------|---------------------------------------|----------------------------------------------------------|
| `id`       | string                                | content hash of the images' pixels + the messages         |
| `task`     | string                                | `vqa`, `caption`, `report`, ... (free, set by the recipe) |
| `source`   | string                                | the recipe's name for the source that produced the row    |
| `images`   | list of `datasets.Image`              | bytes embedded; order = order of `{"type": "image"}` parts |
| `messages` | list of {role, content: [{type, text}]} | the HF / TRL chat format                                |
| `answers`  | list of string                        | reference answers for scoring; empty for free text        |
| `meta`     | string (JSON)                         | lineage: source file + row, recipe hash, template, ...     |

The format is TRL's conversational format, so the output trains in TRL's `SFTTrainer` unchanged.
This module is imported by vlmtrain; it must stay free of torch (and imports `datasets` lazily so that
`vlmdata validate` starts fast).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import datasets

COLUMNS: tuple[str, ...] = ("id", "task", "source", "images", "messages", "answers", "meta")
ROLES: tuple[str, ...] = ("system", "user", "assistant")
PART_TYPES: tuple[str, ...] = ("image", "text")


def features() -> datasets.Features:
    """The exact `datasets.Features` of a vlmdata split (images as embedded `Image` bytes)."""
    import datasets

    list_type = getattr(datasets, "List", datasets.Sequence)
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    message = {"role": datasets.Value("string"), "content": list_type(part)}
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "task": datasets.Value("string"),
            "source": datasets.Value("string"),
            "images": list_type(datasets.Image()),
            "messages": list_type(message),
            "answers": list_type(datasets.Value("string")),
            "meta": datasets.Value("string"),
        }
    )


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part() -> dict[str, Any]:
    return {"type": "image", "text": None}


def message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": role, "content": parts}


def canonical_messages(messages: list[dict[str, Any]]) -> str:
    """A byte-stable JSON form of messages (image parts carry no text, keys sorted)."""
    norm = [
        {
            "role": m["role"],
            "content": [
                {"type": p["type"], "text": p.get("text") if p["type"] == "text" else None} for p in m["content"]
            ],
        }
        for m in messages
    ]
    return json.dumps(norm, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def row_id(*, image_hashes: list[str], messages: list[dict[str, Any]]) -> str:
    """Content id of a row: sha256 over the images' pixel hashes and the canonical messages.

    Pixel hashes (not file bytes) make the id survive re-encoding, so the same picture with the same
    conversation has the same id on every machine, after an export/import round trip too.
    """
    h = hashlib.sha256()
    for ih in image_hashes:
        h.update(ih.encode())
        h.update(b"\0")
    h.update(b"\1")
    h.update(canonical_messages(messages).encode())
    return h.hexdigest()[:32]


def image_count(messages: list[dict[str, Any]]) -> int:
    """How many `{"type": "image"}` parts the messages hold (must equal len(images))."""
    return sum(1 for m in messages for p in m["content"] if p["type"] == "image")


def assistant_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every assistant turn, in order (what a trainer supervises)."""
    return [
        "".join(p["text"] or "" for p in m["content"] if p["type"] == "text")
        for m in messages
        if m["role"] == "assistant"
    ]
