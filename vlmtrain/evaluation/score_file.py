"""Scoring answers that were made elsewhere: a predictions file against a split of a vlmdata output.

Why: a model evaluated outside vlmtrain (another framework, an API, a published results file)
should get the same number as `vlmtrain eval` gives, from the same code (`vlmtrain.evaluation.evaluate.record`),
against the raw human answers. Two formats are read:

- the official VQA results format: a JSON list of `{"question_id": ..., "answer": ...}`, matched to
  rows by the `question_id` the vqav2 source keeps in `meta.context`;
- JSON lines of `{"id": ..., "prediction": ...}` (vlmtrain's own `predictions.jsonl`), matched by row id.

As in the official script, every row must have exactly one answer and every answer a row: a
mismatch is an error that names the first missing or unknown keys, never a silently partial score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.data.dataset import row_batches
from vlmtrain.evaluation.evaluate import EvalResult, record, row_meta, summarise

if TYPE_CHECKING:  # pragma: no cover
    import datasets

WHERE = "--predictions"


def _fail(message: str) -> ConfigError:
    return ConfigError([Problem(WHERE, message)], what="predictions")


def read_predictions(path: Path) -> tuple[str, dict[str, str]]:
    """(key kind 'question_id' or 'id', {key as text: answer}) from an official results JSON or a JSONL file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"cannot read {path}: {e}") from None
    try:
        items: Any = json.loads(text)
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list):  # not one JSON document: JSON lines
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise _fail(f"{path}: line {n} is not JSON ({e.msg}); expected a JSON list of "
                            '{"question_id", "answer"} or JSON lines of {"id", "prediction"}') from None
    kinds = {("question_id", "answer"), ("id", "prediction")}
    out: dict[str, str] = {}
    kind: tuple[str, str] | None = None
    for n, item in enumerate(items, start=1):
        found = next((k for k in sorted(kinds) if isinstance(item, dict) and k[0] in item and k[1] in item), None)
        if found is None or (kind is not None and found != kind):
            want = f"{{{kind[0]!r}, {kind[1]!r}}}" if kind else "{'question_id', 'answer'} or {'id', 'prediction'}"
            raise _fail(f"{path}: entry {n} is not {want}: {str(item)[:80]}")
        kind = found
        key, answer = str(item[found[0]]), item[found[1]]
        if not isinstance(answer, str):
            raise _fail(f"{path}: entry {n} ({found[0]} {key}): the answer must be a string, got {answer!r}")
        if key in out:
            raise _fail(f"{path}: {found[0]} {key} is answered twice")
        out[key] = answer
    if kind is None:
        raise _fail(f"{path} holds no predictions")
    return kind[0], out


def row_key(row: dict[str, Any], *, kind: str) -> str | None:
    """The key a predictions file of `kind` uses for this row (None: the row has no VQA question id)."""
    if kind == "id":
        return str(row["id"])
    question_id = (row_meta(row).get("context") or {}).get("question_id")
    return None if question_id is None else str(question_id)


def score_predictions(*, dataset: datasets.Dataset, path: Path) -> EvalResult:
    """Every row of `dataset` scored with its answer from `path` (see the module docstring)."""
    kind, answers = read_predictions(path)
    predictions: list[dict[str, Any]] = []
    missing: list[str] = []
    used: set[str] = set()
    for rows in row_batches(dataset.select_columns(["id", "task", "messages", "answers", "meta"]), batch_size=256):
        for row in rows:
            key = row_key(row, kind=kind)
            if key is None or key not in answers:
                missing.append(str(row["id"]) if key is None else key)
                continue
            used.add(key)
            predictions.append(record(row=row, prediction=answers[key]))
    unknown = [k for k in answers if k not in used]
    problems = []
    if missing:
        problems.append(Problem(WHERE, f"{len(missing)} row(s) have no answer in {path} (first: "
                                f"{', '.join(missing[:5])}); every row of the split needs one, keyed by {kind}"))
    if unknown:
        problems.append(Problem(WHERE, f"{len(unknown)} answer(s) in {path} match no row of the split (first: "
                                f"{', '.join(unknown[:5])}); is it the right split?"))
    if problems:
        raise ConfigError(problems, what="predictions")
    return EvalResult(predictions=predictions, metrics=summarise(predictions))
