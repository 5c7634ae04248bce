"""Which of a question's reference answers becomes the training target (the assistant turn).

VQA v2 gives ten human answers per question and, in `multiple_choice_answer`, the dataset's own
consensus answer. `instruct.<task>.target` picks the rule:

- `consensus` (default): `multiple_choice_answer` when the row has one (the vqav2 source puts it in
  the row's context; a JSON/CSV source may carry it as a field), else `majority`.
- `majority`: the most frequent answer, counting answers that the official VQA normalisation
  (`vlmdata.answers.normalize_vqa`) makes equal as one ("Two", "two" and "2" are one answer). The
  target is that answer's most frequent spelling as written. Ties between answers go to the one whose
  normalised form sorts first; ties between spellings to the one already in normalised form, else
  the one that sorts first. So the target never depends on the order in which annotators are listed.

The references themselves are never changed here: all of them stay in the row's `answers`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from vlmdata.answers import normalize_vqa

TargetRule = Literal["consensus", "majority"]
TARGET_RULES: tuple[str, ...] = ("consensus", "majority")
CONSENSUS_KEY = "multiple_choice_answer"


def majority_answer(answers: Sequence[str]) -> str:
    """The most frequent answer (see the module docstring for grouping and the tie-break)."""
    if not answers:
        raise ValueError("majority_answer needs at least one answer")
    groups: dict[str, Counter[str]] = {}
    for a in answers:
        groups.setdefault(normalize_vqa(a), Counter())[a.strip()] += 1
    best = min(groups, key=lambda norm: (-sum(groups[norm].values()), norm))
    spellings = groups[best]
    return min(spellings, key=lambda s: (-spellings[s], s != best, s))


def consensus_answer(row_values: Mapping[str, Any]) -> str | None:
    """The row's own consensus answer (`multiple_choice_answer`), if it has a usable one."""
    value = row_values.get(CONSENSUS_KEY)
    return value.strip() if isinstance(value, str) and value.strip() else None


def target_answer(answers: Sequence[str], *, rule: TargetRule, row_values: Mapping[str, Any]) -> str:
    """The training target of a row with these references under `rule`."""
    if rule == "consensus":
        found = consensus_answer(row_values)
        if found is not None:
            return found
    return majority_answer(answers)
