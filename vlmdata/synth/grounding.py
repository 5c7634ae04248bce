"""Grounding check: a count the answer states must agree with the source's boxes.

LLM-written conversations confidently miscount. When a row's context has `boxes`
([{category, bbox}], e.g. from the `coco` source), every "<number> <category>" in an answer, and a
bare number answering "How many <category> ...?", is compared with the number of boxes of that
category; a mismatch rejects the row (`grounding_mismatch`). Only categories present in the boxes are
checked, so talk of things the labels do not cover is left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

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
