"""The text layer of a PDF page as lines and words with [0, 1] boxes (top-left origin), via pypdfium2.

PDFium orders a page's characters in reading order and marks line ends with generated CR/LF
characters (or U+FFFE where a hyphen splits a word across lines); a line is the run of characters
between two of them, its box the union of its glyph
boxes. A line is a heading when every visible character is set in a bold face and it is short and
does not end like a sentence (the layout signal that survives in born-digital PDFs: rect heights do
not, they follow glyph shapes). pypdfium2 is imported by the caller (the `pdf` source) only.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from typing import Any

_BOLD = re.compile(r"bold|black|heavy|semibold|demi|[-_]bd|bx\d|,b\b", re.IGNORECASE)


@dataclass
class Line:
    text: str
    box: list[float]  # x0, y0, x1, y1 in [0, 1] of the page, y down
    bold: bool
    words: list[dict[str, Any]] = field(default_factory=list)

    @property
    def heading(self) -> bool:
        n_words = len(self.text.split())
        return self.bold and 1 <= n_words <= 14 and not self.text.rstrip().endswith((".", ",", ";", ":"))

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "box": self.box, "heading": self.heading}


def _norm_box(boxes: list[tuple[float, float, float, float]], *, width: float, height: float,
              rotation: int = 0) -> list[float]:
    """The union of glyph boxes (PDF points, y up, the unrotated page) as [0, 1] of the page as shown.

    A page's /Rotate turns it clockwise for display (and rendering); the text layer stays in the
    unrotated space, so the box is turned with it."""
    left = min(b[0] for b in boxes)
    bottom = min(b[1] for b in boxes)
    right = max(b[2] for b in boxes)
    top = max(b[3] for b in boxes)
    u0, v0, u1, v1 = left / width, 1 - top / height, right / width, 1 - bottom / height
    if rotation == 90:
        u0, v0, u1, v1 = 1 - v1, u0, 1 - v0, u1
    elif rotation == 180:
        u0, v0, u1, v1 = 1 - u1, 1 - v1, 1 - u0, 1 - v0
    elif rotation == 270:
        u0, v0, u1, v1 = v0, 1 - u1, v1, 1 - u0
    return [round(min(1.0, max(0.0, v)), 4) for v in (u0, v0, u1, v1)]


def _font_name(textpage: Any, index: int, buf: Any) -> str:
    import pypdfium2.raw as raw

    flags = ctypes.c_int()
    n = raw.FPDFText_GetFontInfo(textpage.raw, index, buf, len(buf), ctypes.byref(flags))
    return buf.value.decode("utf-8", "replace") if n else ""


def page_lines(page: Any) -> list[Line]:
    """Every non-empty line of the page's text layer, in PDFium's reading order."""
    rotation = page.get_rotation() % 360
    width, height = page.get_size()  # as shown: swapped for a page turned by 90 or 270 degrees
    if rotation in (90, 270):
        width, height = height, width
    tp = page.get_textpage()
    try:
        n = tp.count_chars()
        full = tp.get_text_range() if n else ""
        chars = list(full) if len(full) == n else [tp.get_text_range(i, 1) for i in range(n)]
        buf = ctypes.create_string_buffer(256)
        lines: list[Line] = []
        cur: list[tuple[str, tuple[float, float, float, float] | None, bool]] = []

        def flush() -> None:
            visible = [(c, b, bold) for c, b, bold in cur if b is not None and c.strip()]
            text = re.sub(r"\s+", " ", "".join(c for c, _, _ in cur)).strip()
            if visible and text:
                words, word = [], []
                for c, b, _ in cur + [(" ", None, False)]:
                    if c.strip() and b is not None:
                        word.append((c, b))
                    elif word:
                        words.append({"text": "".join(ch for ch, _ in word),
                                      "box": _norm_box([bb for _, bb in word], width=width, height=height,
                                                       rotation=rotation)})
                        word = []
                lines.append(Line(text=text, box=_norm_box([b for _, b, _ in visible], width=width, height=height,
                                                           rotation=rotation),
                                  bold=all(bold for _, _, bold in visible), words=words))
            cur.clear()

        for i, ch in enumerate(chars):
            if ch in "\r\n":
                flush()
                continue
            if ch == "\ufffe":  # PDFium's mark for a hyphen that breaks a word across lines: the line ends here
                cur.append(("-", tp.get_charbox(i), bool(cur) and cur[-1][2]))
                flush()
                continue
            box = tp.get_charbox(i) if ch.strip() else None
            bold = bool(_BOLD.search(_font_name(tp, i, buf))) if box is not None else False
            cur.append((ch, box, bold))
        flush()
        return lines
    finally:
        tp.close()
