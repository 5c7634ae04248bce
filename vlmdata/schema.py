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

Preference rows (a recipe with a `preference:` section, see vlmdata/steps/preference.py) have
`task: preference` and two more columns, in the same message format:

| column     | type                     | meaning                                                           |
|------------|--------------------------|-------------------------------------------------------------------|
| `messages` | list of message          | the prompt: the conversation up to and including the last user turn |
| `chosen`   | list of one message      | the preferred assistant turn                                      |
| `rejected` | list of one message      | the dispreferred assistant turn                                   |

This is TRL's conversational preference format with `images` (TRL names the prompt column `prompt`:
`trl_preference(dataset)` renames it); the id hashes the images, prompt, chosen and rejected.
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
PREFERENCE_TASK = "preference"
PREFERENCE_COLUMNS: tuple[str, ...] = (*COLUMNS, "chosen", "rejected")
ROLES: tuple[str, ...] = ("system", "user", "assistant")
PART_TYPES: tuple[str, ...] = ("image", "text")


def features(*, preference: bool = False) -> datasets.Features:
    """The exact `datasets.Features` of a vlmdata split (images as embedded `Image` bytes).

    `preference` adds the `chosen` and `rejected` columns of a preference dataset."""
    import datasets

    list_type = getattr(datasets, "List", datasets.Sequence)
    part = {"type": datasets.Value("string"), "text": datasets.Value("string")}
    message = {"role": datasets.Value("string"), "content": list_type(part)}
    columns = {
        "id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "source": datasets.Value("string"),
        "images": list_type(datasets.Image()),
        "messages": list_type(message),
        "answers": list_type(datasets.Value("string")),
        "meta": datasets.Value("string"),
    }
    if preference:
        columns["chosen"] = list_type(message)
        columns["rejected"] = list_type(message)
    return datasets.Features(columns)


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


def preference_row_id(*, image_hashes: list[str], prompt: list[dict[str, Any]], chosen: list[dict[str, Any]],
                      rejected: list[dict[str, Any]]) -> str:
    """Content id of a preference row: the images, the prompt, and which answer is chosen over which.

    Swapping chosen and rejected gives another id (it is the opposite preference); a tag keeps the id
    apart from an SFT row whose turns happen to be prompt + chosen."""
    h = hashlib.sha256(b"preference\0")
    for ih in image_hashes:
        h.update(ih.encode())
        h.update(b"\0")
    for part in (prompt, chosen, rejected):
        h.update(b"\1")
        h.update(canonical_messages(part).encode())
    return h.hexdigest()[:32]


def preference_problems(row: dict[str, Any]) -> list[str]:
    """What is wrong with a preference row (empty when it keeps the contract).

    The prompt ends with the user turn; chosen and rejected are one assistant turn each, with text,
    text-only (images belong to the prompt), and different from each other."""
    problems: list[str] = []
    prompt = row.get("messages") or []
    if not prompt or prompt[-1].get("role") != "user":
        problems.append("messages (the prompt) must end with the user turn")
    for name in ("chosen", "rejected"):
        turns = row.get(name) or []
        if len(turns) != 1 or turns[0].get("role") != "assistant":
            problems.append(f"{name} must be exactly one assistant turn")
            continue
        parts = turns[0].get("content") or []
        if any(p.get("type") != "text" for p in parts):
            problems.append(f"{name} must hold text parts only (images belong to the prompt)")
        if not "".join(p.get("text") or "" for p in parts).strip():
            problems.append(f"{name} has no text")
    if not problems and assistant_texts(row["chosen"]) == assistant_texts(row["rejected"]):
        problems.append("chosen and rejected are the same answer")
    if image_count(prompt) != len(row.get("images") or []):
        problems.append(f"the prompt has {image_count(prompt)} image part(s) but the row has "
                        f"{len(row.get('images') or [])} image(s)")
    return problems


def trl_preference(dataset: datasets.Dataset) -> datasets.Dataset:
    """A preference split as TRL's `DPOTrainer` reads it: `prompt`, `chosen`, `rejected`, `images`."""
    return dataset.rename_column("messages", "prompt").select_columns(["prompt", "chosen", "rejected", "images"])
