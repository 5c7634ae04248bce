"""`text_length`: drop rows whose text is too short or too long, in characters or words.

Very long turns blow the training context (and usually are scraped junk); very short assistant turns
teach little. `role` picks whose text counts: the user's, the assistant's, or both together.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.filters.turns import Role, role_text
from vlmdata.steps.base import FilterStep, Row


class TextLengthFilter(FilterStep):
    name: ClassVar[str] = "filter.text_length"

    def __init__(self, *, min_chars: int | None = None, max_chars: int | None = None,
                 min_words: int | None = None, max_words: int | None = None, role: Role = "any") -> None:
        bounds = {"min_chars": min_chars, "max_chars": max_chars, "min_words": min_words, "max_words": max_words}
        if all(v is None for v in bounds.values()):
            raise ValueError("give at least one of min_chars, max_chars, min_words, max_words")
        for unit in ("chars", "words"):
            lo, hi = bounds[f"min_{unit}"], bounds[f"max_{unit}"]
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"min_{unit} ({lo}) is greater than max_{unit} ({hi})")
        if role not in ("user", "assistant", "any"):
            raise ValueError(f"role: unknown value '{role}' (choose from: user, assistant, any)")
        self.min_chars, self.max_chars = min_chars, max_chars
        self.min_words, self.max_words = min_words, max_words
        self.role = role

    def keep(self, row: Row) -> bool | str:
        text = role_text(row.get("messages"), self.role)
        chars = len(text)
        if self.min_chars is not None and chars < self.min_chars:
            return "text_too_short"
        if self.max_chars is not None and chars > self.max_chars:
            return "text_too_long"
        if self.min_words is not None or self.max_words is not None:
            words = len(text.split())
            if self.min_words is not None and words < self.min_words:
                return "too_few_words"
            if self.max_words is not None and words > self.max_words:
                return "too_many_words"
        return True


class TextLengthSpec(BaseModel):
    """`{text_length: {max_chars: 2000, role: assistant}}`; bounds are inclusive."""

    model_config = ConfigDict(extra="forbid")
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=1)
    role: Role = "any"

    @model_validator(mode="after")
    def _consistent(self) -> TextLengthSpec:
        self.build()
        return self

    def build(self) -> TextLengthFilter:
        return TextLengthFilter(min_chars=self.min_chars, max_chars=self.max_chars, min_words=self.min_words,
                                max_words=self.max_words, role=self.role)
