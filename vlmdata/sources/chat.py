"""Chat turns as other tools store them → the row contract's messages (and the row's images, in order).

One parser for every chat-shaped source (`sharegpt`, `hf`, `webdataset`), so they agree on what a
marker is and what a bad row is:

- `content` may be a string, where each `<image>` marker stands for the next image of the row's
  `images` list (LLaVA, LLaMA-Factory, ms-swift), or a list of parts: `{type: text, text}`,
  `{type: image}` (the next listed image; HF/TRL), `{type: image, image: PATH|bytes}` or
  `{type: image_url, image_url: {url}}` (the image inline; OpenAI). `content: null` is a reject.
- In a list of parts, text is literal: a `<image>` inside a text part is text, not a marker.
- The number of bare markers/parts must equal the number of listed images, else the row is rejected
  (`image_count_mismatch`) — never padded or truncated.
- Tool turns (`observation`, `function_call`, OpenAI `tool`) are rejected: the contract has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from vlmdata.rows import ImageRef, RowError
from vlmdata.schema import image_part, message, text_part
from vlmdata.sources.base import _image_refs

IMAGE_TOKEN = "<image>"
_TOOL_ROLES = frozenset({"observation", "function_call", "function", "tool", "tool_call", "ipython"})
_AUTO_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "model": "assistant",
               "system": "system", "developer": "system"}  # model: Gemini; developer: OpenAI's newer system role


class ChatTags(BaseModel):
    """Where a turn keeps its role and content, and the role names (LLaMA-Factory's `tags`).

    Left unset (the default), each turn is read either way: `{role, content}` with user/assistant
    or `{from, value}` with human/gpt. Set any tag and the names become exact, as in LLaMA-Factory.
    """

    model_config = ConfigDict(extra="forbid")
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    system_tag: str = "system"
    observation_tag: str = "observation"
    function_tag: str = "function_call"

    def role_of(self, value: Any) -> str | None:
        return {self.user_tag: "user", self.assistant_tag: "assistant", self.system_tag: "system"}.get(value)


def _turn_role_content(turn: dict[str, Any], *, tags: ChatTags | None, where: str) -> tuple[str, Any]:
    if tags is None:
        role_key = "role" if "role" in turn else "from"
        content_key = "content" if "content" in turn or "value" not in turn else "value"
        raw_role = turn.get(role_key)
        role = _AUTO_ROLES.get(str(raw_role).lower()) if raw_role is not None else None
        tool = str(raw_role).lower() in _TOOL_ROLES
    else:
        role_key, content_key = tags.role_tag, tags.content_tag
        raw_role = turn.get(role_key)
        role = tags.role_of(raw_role)
        tool = raw_role in (tags.observation_tag, tags.function_tag) or str(raw_role).lower() in _TOOL_ROLES
    if role is None:
        if tool:
            raise RowError("unsupported_role", f"{where}.{role_key} = {raw_role!r}: tool turns are not part of "
                                               "the row contract (system/user/assistant)")
        raise RowError("bad_value", f"{where}.{role_key} = {raw_role!r} is not a user, assistant or system role")
    if content_key not in turn:
        raise RowError("missing_field", f"{where} has no '{content_key}'")
    return role, turn[content_key]


def _string_parts(text: str) -> tuple[list[dict[str, Any]], list[ImageRef | None]]:
    """'<image>What is this?' -> [image, text]; every marker takes the next listed image (None slot)."""
    parts: list[dict[str, Any]] = []
    slots: list[ImageRef | None] = []
    pieces = text.split(IMAGE_TOKEN)
    for j, piece in enumerate(pieces):
        if j > 0:
            parts.append(image_part())
            slots.append(None)
        piece = piece.strip("\n") if len(pieces) > 1 else piece
        if piece.strip():
            parts.append(text_part(piece.strip()))
    return parts, slots


def _inline_image(part: dict[str, Any], *, root: Path) -> ImageRef | None:
    """The image a part carries itself (OpenAI image_url, {type: image, image: ...}); None = a bare slot."""
    value = part.get("image_url") if part["type"] in ("image_url", "input_image") else part.get("image")
    if isinstance(value, dict) and "url" in value:
        value = value["url"]
    if value is None or value == "":
        if part["type"] in ("image_url", "input_image"):
            raise RowError("missing_field", "image_url part has no url")
        return None
    refs = _image_refs(value, root=root)
    if len(refs) != 1:
        raise RowError("bad_value", f"an image part holds {len(refs)} images")
    return refs[0]


def _list_parts(content: list[Any], *, root: Path, where: str) -> tuple[list[dict[str, Any]], list[ImageRef | None]]:
    parts: list[dict[str, Any]] = []
    slots: list[ImageRef | None] = []
    for k, part in enumerate(content):
        if isinstance(part, str):  # a bare string inside a list: text
            part = {"type": "text", "text": part}
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise RowError("bad_value", f"{where}.content[{k}] is not a {{type: ...}} part")
        kind = part["type"]
        if kind in ("text", "input_text"):
            text = part.get("text")
            if text is None:
                raise RowError("missing_content", f"{where}.content[{k}] is a text part without text")
            if not isinstance(text, str):
                raise RowError("bad_value", f"{where}.content[{k}].text is {type(text).__name__}, not a string")
            if text.strip():
                parts.append(text_part(text))
        elif kind in ("image", "image_url", "input_image"):
            parts.append(image_part())
            slots.append(_inline_image(part, root=root))
        else:
            raise RowError("unsupported_part", f"{where}.content[{k}].type = {kind!r} (only text and images are read)")
    return parts, slots


def turns_to_messages(turns: Any, *, images: list[ImageRef], root: Path, tags: ChatTags | None = None,
                      system: Any = None, where: str = "messages",
                      prepend_missing: bool = False) -> tuple[list[dict[str, Any]], list[ImageRef]]:
    """Turns in any supported form -> (contract messages, the row's images in part order).

    `images` is the row's listed images (top-level `images`), taken in order by the bare markers;
    `system`, when a non-empty string and the turns have no system turn, becomes the first message.
    `prepend_missing` (ms-swift's and LLaVA's rule): fewer markers than images puts the missing ones in
    front of the first user turn; otherwise (LLaMA-Factory's rule) any difference is a reject.
    """
    if not isinstance(turns, list):
        raise RowError("bad_value", f"{where} is {type(turns).__name__}, not a list of turns")
    if not turns:
        raise RowError("missing_field", f"{where} is empty")
    messages: list[dict[str, Any]] = []
    slots: list[ImageRef | None] = []
    for i, turn in enumerate(turns):
        at = f"{where}[{i}]"
        if not isinstance(turn, dict):
            raise RowError("bad_value", f"{at} is {type(turn).__name__}, not an object")
        role, content = _turn_role_content(turn, tags=tags, where=at)
        if role == "system" and i > 0:
            raise RowError("bad_value", f"{at} is a system turn after the first turn")
        if content is None:
            raise RowError("missing_content", f"{at} has content null")
        if isinstance(content, str):
            parts, found = _string_parts(content)
        elif isinstance(content, list):
            parts, found = _list_parts(content, root=root, where=at)
        else:
            raise RowError("bad_value", f"{at} content is {type(content).__name__}, not a string or a list of parts")
        messages.append(message(role, parts))
        slots.extend(found)
    bare = sum(1 for s in slots if s is None)
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if prepend_missing and bare < len(images) and first_user is not None:
        missing = len(images) - bare
        first_user["content"][:0] = [image_part() for _ in range(missing)]
        k = sum(1 for m in messages[: messages.index(first_user)] for p in m["content"] if p["type"] == "image")
        slots[k:k] = [None] * missing
        bare = len(images)
    if bare != len(images):
        raise RowError("image_count_mismatch", f"{bare} <image> marker(s)/image part(s) but {len(images)} "
                                               "listed image(s); each listed image needs exactly one marker")
    listed = iter(images)
    ordered = [s if s is not None else next(listed) for s in slots]
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        messages.insert(0, message("system", [text_part(system)]))
    return messages, ordered
