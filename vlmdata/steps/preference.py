"""Preference pairs from labels: every row becomes (prompt, chosen, rejected), or a reject saying why not.

    preference:
      from: labels
      group_by: [question_type, answer_type]   # hard negatives come from rows alike in these (context/fields)
      attributes:                               # captions: perturb one of these words (else a mismatched caption)
        colour: [red, green, blue, yellow]
        count: [one, two, three]
        position: [left, right, top, bottom]

The chosen side is the row's own (last) assistant answer; the prompt is everything before it.
- A row with reference `answers` (VQA, multiple choice, labels) gets a *hard negative*: an answer
  another row of the same task gave (same `group_by` values when the rows have them, else the same
  task) that the official VQA accuracy (vlmdata/answers.py) scores 0 against this row's references
  and that is no reference up to case/punctuation/articles (`is_wrong`), so a rejected answer is never
  a partly right one. Candidates are weighted by how often they occur
  (plausible answers first); the draw is seeded by the recipe seed and the row id.
- A caption row gets its caption with one attribute word swapped for another of the same attribute
  (`attributes`), or, when it holds none of them, the caption of another image of the same task.
A row with no possible negative is rejected (`no_negative`), counted, never dropped silently. Each
pair's `meta.preference` records how its rejected side was made and from which row.

A global step: `key` keeps a few strings a row (task, group values, answers), `fit` draws every
rejected answer once, `apply` builds the rows. Rows with images keep them (and their dedup/split
cluster), so dedup, split and mix treat pairs like any other row.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlmdata.answers import normalize_vqa, vqa_accuracy
from vlmdata.config.path_types import ExistingPath
from vlmdata.rows import Reject
from vlmdata.schema import (
    PREFERENCE_TASK,
    assistant_texts,
    message,
    preference_problems,
    preference_row_id,
    text_part,
)
from vlmdata.steps.base import GlobalStep, Row
from vlmdata.synth.judge_spec import CandidateCall, JudgeCall


class PreferenceSpec(BaseModel):
    """The `preference:` section: `from: labels`, `from: run` with a run's `predictions`, or `from: judge`
    with `candidates` and `judge` calls (steps/preference_judge.py)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: Literal["labels", "run", "judge"] = Field(default="labels", alias="from")
    predictions: ExistingPath | None = None  # from: run: `vlmtrain eval`'s predictions.jsonl (or its folder)
    tasks: list[str] | None = Field(default=None, min_length=1)  # which tasks make pairs; others are rejected
    group_by: list[str] = Field(default_factory=lambda: ["question_type", "answer_type"])
    attributes: dict[str, list[str]] = Field(default_factory=dict)  # captions: attribute → its words
    mismatch: bool = True  # captions without an attribute word: a mismatched image's caption
    candidates: CandidateCall | None = None  # from: judge: who answers each prompt N times
    judge: JudgeCall | None = None  # from: judge: who scores the answers
    min_margin: float | None = Field(default=None, gt=0)  # from: judge: best - worst score (rubric 2, pairwise 0.5)
    include_reference: bool = False  # from: judge: the row's own answer is one more (judged) candidate

    @field_validator("attributes")
    @classmethod
    def _vocab(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, words in value.items():
            if len({w.lower() for w in words}) < 2:
                raise ValueError(f"attributes.{name} needs at least two different words to swap between")
        return value

    @model_validator(mode="after")
    def _run_needs_predictions(self) -> PreferenceSpec:
        if self.from_ == "run" and self.predictions is None:
            raise ValueError("preference.from: run needs preference.predictions (the predictions.jsonl that "
                             "`vlmtrain eval RUN --split ...` wrote)")
        if self.from_ != "run" and self.predictions is not None:
            raise ValueError(f"preference.predictions is read only with from: run (from is {self.from_})")
        if self.from_ == "judge":
            missing = [k for k in ("candidates", "judge") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"preference.from: judge needs preference.{' and preference.'.join(missing)} "
                                 "(e.g. candidates: {model: my-sft, n: 4, endpoint: {base_url: http://localhost:8000/v1}}, "
                                 "judge: {model: gpt-4o})")
        else:
            extra = [k for k in ("candidates", "judge", "min_margin") if getattr(self, k) is not None]
            if self.include_reference:
                extra.append("include_reference")
            if extra:
                raise ValueError(f"preference.{', preference.'.join(extra)} are read only with from: judge "
                                 f"(from is {self.from_})")
        return self

    def margin(self) -> float:
        """`min_margin`, else 2 points on the rubric or half the comparisons won (pairwise)."""
        if self.min_margin is not None:
            return self.min_margin
        return 0.5 if self.judge is not None and self.judge.scoring == "pairwise" else 2.0


def load_predictions(path: Path) -> dict[str, str]:
    """id → the run's answer, from `vlmtrain eval`'s predictions.jsonl (`path` or `path/predictions.jsonl`)."""
    file = path / "predictions.jsonl" if path.is_dir() else path
    out: dict[str, str] = {}
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out[str(record["id"])] = str(record["prediction"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{file}:{n}: not a predictions line with id and prediction ({e})") from None
    return out


def is_wrong(candidate: str, references: list[str]) -> bool:
    """Whether `candidate` may be a rejected answer: the official VQA accuracy scores it 0, and it is not one
    of the references up to case, punctuation and articles either. (The official metric normalises only
    when the references disagree, so "Dog." scores 0 against ten "dog"s; as a rejected answer it would
    teach the model to disprefer the right answer.)"""
    if vqa_accuracy(candidate, references) > 0:
        return False
    mine = normalize_vqa(candidate.lower())
    return bool(mine) and all(normalize_vqa(r.lower()) != mine for r in references)


def _answer_text(row: Row) -> str:
    texts = assistant_texts(row["messages"] or [])
    return texts[-1] if texts else ""


def _group_values(row: Row, names: list[str]) -> tuple[str, ...]:
    found = []
    for name in names:
        value = (row.get("context") or {}).get(name, (row.get("fields") or {}).get(name))
        found.append("" if value is None else str(value))
    return tuple(found)


def _swap(text: str, attributes: dict[str, list[str]], rng: random.Random) -> tuple[str, str] | None:
    """`text` with one attribute word replaced by another word of that attribute, and the attribute's name."""
    hits = []
    for name, words in sorted(attributes.items()):
        for word in words:
            for m in re.finditer(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE):
                hits.append((m.start(), m.end(), name, word))
    if not hits:
        return None
    start, end, name, word = rng.choice(sorted(hits))
    others = sorted({w for w in attributes[name] if w.lower() != word.lower()})
    return text[:start] + rng.choice(others) + text[end:], name


@dataclass
class PreferenceState:
    rejected: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # _idx → (text, lineage)
    reasons: dict[int, tuple[str, str]] = field(default_factory=dict)  # _idx → (reason, detail)
    summary: dict[str, Any] = field(default_factory=dict)


class PreferenceStep(GlobalStep):
    name: ClassVar[str] = "preference"

    def __init__(self, *, spec: PreferenceSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed

    def key(self, batch: list[Row]) -> dict[str, list[Any]]:
        return {
            "id": [r["id"] for r in batch],
            "task": [r["task"] for r in batch],
            "group": [json.dumps(_group_values(r, self.spec.group_by)) for r in batch],
            "answers": [json.dumps([str(a) for a in r["answers"]]) for r in batch],
            "answer": [_answer_text(r) for r in batch],
            "image": [(r.get("image_hashes") or [""])[0] for r in batch],
            "captioned": [not ((r.get("fields") or {}).get("question")) and "caption" in (r.get("fields") or {})
                          for r in batch],
        }

    def fit(self, keys: Any) -> PreferenceState:
        cols = {name: keys.column(name).to_pylist() for name in ("_idx", "id", "task", "group", "answers", "answer",
                                                                  "image", "captioned")}
        rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
        by_group: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        by_task: dict[str, Counter[str]] = defaultdict(Counter)
        captions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        first_of: dict[tuple[str, str], str] = {}  # (task, normalised answer) → the first row id that gave it
        for r in rows:
            if r["captioned"]:
                captions[r["task"]].append(r)
                continue
            if not r["answer"]:
                continue
            by_group[(r["task"], r["group"])][r["answer"]] += 1
            by_task[r["task"]][r["answer"]] += 1
            first_of.setdefault((r["task"], normalize_vqa(r["answer"])), r["id"])
        state = PreferenceState()
        kinds: Counter[str] = Counter()
        predictions = load_predictions(self.spec.predictions) if self.spec.predictions is not None else None
        for r in rows:
            i = r["_idx"]
            if self.spec.tasks is not None and r["task"] not in self.spec.tasks:
                state.reasons[i] = ("task_not_paired", f"task '{r['task']}' is not in preference.tasks")
                continue
            rng = random.Random(f"{self.seed}:preference:{r['id']}")
            if predictions is not None:
                made = self._on_policy(r, predictions)
                if isinstance(made, tuple) and isinstance(made[0], str) and made[0].startswith("!"):
                    state.reasons[i] = (made[0][1:], made[1])
                    continue
            elif r["captioned"]:
                made = self._caption(r, captions[r["task"]], rng)
            else:
                made = self._hard_negative(r, by_group, by_task, first_of, rng)
            if isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], dict):
                state.rejected[i] = made
                kinds[made[1]["kind"]] += 1
            else:
                state.reasons[i] = ("no_negative", str(made))
        state.summary = {"from": self.spec.from_, "pairs": len(state.rejected), "by_kind": dict(sorted(kinds.items()))}
        return state

    def _hard_negative(self, r: dict[str, Any], by_group: Any, by_task: Any, first_of: dict[tuple[str, str], str],
                       rng: random.Random) -> tuple[str, dict[str, Any]] | str:
        refs = json.loads(r["answers"]) or [r["answer"]]
        if not r["answer"]:
            return "the row has no assistant answer to prefer"
        for level, pool in (("group", by_group[(r["task"], r["group"])]), ("task", by_task[r["task"]])):
            wrong = sorted(a for a in pool if is_wrong(a, refs))
            if wrong:
                pick = rng.choices(wrong, weights=[pool[a] for a in wrong])[0]
                return pick, {"kind": "hard_negative", "level": level,
                              "rejected_from": first_of.get((r["task"], normalize_vqa(pick)))}
        return (f"no other answer of task '{r['task']}' scores 0 against the references {refs} "
                "(every candidate is at least partly right)")

    def _on_policy(self, r: dict[str, Any], predictions: dict[str, str]) -> tuple[str, Any]:
        """The run's own answer as the rejected side when it scores 0 (VQA accuracy) against the references;
        ("!reason", detail) when the row cannot pair: no prediction, or the run answered (partly) right."""
        if r["id"] not in predictions:
            return "!no_prediction", f"{self.spec.predictions} has no prediction for row {r['id']}"
        prediction, refs = predictions[r["id"]].strip(), json.loads(r["answers"]) or [r["answer"]]
        if not prediction:
            return "!empty_prediction", "the run answered nothing"
        accuracy = vqa_accuracy(prediction, refs)
        if not is_wrong(prediction, refs):
            return "!prediction_correct", (f"the run's answer {prediction!r} scores {accuracy:g} against {refs} or matches one up to "
                                           "case/punctuation/articles: "
                                           "no error to prefer the reference over")
        return prediction, {"kind": "on_policy", "run": str(self.spec.predictions)}

    def _caption(self, r: dict[str, Any], pool: list[dict[str, Any]], rng: random.Random) -> tuple[str, dict] | str:
        if self.spec.attributes:
            swapped = _swap(r["answer"], self.spec.attributes, rng)
            if swapped is not None and swapped[0] != r["answer"]:
                return swapped[0], {"kind": f"perturb:{swapped[1]}"}
        if self.spec.mismatch:
            others = [o for o in pool if o["image"] != r["image"] and normalize_vqa(o["answer"]) != normalize_vqa(r["answer"])]
            if others:
                other = rng.choice(others)
                return other["answer"], {"kind": "mismatch", "rejected_from": other["id"]}
        return f"no attribute word to perturb and no other image's caption for task '{r['task']}'"

    def apply(self, batch: list[Row], state: PreferenceState) -> Iterator[Row | Reject]:
        for row in batch:
            i = row["_idx"]
            locator = (row.get("meta") or {}).get("locator", "")
            if i in state.reasons:
                reason, detail = state.reasons[i]
                yield Reject(source=row.get("source", ""), locator=locator, reason=reason, detail=detail,
                             stage=self.name, row_id=row.get("id"))
                continue
            text, lineage = state.rejected[i]
            messages = row["messages"]
            last = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
            prompt, chosen = messages[:last], [messages[last]]
            rejected = [message("assistant", [text_part(text)])]
            pair = {**row, "task": PREFERENCE_TASK, "messages": prompt, "chosen": chosen, "rejected": rejected}
            problems = preference_problems(pair)
            if problems:
                yield Reject(source=row.get("source", ""), locator=locator, reason="bad_pair",
                             detail="; ".join(problems), stage=self.name, row_id=row.get("id"))
                continue
            pair["id"] = preference_row_id(image_hashes=row["image_hashes"], prompt=prompt, chosen=chosen,
                                           rejected=rejected)
            pair["meta"] = {**(row.get("meta") or {}),
                            "preference": {"from": self.spec.from_, "task": row["task"], "row": row["id"], **lineage}}
            yield pair

    def report(self, state: PreferenceState) -> dict[str, Any]:
        return state.summary
