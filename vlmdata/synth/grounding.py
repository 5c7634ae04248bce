"""Grounding check: a count the answer states must agree with the source's boxes.

LLM-written conversations confidently miscount. When a row's context has `boxes`
([{category, bbox}], e.g. from the `coco` source), every "<number> <category>" in an answer, and a
bare number answering "How many <category> ...?", is compared with the number of boxes of that
category; a mismatch rejects the row (`grounding_mismatch`). Only categories present in the boxes are
checked, so talk of things the labels do not cover is left alone.

On document pages (a context with `ocr_text`, e.g. from the `pdf` source), every quoted span of an
answer ("...", “...”) must be text of the page (`grounding_quote` otherwise): a model that quotes a
page must quote what is on it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from vlmdata.pdf.questions import grounded
from vlmdata.rows import RowError

NUMBERS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
             "sheep": "sheep", "knife": "knives", "skis": "skis"}
_NUM = r"(\d+|" + "|".join(NUMBERS) + r")"


def box_counts(context: dict[str, Any]) -> Counter[str]:
    boxes = context.get("boxes") or []
    return Counter(str(b["category"]).lower() for b in boxes if isinstance(b, dict) and "category" in b)


def _forms(category: str) -> str:
    plural = IRREGULAR.get(category, category + ("es" if category.endswith(("s", "sh", "ch", "x")) else "s"))
    return "|".join(re.escape(f) for f in sorted({category, plural}, key=len, reverse=True))


def _value(token: str) -> int:
    return int(token) if token.isdigit() else NUMBERS[token.lower()]


def check_counts(pairs: list[tuple[str, str]], context: dict[str, Any]) -> None:
    counts = box_counts(context)
    if not counts:
        return
    for question, answer in pairs:
        for category, truth in counts.items():
            forms = _forms(category)
            stated = [_value(m.group(1)) for m in re.finditer(rf"\b{_NUM}\s+(?:{forms})\b", answer, re.IGNORECASE)]
            if re.search(rf"\bhow many\s+(?:{forms})\b", question, re.IGNORECASE):
                lead = re.match(rf"\W*(?:there (?:are|is)\s+)?{_NUM}\b", answer, re.IGNORECASE)
                if lead:
                    stated.append(_value(lead.group(1)))
            wrong = [n for n in stated if n != truth]
            if wrong:
                raise RowError("grounding_mismatch",
                               f"the answer says {wrong[0]} {category} but the labels have {truth}")


_QUOTED = re.compile(r"\"([^\"]{3,})\"|\u201c([^\u201d]{3,})\u201d")


def check_quotes(pairs: list[tuple[str, str]], context: dict[str, Any]) -> None:
    """Reject an answer quoting text that is not on its page (rows whose context has `ocr_text`)."""
    page = context.get("ocr_text")
    if not isinstance(page, str):
        return

    for _, answer in pairs:
        quotes = [a or b for a, b in _QUOTED.findall(answer)]
        missing = grounded(quotes=quotes, page_text=page)
        if missing is not None:
            raise RowError("grounding_quote", f"the answer quotes {missing[:120]!r}, which is not on the page")
