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
_MARK = r"^[\s>#*_-]*(?:\d+\s*[.)]\s*)?[*_]*\s*(?:{words})\s*\d*\s*[*_]*\s*[:：.)-]\s*[*_]*\s*"
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


def _clean(text: str) -> str:
    return re.sub(r"\s+\n|\n\s+", "\n", text.strip().strip("*_").strip())


def parse_qa_blocks(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    role, buf = None, []
    question = None

    def flush() -> None:
        nonlocal question
        body = _clean("\n".join(buf))
        if role == "q":
            question = body
        elif role == "a" and question and body:
            pairs.append((question, body))
            question = None

    for line in text.splitlines():
        if _SEPARATOR.match(line):
            continue
        q, a = _Q.match(line), _A.match(line)
        if q or a:
            flush()
            role, buf = ("q", [line[q.end():]]) if q else ("a", [line[a.end():]])  # type: ignore[union-attr]
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
