"""The text a row is compared on, normalised so trivial edits do not hide a duplicate.

Normalising (NFKC, lowercase, punctuation stripped, whitespace collapsed) makes "What is this?" and
"what is   this" one text. Which turns count is the recipe's choice (`dedup.text.fields`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """NFKC, lowercase, punctuation → space, runs of whitespace → one space, trimmed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def role_text(messages: list[dict[str, Any]] | None, roles: list[str]) -> str:
    """The text parts of the turns whose role is in `roles`, in order, one turn per line."""
    turns = []
    for m in messages or []:
        if m["role"] in roles:
            turns.append(" ".join(p.get("text") or "" for p in m["content"] if p["type"] == "text"))
    return "\n".join(turns)


def question_text(row: dict[str, Any]) -> str:
    """A row's question: `fields.question` when the source had one, else its user turns.

    The source's question (not the user turn) matters because instruct appends a fixed suffix to it;
    rows with a caption or label field ask a stock prompt, so they have no question of their own.
    """
    fields = row.get("fields") or {}
    if fields.get("question") is not None:
        return str(fields["question"])
    if "caption" in fields or "label" in fields:
        return ""
    return role_text(row.get("messages"), ["user"])
