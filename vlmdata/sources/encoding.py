"""One policy for text that is not valid UTF-8, in every text source: the row is rejected `bad_encoding`.

Sources open their files with `errors="surrogateescape"`, so a bad byte never stops the reading of a
file (the rows before and after it are kept) and never turns silently into U+FFFD (which would change
a label without a trace). A row that holds such a byte (or a lone surrogate from a JSON `\\udc80`
escape, which Arrow cannot store either) is found by `find_bad_text` and becomes a reject whose detail
says which field and shows the bytes. A UTF-8 byte-order mark (Excel's "CSV UTF-8") is skipped
(`utf-8-sig`), so it never glues itself to the first column's name or breaks the first JSON line.
"""

from __future__ import annotations

import re
from typing import Any

from vlmdata.rows import RowError

_SURROGATE = re.compile("[\ud800-\udfff]")


def find_bad_text(value: Any, where: str = "") -> str | None:
    """The first field (a dotted path) whose text is not valid Unicode, shown with its bad bytes, or None."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        if m is None:
            return None
        around = value[max(0, m.start() - 20): m.end() + 20]
        shown = around.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return f"{where or 'text'}: invalid UTF-8 near {shown!r}"
    if isinstance(value, dict):
        for k, v in value.items():
            found = find_bad_text(k, where) if isinstance(k, str) else None
            found = found or find_bad_text(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_bad_text(v, f"{where}[{i}]")
            if found:
                return found
    return None


def check_text(value: Any, where: str = "") -> None:
    """Raise RowError('bad_encoding') when `value` holds text that is not valid UTF-8."""
    found = find_bad_text(value, where)
    if found:
        raise RowError("bad_encoding", f"{found}; re-save the file as UTF-8")
