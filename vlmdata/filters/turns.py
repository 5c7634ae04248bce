"""The text of a row's chat turns by role, as filters see it (image parts carry no text)."""

from __future__ import annotations

from typing import Any, Literal

Role = Literal["user", "assistant", "any"]


def turn_texts(messages: list[dict[str, Any]] | None, role: Role) -> list[str]:
    """The text of each turn of `role` ("any": user and assistant turns, not the fixed system prompt)."""
    roles = ("user", "assistant") if role == "any" else (role,)
    return [
        "".join(p.get("text") or "" for p in m["content"] if p.get("type") == "text")
        for m in messages or []
        if m["role"] in roles
    ]


def role_text(messages: list[dict[str, Any]] | None, role: Role) -> str:
    """All turns of `role` joined by newlines."""
    return "\n".join(turn_texts(messages, role))
