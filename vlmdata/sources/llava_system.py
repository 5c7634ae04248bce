"""LLaVA json has no system role; how vlmdata folds a system turn into it and reads it back.

LLaVA's `train.py` maps `from` through {human, gpt} only, so a `system` turn is a KeyError there. The
export puts the system text as the first text of the first human turn (after its leading image parts,
so `<image>` stays first, as LLaVA's preprocessing wants) and repeats it in a top-level `system` key,
which LLaVA's trainers ignore. The `llava` source, seeing that key, takes the text back out: the
round trip gives the same messages, hence the same row id. One module, so both sides agree.
"""

from __future__ import annotations

from typing import Any

from vlmdata.schema import message, text_part


def _text(msg: dict[str, Any]) -> str:
    return "\n".join(p["text"] for p in msg["content"] if p["type"] == "text" and p.get("text"))


def fold_system(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """(messages without system turns, the system text or None); ValueError if it cannot be folded."""
    if any(m["role"] == "system" for m in messages[1:]):
        raise ValueError("a system turn after the first turn has no place in LLaVA json")
    if not messages or messages[0]["role"] != "system":
        return messages, None
    system, rest = _text(messages[0]), list(messages[1:])
    k = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
    if k is None:
        raise ValueError("a system turn but no human turn to fold it into")
    content = rest[k]["content"]
    lead = next((i for i, p in enumerate(content) if p["type"] != "image"), len(content))
    rest[k] = message("user", [*content[:lead], text_part(system), *content[lead:]])
    return rest, system


def unfold_system(messages: list[dict[str, Any]], system: Any) -> list[dict[str, Any]]:
    """Undo `fold_system` given a row's top-level `system`; a `system` not found folded is prepended."""
    if not isinstance(system, str) or not system.strip() or (messages and messages[0]["role"] == "system"):
        return messages
    out = list(messages)
    k = next((i for i, m in enumerate(out) if m["role"] == "user"), None)
    if k is not None:
        content = out[k]["content"]
        lead = next((i for i, p in enumerate(content) if p["type"] != "image"), None)
        if lead is not None and content[lead]["type"] == "text":
            text = content[lead]["text"] or ""
            if text == system:
                out[k] = message("user", content[:lead] + content[lead + 1:])
            elif text.startswith(system + "\n"):
                out[k] = message("user", [*content[:lead], text_part(text[len(system) + 1:].lstrip("\n")),
                                          *content[lead + 1:]])
    return [message("system", [text_part(system)]), *out]
