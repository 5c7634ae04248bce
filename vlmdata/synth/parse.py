"""The model's answer → question/answer pairs, or the reason it cannot be used.

- `qa_blocks`: LLaVA's `Question:` ... `===` ... `Answer:` blocks, tolerant of what models actually
  write: bold or heading markers, numbering ("1. Question:", "Question 2:"), "Q:"/"A:", missing `===`.
- `json`: {"pairs": [{"question", "answer"}]} (what QA_SCHEMA asks for), a bare list of such objects,
  or one object; code fences are stripped.
- `text`: the whole answer is one reply (the question comes from the job's `prompts`).

`check` turns refusals, empty, truncated (`finish_reason == "length"`) and filtered outputs into
reasons; every one becomes a reject that keeps the raw text.
"""

from __future__ import annotations

import json
import re

from vlmdata.rows import RowError
from vlmdata.synth.cache import Response

QA_SCHEMA = {
    "type": "object",
    "properties": {"pairs": {"type": "array", "items": {
        "type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        "required": ["question", "answer"], "additionalProperties": False}}},
    "required": ["pairs"], "additionalProperties": False,
}
# A marker: optional decoration (`**`, `###`, `>`, list numbering), the word, an optional block number,
# then the separator the templates ask for (`:`; full-width `：` too). `.`, `)` and `-` are never separators,
# so "A. Pack the roof box.", "A-frame ..." and "Q-tips ..." are answer text, not markers.
_MARK = r"^[ \t>#*_]*(?:\d+\s*[.)]\s*)?[*_]*\s*(?:{words})(?:\s*\d+)?\s*[*_]*\s*[:：]\s*[*_]*[ \t]*"
_Q = re.compile(_MARK.format(words="question|q|user|human"), re.IGNORECASE)
_A = re.compile(_MARK.format(words="answer|a|assistant|gpt|response"), re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*(?:={3,}|-{3,}|\*{3,})\s*$")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry, (?:but )?i|i apologi[sz]e|i can(?:no|')t (?:help|assist|provide|comply|"
    r"answer|describe|do that)|i cannot (?:help|assist|provide|comply|answer|describe)|i'?m (?:not able|unable) to|"
    r"i am (?:not able|unable) to|as an ai\b|i won'?t be able to)", re.IGNORECASE)


def check(response: Response) -> None:
    """Raise RowError for an answer that must not become training data."""
    if response.refusal:
        raise RowError("refusal", f"the model refused: {response.refusal[:200]}")
    if response.finish_reason == "length":
        raise RowError("truncated", "the answer hit max_tokens (finish_reason: length)")
    if response.finish_reason == "content_filter":
        raise RowError("content_filter", "the answer was cut by the provider's content filter")
    if not response.text.strip():
        raise RowError("empty_output", "the model returned no text")
    if REFUSAL.match(response.text):
        raise RowError("refusal", f"the model refused: {response.text.strip()[:200]}")


def _marker(line: str) -> tuple[str, int, bool] | None:
    """("q" | "a", where the text after the marker starts, whether the marker is the whole line)."""
    for role, pattern in (("q", _Q), ("a", _A)):
        m = pattern.match(line)
        if m:
            return role, m.end(), not line[m.end():].strip()
    return None


def _body(lines: list[str]) -> str:
    """The block's text as the model wrote it: only blank and `===` lines at its two ends go (they
    frame the block); paragraph breaks, indentation and separators inside it stay."""
    while lines and (not lines[-1].strip() or _SEPARATOR.match(lines[-1])):
        lines = lines[:-1]
    while lines and (not lines[0].strip() or _SEPARATOR.match(lines[0])):
        lines = lines[1:]
    return "\n".join(lines).strip()


def parse_qa_blocks(text: str) -> list[tuple[str, str]]:
    """LLaVA-style blocks → pairs, keeping the model's text.

    When the answer uses the templates' format (each `Question:` / `Answer:` marker alone on its line),
    only such whole-line markers start a block, so a line inside an answer that begins "Q: ..." or
    "Answer: ..." stays in it. Otherwise (a model that writes `Q: text` inline) a marker followed by
    text on the same line starts a block. Line breaks are normalised to `\n`; nothing else changes.
    """
    lines = text.splitlines()
    found = [_marker(line) for line in lines]
    strict = any(m is not None and m[2] for m in found)
    pairs: list[tuple[str, str]] = []
    role: str | None = None
    buf: list[str] = []
    question = None

    def flush() -> None:
        nonlocal question
        body = _body(buf)
        if role == "q":
            question = body or None
        elif role == "a" and question and body:
            pairs.append((question, body))
            question = None

    for line, mark in zip(lines, found, strict=True):
        if mark is not None and (mark[2] or not strict):
            flush()
            role, buf = mark[0], [line[mark[1]:]]
        elif role is not None:
            buf.append(line)
    flush()
    if not pairs:
        raise RowError("unparsable", "no Question:/Answer: pair found")
    return pairs


def parse_json(text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(_FENCE.sub("", text.strip()))
    except json.JSONDecodeError as e:
        raise RowError("unparsable", f"not JSON: {e.msg} at line {e.lineno}") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("pairs", "conversations", "qa", "questions") if isinstance(data.get(k), list)),
                    [data])
    pairs = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and str(item.get("question", "")).strip() and str(item.get("answer", "")).strip():
            pairs.append((str(item["question"]).strip(), str(item["answer"]).strip()))
    if not pairs:
        raise RowError("unparsable", "JSON holds no {question, answer} pair")
    return pairs


def parse(fmt: str, text: str, *, prompt: str | None) -> list[tuple[str, str]]:
    """Pairs of (user text, assistant text) in conversation order."""
    if fmt == "qa_blocks":
        return parse_qa_blocks(text)
    if fmt == "json":
        return parse_json(text)
    if fmt == "text":
        if prompt is None:
            raise ValueError("parse: text needs a prompt for the user turn")
        return [(prompt, text.strip())]
    raise ValueError(f"unknown parse format '{fmt}' (qa_blocks | json | text)")
