"""The rows a run cannot train on, found one by one before training, each with its reason.

Why per row: one bad row (a zero-byte or truncated image, a conversation that starts with the
assistant, an answer that is empty) would raise inside the collator and kill the whole run
before its first step. `row_problem` names what is wrong with a row without a processor; whatever
still fails when the processor tokenises a single row becomes `collate_error` with its message
(`vlmtrain.data.diagnostics`). Rejected rows are listed in `rejected_rows.jsonl` and counted, never
dropped silently.
"""

from __future__ import annotations

import io
from typing import Any

EMPTY_MESSAGES = "empty_messages"
BAD_MESSAGE = "bad_message"  # a turn without a known role or a list of content parts
STARTS_WITH_ASSISTANT = "starts_with_assistant"
NO_ASSISTANT_TURN = "no_assistant_turn"
EMPTY_ANSWER = "empty_answer"
IMAGE_COUNT_MISMATCH = "image_count_mismatch"
BAD_IMAGE = "bad_image"  # zero bytes, truncated, or not an image PIL can decode
COLLATE_ERROR = "collate_error"  # the processor or chat template failed on this row alone
ROW_REASONS = (EMPTY_MESSAGES, BAD_MESSAGE, STARTS_WITH_ASSISTANT, NO_ASSISTANT_TURN, EMPTY_ANSWER,
               IMAGE_COUNT_MISMATCH, BAD_IMAGE, COLLATE_ERROR)
ROLES = frozenset({"system", "user", "assistant"})


def _text(turn: dict[str, Any]) -> str:
    return "".join(str(p.get("text") or "") for p in turn["content"] if isinstance(p, dict) and p.get("type") == "text")


def message_problem(messages: Any) -> tuple[str, str] | None:
    """(reason, detail) for a conversation that cannot be trained on, or None."""
    if not messages:
        return EMPTY_MESSAGES, "the row has no messages"
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), list):
            return BAD_MESSAGE, f"turn {i} needs a role (system, user or assistant) and a list of content parts"
    roles = [turn["role"] for turn in messages]
    talk = [r for r in roles if r != "system"]
    if not talk:
        return EMPTY_MESSAGES, "the row has only system turns"
    if talk[0] == "assistant":
        return STARTS_WITH_ASSISTANT, "the first turn after the system prompt is the assistant's (nothing to answer)"
    if "assistant" not in talk:
        return NO_ASSISTANT_TURN, "the row has no assistant turn to learn"
    for i, turn in enumerate(messages):
        if turn["role"] == "assistant" and not _text(turn).strip():
            return EMPTY_ANSWER, f"assistant turn {i} has no text"
    return None


def image_problem(image: Any) -> str | None:
    """Why an image value (PIL, or {'bytes', 'path'} with decoding off) cannot be used, or None.

    The image is decoded whole (`load`), so a file cut short is found here, not in a batch.
    """
    from PIL import Image

    try:
        if isinstance(image, dict):
            data = image.get("bytes")
            if data is not None and len(data) == 0:
                return "zero bytes"
            if data is None and not image.get("path"):
                return "no bytes and no path"
            with Image.open(io.BytesIO(data) if data is not None else image["path"]) as img:
                img.load()
        elif image is None:
            return "missing"
        else:
            image.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"{type(e).__name__}: {e}"
    return None


def row_problem(row: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) for a row the collator cannot train on, or None (checked without a processor)."""
    found = message_problem(row.get("messages"))
    if found is not None:
        return found
    images = list(row.get("images") or [])
    parts = sum(1 for turn in row["messages"] for p in turn["content"] if isinstance(p, dict) and p.get("type") == "image")
    if parts != len(images):
        return IMAGE_COUNT_MISMATCH, f"{parts} image part(s) in the messages but {len(images)} image(s)"
    for i, image in enumerate(images):
        why = image_problem(image)
        if why is not None:
            return BAD_IMAGE, f"image {i}: {why}"
    return None
