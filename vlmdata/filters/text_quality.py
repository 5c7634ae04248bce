"""`text_quality`: drop turns that are mostly symbols or repeat themselves (cheap, per row).

    filter:
      - {text_quality: {min_alpha_ratio: 0.5, max_repeat_ratio: 0.3, roles: [assistant]}}

alpha_ratio = share of non-space characters that are letters (any script) or digits; repeat_ratio
= share of word 3-grams that occur more than once (Gopher's duplicate n-gram measure, the classic
sign of a degenerate generation). Texts under 3 words are not scored for repetition.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.dedup.textnorm import role_text
from vlmdata.filters.scored import ScoredFilter
from vlmdata.steps.base import Row


def text_scores(text: str) -> dict[str, float]:
    chars = [c for c in text if not c.isspace()]
    alpha = sum(c.isalnum() for c in chars) / len(chars) if chars else 1.0
    words = text.lower().split()
    grams = list(zip(words, words[1:], words[2:], strict=False))
    counts = Counter(grams)
    repeat = sum(n for n in counts.values() if n > 1) / len(grams) if grams else 0.0
    return {"alpha_ratio": alpha, "repeat_ratio": repeat}


class TextQualityFilter(ScoredFilter):
    name: ClassVar[str] = "filter.text_quality"

    def __init__(self, *, spec: TextQualitySpec) -> None:
        self.roles = list(spec.roles)
        wanted = [("alpha_ratio", "min", spec.min_alpha_ratio, "text_symbols"),
                  ("repeat_ratio", "max", spec.max_repeat_ratio, "text_repetitive")]
        self.checks = [c for c in wanted if c[2] is not None]

    def scores(self, row: Row) -> dict[str, float] | None:
        text = role_text(row.get("messages"), self.roles)
        return text_scores(text) if text.strip() else None


class TextQualitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_alpha_ratio: float | None = Field(default=0.5, ge=0, le=1)
    max_repeat_ratio: float | None = Field(default=0.3, ge=0, le=1)
    roles: list[Literal["system", "user", "assistant"]] = Field(default=["assistant"], min_length=1)

    def build(self) -> TextQualityFilter:
        return TextQualityFilter(spec=self)
