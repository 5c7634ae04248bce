"""Instruct: labels → chat turns, no LLM.

- VQA (a question): the question, then the task's response-format `suffix` (LLaVA-1.5 style).
- Multiple choice (question + choices): lettered options and "Answer with the option's letter ...";
  the reference answer becomes the letter.
- Caption: an instruction drawn from a prompt pool, seeded per row (the same row always gets the same
  prompt, whatever the order or the number of workers).
- Label: a classification question answered by the label.
- Template: a Jinja2 template renders the turns from the row's fields and context (e.g. DICOM header).

Rows that already have messages (LLaVA json, a vlmdata dataset) pass through after a consistency
check. Every row leaves with its content id.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vlmdata.config.paths import TemplateRef
from vlmdata.rows import Reject, RowError
from vlmdata.schema import image_count, image_part, message, row_id, text_part
from vlmdata.steps.base import MapStep, Row
from vlmdata.templates_lib import Template, check_template, load_template
from vlmdata.vqa_target import majority_answer, target_answer

MC_SUFFIX = "Answer with the option's letter from the given choices directly."


class InstructSpec(BaseModel):
    """How rows of one task become chat turns without an LLM.

    VQA rows (a question) get `suffix` appended (LLaVA-1.5: "Answer the question using a single word or
    phrase."); multiple-choice rows (question + choices) get lettered options and `mc_suffix`; caption
    rows draw an instruction from `prompts` (a built-in pool by default) with the recipe seed; a
    `template` renders the turns from the row's fields instead.
    """

    model_config = ConfigDict(extra="forbid")
    suffix: str | None = None
    mc_suffix: str = MC_SUFFIX
    prompts: list[str] | None = Field(default=None, min_length=1)
    template: TemplateRef | None = None
    system: str | None = None
    target: Literal["consensus", "majority"] = "consensus"  # which reference is learned: vlmdata/vqa_target.py

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        problem = check_template(value, base_dir=base)
        if problem:
            raise ValueError(problem)
        return value


CAPTION_PROMPTS = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Give a short and clear explanation of the image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the image.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
)
LABEL_QUESTION = "What is shown in this image?"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def majority(answers: list[str]) -> str:
    """The most frequent answer (`vlmdata.vqa_target.majority_answer`: grouped by VQA normalisation,
    ties to the first in sort order)."""
    return majority_answer(answers)


def _target(row: Row, spec: InstructSpec, answers: list[str]) -> str:
    return target_answer(answers, rule=spec.target, row_values={**row["context"], **row["fields"]})


class InstructStep(MapStep):
    name: ClassVar[str] = "instruct"

    def __init__(self, *, specs: dict[str, InstructSpec], seed: int, base_dir: Any = None) -> None:
        self.specs = specs
        self.seed = seed
        self.templates: dict[str, Template] = {
            task: load_template(spec.template, base_dir=base_dir) for task, spec in specs.items() if spec.template
        }

    def map(self, batch: list[Row]) -> Iterator[Row | Reject]:
        for row in batch:
            try:
                if row["messages"] is None:
                    row["messages"] = self._build(row)
                else:
                    self._check(row)
            except RowError as e:
                yield Reject(row["source"], row["meta"]["locator"], e.reason, e.detail, self.name)
                continue
            row["id"] = row_id(image_hashes=row["image_hashes"], messages=row["messages"])
            yield row

    def _rng(self, row: Row, salt: str) -> random.Random:
        return random.Random(f"{self.seed}:{salt}:{':'.join(row['image_hashes'])}:{row['meta']['locator']}")

    def _check(self, row: Row) -> None:
        n = image_count(row["messages"])
        if n != len(row["images"]):
            raise RowError("image_count_mismatch", f"messages have {n} image part(s), row has {len(row['images'])} image(s)")
        if not any(m["role"] == "assistant" and any(p.get("text") for p in m["content"]) for m in row["messages"]):
            raise RowError("no_assistant_turn", "messages contain no assistant text to learn from")

    def _build(self, row: Row) -> list[dict[str, Any]]:
        task, fields = row["task"], row["fields"]
        spec = self.specs.get(task, InstructSpec())
        answers: list[str] = [a for a in row["answers"] if a is not None]
        images = [image_part() for _ in row["images"]]
        if task in self.templates:
            return self._from_template(row, spec, answers, images)
        if "question" in fields:
            question = str(fields["question"]).strip()
            if not answers:
                raise RowError("missing_answer", "question has no answer (fields.answer / fields.answers)")
            if "choices" in fields:
                choices = [str(c) for c in fields["choices"]]
                if not choices:
                    raise RowError("bad_choices", "choices is an empty list")
                if len(choices) > len(LETTERS):
                    raise RowError("too_many_choices", f"{len(choices)} choices; lettered options go up to "
                                                       f"{len(LETTERS)} (A-Z): split the question or drop choices")
                letter = _letter_for(_target(row, spec, answers), choices)
                if letter is None:
                    raise RowError("bad_value", f"answer {_target(row, spec, answers)!r} is neither a choice nor a letter of {choices}")
                options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
                user, assistant = f"{question}\n{options}\n{spec.mc_suffix}", letter
                row["answers"] = [letter]
            else:
                user = f"{question}\n{spec.suffix}" if spec.suffix else question
                assistant = _target(row, spec, answers)
        elif "caption" in fields:
            captions = fields["caption"] if isinstance(fields["caption"], list) else [fields["caption"]]
            captions = [str(c).strip() for c in captions if c is not None and str(c).strip()]
            if not captions:
                raise RowError("missing_answer", "caption is empty")
            rng = self._rng(row, "caption")
            user = rng.choice(spec.prompts or CAPTION_PROMPTS)
            assistant = rng.choice(captions)
            row["answers"] = captions
        elif "label" in fields:
            user = f"{LABEL_QUESTION}\n{spec.suffix}" if spec.suffix else LABEL_QUESTION
            assistant = str(fields["label"])
            row["answers"] = [assistant]
        else:
            raise RowError("no_instruction", f"row has no question, caption or label, and task '{task}' has no "
                                          f"instruct.{task}.template")
        return self._turns(spec.system, images, user, assistant)

    def _from_template(self, row: Row, spec: InstructSpec, answers: list[str], images: list[dict]) -> list[dict]:
        from jinja2 import TemplateError

        template = self.templates[row["task"]]
        context = {**row["context"], **row["fields"], "answers": answers, "task": row["task"],
                   "answer": _target(row, spec, answers) if answers else None, "n_images": len(images)}
        try:
            turns = template.render(context)
        except TemplateError as e:
            raise RowError("template_error", f"{template.name}: {type(e).__name__}: {e}") from None
        except Exception as e:  # a runtime error of this row's values (1/0, 'a' + 1, a limit of the sandbox)
            raise RowError("template_error", f"{template.name}: {type(e).__name__}: {str(e)[:300]}") from None
        assistant = turns.get("assistant") or (_target(row, spec, answers) if answers else "")
        if not turns.get("user") or not assistant:
            raise RowError("template_error", f"{template.name} rendered an empty {'user' if not turns.get('user') else 'assistant'} turn")
        if not answers and "assistant" in turns:
            row["answers"] = [assistant]
        row["meta"]["template"] = {"name": template.name, "sha256": template.sha256}
        return self._turns(turns.get("system") or spec.system, images, turns["user"], assistant)

    @staticmethod
    def _turns(system: str | None, images: list[dict], user: str, assistant: str) -> list[dict[str, Any]]:
        msgs = [message("system", [text_part(system)])] if system else []
        msgs.append(message("user", [*images, text_part(user)]))
        msgs.append(message("assistant", [text_part(assistant)]))
        return msgs


def _letter_for(answer: str, choices: list[str]) -> str | None:
    stripped = answer.strip()
    if len(stripped) == 1 and stripped.upper() in LETTERS[: len(choices)]:
        return stripped.upper()
    for i, c in enumerate(choices):
        if c.strip().lower() == stripped.lower():
            return LETTERS[i]
    return None

