"""`empty_answer`: drop rows that would teach the model to say nothing, or cannot be scored.

An assistant turn that is empty or only whitespace is a broken label. For answer-scored tasks (VQA by
default) a row needs at least one non-empty reference; normalisation can empty an answer (".").
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.filters.turns import turn_texts
from vlmdata.steps.base import FilterStep, Row


class EmptyAnswerFilter(FilterStep):
    name: ClassVar[str] = "filter.empty_answer"

    def __init__(self, *, answer_tasks: list[str] | tuple[str, ...] = ("vqa",)) -> None:
        self.answer_tasks = frozenset(answer_tasks)

    def keep(self, row: Row) -> bool | str:
        assistant = turn_texts(row.get("messages"), "assistant")
        if not assistant or any(not t.strip() for t in assistant):
            return "empty_assistant"
        if row.get("task") in self.answer_tasks and not any(str(a).strip() for a in row.get("answers") or []):
            return "empty_answers"
        return True


class EmptyAnswerSpec(BaseModel):
    """`empty_answer` or `{empty_answer: {answer_tasks: [vqa, mcq]}}`."""

    model_config = ConfigDict(extra="forbid")
    answer_tasks: list[str] = Field(default_factory=lambda: ["vqa"])

    def build(self) -> EmptyAnswerFilter:
        return EmptyAnswerFilter(answer_tasks=self.answer_tasks)
