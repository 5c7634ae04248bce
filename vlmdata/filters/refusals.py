"""`refusals`: drop rows whose assistant turn is an LLM refusal or disclaimer.

Synthesized data inherits the teacher model's refusals ("I'm sorry, I can't help with that", "As an
AI ..."); trained on, they teach the student to refuse ordinary questions about images. The built-in
list covers the common phrasings (case-insensitive, curly apostrophes treated as straight ones);
`extra_patterns` adds regular expressions of your own.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from vlmdata.filters.patterns import Regex, compile_any
from vlmdata.filters.turns import role_text
from vlmdata.steps.base import FilterStep, Row

_CANT = r"(?:can ?not|can't|could not|couldn't|am unable to|'m unable to|am not able to|'m not able to|won't|will not)"
REFUSAL_PATTERNS: tuple[str, ...] = (
    rf"\bI'?m sorry,? but I {_CANT}",
    rf"\bI'?m sorry,? I {_CANT}",
    rf"\bI am sorry,? (?:but )?I {_CANT}",
    rf"\bsorry,? (?:but )?I {_CANT} (?:help|assist|provide|comply|fulfil)",
    r"\bI apologi[sz]e,? but\b",
    r"\bI (?:cannot|can't|can not|am unable to|'m unable to) (?:assist|help) with (?:that|this|your request)",
    r"\bI cannot assist\b",
    r"\bI (?:cannot|can't|won't) (?:comply|fulfil+) (?:with )?(?:that|this|your) request",
    r"\bas an AI\b",
    r"\bas an? (?:AI )?(?:large )?language model\b",
    r"\bas an AI (?:language model|assistant)\b",
    r"\bI'?m (?:just )?an AI\b",
    r"\bI (?:do not|don't) have the ability to (?:see|view|analy[sz]e)",
    rf"\bI {_CANT} (?:see|view|analy[sz]e|identify people in) (?:the |this |that |any )?(?:image|picture|photo)",
    r"\bunable to (?:view|see|process) (?:the |this )?(?:image|picture|photo)",
    r"\bI'?m not comfortable\b",
    r"\b(?:it is|it's) not appropriate for me to\b",
    r"\bI must (?:respectfully )?decline\b",
)


class RefusalsFilter(FilterStep):
    name: ClassVar[str] = "filter.refusals"

    def __init__(self, *, extra_patterns: list[str] | tuple[str, ...] = ()) -> None:
        self.pattern = compile_any([*REFUSAL_PATTERNS, *extra_patterns], ignore_case=True)

    def keep(self, row: Row) -> bool | str:
        text = role_text(row.get("messages"), "assistant").replace("\u2019", "'")
        return "refusal" if self.pattern.search(text) else True


class RefusalsSpec(BaseModel):
    """`refusals` or `{refusals: {extra_patterns: ["I will not describe"]}}`."""

    model_config = ConfigDict(extra="forbid")
    extra_patterns: list[Regex] = []

    def build(self) -> RefusalsFilter:
        return RefusalsFilter(extra_patterns=self.extra_patterns)
