"""Stream the items of a top-level JSON array without loading the whole file.

LLaVA's instruction files are single JSON arrays of hundreds of MB; `json.load` would hold them in
memory at once. This reads the file in chunks and decodes one item at a time with `raw_decode`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WS = " \t\r\n"


class MalformedJson(ValueError):
    """The array is broken at item `index`; items before it were yielded (readers reject from here on)."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


def iter_json_array(path: Path, *, chunk_size: int = 1 << 20) -> Iterator[tuple[int, Any]]:
    """Yield (index, item) for each item of the JSON array in `path`; raise MalformedJson where it breaks."""
    decoder = json.JSONDecoder()
    # invalid UTF-8 survives as surrogates: the item holding it is rejected `bad_encoding` (encoding.py)
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as f:
        buf = f.read(chunk_size)
        pos = 0
        eof = False

        def fill() -> None:
            nonlocal buf, pos, eof
            more = f.read(chunk_size)
            if not more:
                eof = True
            buf = buf[pos:] + more
            pos = 0

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos < len(buf) or eof:
                    return
                fill()

        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise MalformedJson(f"{path}: expected a JSON array at the top level", index=0)
        pos += 1
        index = 0
        while True:
            skip_ws()
            if pos < len(buf) and buf[pos] == "]":
                return
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    break
                except RecursionError:
                    raise MalformedJson(f"{path}: item {index} is nested too deeply", index=index) from None
                except json.JSONDecodeError as e:
                    if eof:
                        raise MalformedJson(f"{path}: malformed JSON in item {index}: {e.msg}", index=index) from None
                    fill()
            yield index, item
            index += 1
            pos = end
            skip_ws()
            if pos < len(buf) and buf[pos] == ",":
                pos += 1
            elif pos < len(buf) and buf[pos] == "]":
                return
            elif eof:
                raise MalformedJson(f"{path}: unterminated JSON array after item {index - 1}", index=index)
            else:
                raise MalformedJson(f"{path}: expected ',' or ']' after item {index - 1}", index=index)


def iter_json_array_or_error(path: Path) -> Iterator[tuple[int, Any]]:
    """Like `iter_json_array`, but where the file breaks it yields `(index, MalformedJson)` last instead of
    raising, so a reader rejects the broken rest (`malformed_line`) and keeps the items before it."""
    try:
        yield from iter_json_array(path)
    except MalformedJson as e:
        yield e.index, e
