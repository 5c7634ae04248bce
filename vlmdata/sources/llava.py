"""`llava`: LLaVA instruction json (`[{id, image, conversations: [{from, value}]}]`).

`<image>` markers in a turn become image parts at that place; a row with an image but no marker gets
the image in front of its first human turn (LLaVA's convention). `from` human/user → user,
gpt/assistant → assistant, system → system. The file is streamed, never loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from vlmdata.config.path_types import ExistingFile
from vlmdata.rows import Record, Reject, RowError
from vlmdata.schema import image_part, message, text_part
from vlmdata.sources.base import SourceSpec, _image_refs
from vlmdata.sources.encoding import check_text
from vlmdata.sources.jsonstream import MalformedJson, iter_json_array_or_error
from vlmdata.sources.llava_system import unfold_system

ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_TOKEN = "<image>"


class LlavaSpec(SourceSpec):
    kind: Literal["llava"] = "llava"
    path: ExistingFile
    task: str = "conversation"


def conversation_to_messages(conversations: list[dict[str, Any]], *, n_images: int) -> list[dict[str, Any]]:
    """LLaVA turns -> contract messages; raises RowError if roles or image markers do not fit."""
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise RowError("bad_conversation", f"conversations[{i}] is a {type(turn).__name__}, not a "
                                               "{from, value} object")
        if not isinstance(turn.get("value"), str):
            raise RowError("bad_conversation", f"conversations[{i}].value is "
                                               f"{type(turn.get('value')).__name__}, not text")
    markers = sum(str(t.get("value", "")).count(IMAGE_TOKEN) for t in conversations)
    if markers not in (0, n_images):
        raise RowError("image_count_mismatch", f"{markers} <image> markers but {n_images} image(s)")
    for i, turn in enumerate(conversations):
        role = ROLE_OF.get(str(turn.get("from", "")).lower())
        if role is None:
            raise RowError("bad_value", f"conversations[{i}].from = {turn.get('from')!r} is not human/gpt/system")
        value = str(turn.get("value", ""))
        parts: list[dict[str, Any]] = []
        pieces = value.split(IMAGE_TOKEN)
        for j, piece in enumerate(pieces):
            if j > 0:
                parts.append(image_part())
            piece = piece.strip("\n") if len(pieces) > 1 else piece
            if piece.strip():
                parts.append(text_part(piece.strip()))
        messages.append(message(role, parts))
    if markers == 0 and n_images:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise RowError("bad_value", "row has images but no human turn to attach them to")
        first_user["content"][:0] = [image_part() for _ in range(n_images)]
    return messages


def read_llava(spec: LlavaSpec) -> Iterator[Record | Reject]:
    root = spec.default_image_root()
    for index, raw in iter_json_array_or_error(spec.path):
        locator = f"{spec.path.name}[{index}]"
        if isinstance(raw, MalformedJson):
            yield Reject(spec.name, locator, "malformed_line", str(raw), "load")
            return
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("conversations"), list):
                raise RowError("malformed_line", f"item {index} has no 'conversations' list")
            check_text(raw)
            images = _image_refs(raw.get(spec.fields.image), root=root)
            messages = unfold_system(conversation_to_messages(raw["conversations"], n_images=len(images)),
                                     raw.get("system"))  # a system turn vlmdata's export folded (llava_system.py)
        except RowError as e:
            yield Reject(spec.name, locator, e.reason, e.detail, "load")
            continue
        except Exception as e:  # a shape no rule above expected: this item's reject, reading goes on
            yield Reject(spec.name, locator, "internal_error", f"load: {type(e).__name__}: {str(e)[:300]}", "load")
            continue
        context = {"llava_id": raw["id"]} if "id" in raw else {}
        yield Record(source=spec.name, locator=locator, task=spec.task, images=images, messages=messages,
                     context=context)
