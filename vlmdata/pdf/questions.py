"""Grounded questions about PDF pages, without an LLM: every answer is text of the page's text layer.

- `line`: a line of the page, boxed in red on the page (or cropped out): "what does it say";
- `title`: the document's title (page 1's first line, when it is set as a heading);
- `headings`: the section headings of the page, in reading order;
- `table`: cells of a table found from the layout (`vlmdata.pdf.tables`): "what is the <column> value
  where <label> is ...", and a cell boxed in red: "what does it say";
- `text`: the whole page transcribed, line by line (long: for models with a long context);
- `page_of`: over all pages of a short document, "on which page is the heading X" (a heading found on
  exactly one page).

`grounded` is the check every synthesised answer passes before it becomes a row: the text it quotes
must occur on the page (whitespace- and case-insensitive), so a layout mistake never teaches a model
to read words that are not there.
"""

from __future__ import annotations

import re
from typing import Literal

DocQuestion = Literal["line", "title", "headings", "page_of", "text", "table"]
DOC_QUESTIONS: tuple[str, ...] = ("line", "title", "headings", "page_of", "text", "table")

QUESTIONS = {
    "line_box": "What does the text in the red box say?",
    "line_crop": "What does this line of text say?",
    "title": "What is the title of this document?",
    "headings": "What are the section headings on this page?",
    "table_cell": "What is written in the table cell in the red box?",
    "text": "Transcribe the text on this page.",
    "page_of": "On which page does the section \"{heading}\" start?",
}


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def grounded(*, quotes: list[str], page_text: str) -> str | None:
    """None when every quote is on the page, else the first quote that is not."""
    hay = norm(page_text)
    for q in quotes:
        if norm(q) not in hay:
            return q
    return None


def pick_lines(texts: list[str], *, n: int, min_words: int = 4) -> list[int]:
    """Indices of up to `n` lines of at least `min_words` words, spread evenly over the page (deterministic)."""
    candidates = [i for i, t in enumerate(texts) if len(t.split()) >= min_words]
    if len(candidates) <= n:
        return candidates
    step = len(candidates) / n
    return [candidates[int(step * k + step / 2)] for k in range(n)]


def headings_answer(headings: list[str]) -> str:
    if len(headings) == 1:
        return f"The page has one section heading: \"{headings[0]}\"."
    return "The section headings are: " + "; ".join(f"\"{h}\"" for h in headings) + "."
