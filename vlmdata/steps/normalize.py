"""Normalize: make reference answers comparable, without touching what the model learns.

Only the `answers` column (the references a scorer compares against) changes; the assistant message
keeps its original text and casing, so the trainer learns natural answers while exact-match style
scoring sees canonical ones. The references as they were go into `meta["raw_answers"]` whenever
something changed: the official VQA metric decides per question whether to normalise from the raw
references (`vlmdata.answers.vqa_accuracy`), so a faithful VQAv2 number scores against those.

An answer that normalises to "" is kept; the `empty_answer` filter decides what to do with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.answers import canonical_yes_no, extract_choice_letter, normalize_vqa
from vlmdata.rows import Reject
from vlmdata.steps.base import MapStep, Row


class NormalizeSpec(BaseModel):
    """Recipe section `normalize:`.

    `answers: vqa` applies the official VQA answer normalisation; `yes_no` maps "Yeah."/"True" to
    "yes" (and the like to "no"); `choice_letters` turns "(B) cat" into "B" (any answer that reads as
    a letter, so scope it with `tasks`); `tasks` limits it all to rows of those tasks (default: all).
    """

    model_config = ConfigDict(extra="forbid")
    answers: Literal["vqa", "none"] = "vqa"
    yes_no: bool = False
    choice_letters: bool = False
    tasks: list[str] | None = Field(default=None, min_length=1)


class NormalizeStep(MapStep):
    name: ClassVar[str] = "normalize"

    def __init__(self, *, answers: Literal["vqa", "none"] = "vqa", yes_no: bool = False,
                 choice_letters: bool = False, tasks: list[str] | None = None) -> None:
        if answers not in ("vqa", "none"):
            raise ValueError(f"normalize.answers: unknown value '{answers}' (choose from: vqa, none)")
        self.answers = answers
        self.yes_no = yes_no
        self.choice_letters = choice_letters
        self.tasks = frozenset(tasks) if tasks is not None else None

    @classmethod
    def from_spec(cls, spec: NormalizeSpec) -> NormalizeStep:
        return cls(answers=spec.answers, yes_no=spec.yes_no, choice_letters=spec.choice_letters, tasks=spec.tasks)

    def normalize(self, answer: str, *, n_choices: int | None = None) -> str:
        """One reference answer through the enabled rules.

        Letters and yes/no are read from the raw answer (normalisation would lowercase "(B) cat" into
        "b cat" and drop the comma of "Yes, it is"); a letter found is final (kept uppercase).
        """
        if self.choice_letters:
            letter = extract_choice_letter(answer, n_choices)
            if letter is not None:
                return letter
        if self.yes_no:
            answer = canonical_yes_no(answer)
        if self.answers == "vqa":
            answer = normalize_vqa(answer)
        return answer

    def map(self, batch: list[Row]) -> Iterator[Row | Reject]:
        for row in batch:
            if self.tasks is None or row["task"] in self.tasks:
                self._apply(row)
            yield row

    def _apply(self, row: Row) -> None:
        raw = [str(a) for a in row.get("answers") or []]
        choices: Any = (row.get("fields") or {}).get("choices")
        n_choices = len(choices) if isinstance(choices, list) and choices else None
        normalized = [self.normalize(a, n_choices=n_choices) for a in raw]
        if normalized != raw:
            row["meta"]["raw_answers"] = raw
            row["answers"] = normalized
