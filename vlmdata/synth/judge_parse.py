"""A judge model's answer → a score or a verdict, or the reason it cannot be read.

- Rubric: the LAST `Score: N` / `Rating: N` / `[[N]]` / `N/10` in the text (a judge often quotes the
  scale before it decides), or a bare number as the whole answer. A score outside the scale is as
  unreadable as no score: guessing one would put a silent wrong number into the ranking.
- Pairwise: the LAST `[[A]]`, `[[B]]` or `[[C]]` (tie); a bare `A`/`B`/`C`/`tie` as the whole answer too.

Both raise RowError("judge_unparseable", ...) with an excerpt of the judge's text.
"""

from __future__ import annotations

import re

from vlmdata.rows import RowError

EXCERPT_CHARS = 300
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCORE = [
    re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"),
    re.compile(r"(?:score|rating|grade)\s*(?:\([^)\n]*\))?\s*\**\s*[:=：]\s*\**\s*\[?\s*" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s*/\s*10\b"),
]
_BARE_NUMBER = re.compile(r"\s*\**\s*" + _NUMBER + r"\s*\**\s*\.?\s*")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
_BARE_VERDICT = re.compile(r"\s*\**\s*(A|B|C|tie)\s*\**\s*\.?\s*", re.IGNORECASE)


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


def parse_score(text: str, *, low: float, high: float) -> float:
    """The judge's score on [low, high]."""
    found: tuple[int, str] | None = None
    for pattern in _SCORE:
        for m in pattern.finditer(text):
            if found is None or m.start() >= found[0]:
                found = (m.start(), m.group(1))
    if found is None:
        bare = _BARE_NUMBER.fullmatch(text)
        if bare is None:
            raise RowError("judge_unparseable", f"no score (e.g. `Score: 7`) in the judge's answer: '{excerpt(text)}'")
        found = (0, bare.group(1))
    score = float(found[1])
    if not low <= score <= high:
        raise RowError("judge_unparseable", f"score {found[1]} is outside {low:g}-{high:g} in the judge's answer: "
                                            f"'{excerpt(text)}'")
    return score


def parse_verdict(text: str) -> str:
    """'A', 'B' or 'C' (a tie)."""
    hits = _VERDICT.findall(text)
    if hits:
        return hits[-1].upper()
    bare = _BARE_VERDICT.fullmatch(text)
    if bare is not None:
        word = bare.group(1).upper()
        return "C" if word == "TIE" else word
    raise RowError("judge_unparseable", f"no verdict ([[A]], [[B]] or [[C]]) in the judge's answer: '{excerpt(text)}'")
