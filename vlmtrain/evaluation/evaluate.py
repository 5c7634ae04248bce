"""Generation-based evaluation: greedy answers on a split, scored per task with the official VQA metric.

Why generation and not the validation loss: the loss of a teacher-forced answer says little about
what the model says when asked, and published VQA numbers are accuracies of generated answers. Each
row is asked what its last assistant turn answered (the conversation up to it, with its images);
the answer is scored against the row's *raw* human answers with `vlmdata.answers.vqa_accuracy` (the
official VQA procedure) and `exact_match`. Raw means as the annotators typed them: the official
script decides per question whether to normalise, from the raw answers, and normalises prediction
and references its own way, so scoring against answers a `normalize:` step already rewrote gives
other numbers (a prediction "two" against raw ["two", "2", ...] scores 1.0, against the rewritten
["2", "2", ...] 0.0). `normalize` keeps the raw answers in `meta["raw_answers"]` when it changes
them; `references` reads those first, then `answers`. Rows without answers (free text) are scored
against their own last assistant turn.

`predictions.jsonl` holds one line per row (id, task, prediction, answers, scores); `metrics.json`
the mean scores per task and overall (a mean over rows, so large tasks weigh more). A row that
cannot be asked at all (a broken image, image parts that do not match its images, no user turn
before an assistant turn: `vlmtrain.data.row_checks`) is not scored: it goes to `eval_rejected.jsonl`
with its id and reason, and the count is printed, so one bad row never ends an evaluation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmdata.answers import exact_match, vqa_accuracy
from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.data.collate import _to_pil
from vlmtrain.data.dataset import raw_batches
from vlmtrain.data.prompting import family_of_model, inference_autocast, prompt_inputs
from vlmtrain.data.row_checks import EMPTY_ANSWER, row_problem

if TYPE_CHECKING:  # pragma: no cover
    import datasets

METRICS = ("vqa_accuracy", "exact_match")


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """One record per evaluated row, and the mean scores per task plus 'overall'."""

    predictions: list[dict[str, Any]]
    metrics: dict[str, dict[str, float]]
    rejected: list[dict[str, Any]] = field(default_factory=list)  # rows that could not be asked: id, task, reason

    def write(self, *, out_dir: Path) -> None:
        """`predictions.jsonl`, `metrics.json` and `eval_rejected.jsonl` (empty: none) into `out_dir` (created if needed)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "eval_rejected.jsonl").open("w", encoding="utf-8") as f:
            for record in self.rejected:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for record in self.predictions:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        (out_dir / "metrics.json").write_text(json.dumps(self.metrics, indent=2) + "\n", encoding="utf-8")


def split_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(the turns before the last assistant turn, that turn's text): what to ask and what was answered."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise ValueError("a row to evaluate needs an assistant turn after a user turn")
    answer = "".join(p["text"] or "" for p in messages[last]["content"] if p["type"] == "text")
    return messages[:last], answer


def references(row: dict[str, Any]) -> list[str]:
    """What a row's prediction is scored against: raw human answers, else `answers`, else the last assistant turn.

    The one place that decides it, for `vlmtrain eval`, evaluation during training, continual
    scoring and `vlmtrain score`.
    """
    raw = row_meta(row).get("raw_answers")
    if isinstance(raw, list) and raw:
        return [str(a) for a in raw]
    return [str(a) for a in row.get("answers") or []] or [split_prompt(row["messages"])[1]]


def row_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The row's `meta` column as a dict ({} when absent or not a JSON object)."""
    meta = row.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            return {}
    return meta if isinstance(meta, dict) else {}


def record(*, row: dict[str, Any], prediction: str) -> dict[str, Any]:
    """One `predictions.jsonl` line: the row's id, task, VQA question id (when known), prediction, references, scores."""
    refs = references(row)
    out: dict[str, Any] = {"id": row["id"], "task": row["task"]}
    question_id = (row_meta(row).get("context") or {}).get("question_id")
    if question_id is not None:
        out["question_id"] = question_id
    return {**out, "prediction": prediction, "answers": refs, "scores": score(prediction=prediction, references=refs)}


def score(*, prediction: str, references: list[str]) -> dict[str, float]:
    """Both metrics of one prediction against its reference answers."""
    return {"vqa_accuracy": vqa_accuracy(prediction, references), "exact_match": exact_match(prediction, references)}


def summarise(predictions: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of each metric per task and overall, with the row count (`rows`)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in predictions:
        groups[record["task"]].append(record)
        groups["overall"].append(record)
    return {
        task: {"rows": float(len(recs)), **{m: sum(r["scores"][m] for r in recs) / len(recs) for m in METRICS}}
        for task, recs in sorted(groups.items())
    }


def generate_answers(*, model: Any, processor: Any, rows: list[dict[str, Any]], max_new_tokens: int) -> list[str]:
    """Greedy answers for a batch of rows (left-padded so every prompt ends where generation starts)."""
    import torch

    prompts = [split_prompt(row["messages"])[0] for row in rows]
    images = [[_to_pil(image) for image in row["images"]] for row in rows]  # per row (see batch_images)
    inputs = prompt_inputs(processor=processor, family=family_of_model(model), prompts=prompts, images=images)
    param = next(model.parameters())
    inputs = inputs.to(device=param.device, dtype=param.dtype)  # dtype applies to floating tensors only
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad(), inference_autocast(model):
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    new = out[:, inputs["input_ids"].shape[1] :]
    return [processor.decode(ids, skip_special_tokens=True).strip() for ids in new.tolist()]


def evaluate(
    *,
    model: Any,
    processor: Any,
    dataset: datasets.Dataset,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    limit: int | None = None,
) -> EvalResult:
    """Generate for the first `limit` rows (all by default) in dataset order and score each per task.

    The model is put in eval mode for the duration and returned to its previous mode, so the same
    function serves `vlmtrain eval` and evaluation during training.
    """
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    was_training = model.training
    model.eval()
    predictions: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    try:
        for batch in raw_batches(dataset, batch_size=batch_size):  # images undecoded: a broken one is a reject
            rows = []
            for row in batch:
                problem = eval_problem(row)
                if problem is None:
                    rows.append(row)
                else:
                    rejected.append({"id": row["id"], "task": row["task"], "reason": problem[0], "detail": problem[1]})
            if rows:
                answers = generate_answers(model=model, processor=processor, rows=rows, max_new_tokens=max_new_tokens)
                predictions.extend(record(row=row, prediction=p) for row, p in zip(rows, answers, strict=True))
    finally:
        model.train(was_training)
    if not predictions:
        reasons = ", ".join(sorted({r["reason"] for r in rejected}))
        raise ConfigError([Problem("data", f"none of the {len(rejected)} rows can be asked ({reasons}); "
                                   f"first: {rejected[0]['id']}: {rejected[0]['detail']}")], what="evaluation data")
    return EvalResult(predictions=predictions, metrics=summarise(predictions), rejected=rejected)


def eval_problem(row: dict[str, Any]) -> tuple[str, str] | None:
    """Why a row cannot be asked (see `vlmtrain.data.row_checks`), or None; an empty last answer is fine when the
    row has reference answers to score against."""
    problem = row_problem(row)
    if problem is not None and problem[0] == EMPTY_ANSWER and (row.get("answers") or row_meta(row).get("raw_answers")):
        return None
    return problem
