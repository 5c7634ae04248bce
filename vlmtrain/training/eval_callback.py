"""Evaluation during training: every `eval.every` steps, generate on a few rows and log the scores.

Why a callback and not the Trainer's `eval_strategy`: the Trainer evaluates a teacher-forced loss;
we want generated answers scored with the VQA metric (`vlmtrain.evaluation.evaluate`), written to the same
`log.jsonl` as the losses (`{"step": N, "eval": {task: {rows, vqa_accuracy, exact_match}}}`).
Only the main process generates; the others wait at the next gradient all-reduce.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vlmtrain.evaluation.evaluate import evaluate


class EvalCallback(TrainerCallback):
    """Runs `vlmtrain.evaluation.evaluate.evaluate` on `dataset` every `every` optimizer steps (never at step 0)."""

    def __init__(
        self,
        *,
        dataset: Any,
        processor: Any,
        every: int,
        log_path: Path,
        limit: int | None,
        max_new_tokens: int,
        batch_size: int,
    ) -> None:
        self.dataset = dataset
        self.processor = processor
        self.every = every
        self.log_path = Path(log_path)
        self.limit = limit
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or state.global_step % self.every != 0 or model is None:
            return
        result = evaluate(
            model=model,
            processor=self.processor,
            dataset=self.dataset,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            limit=self.limit,
        )
        with self.log_path.open("a", encoding="utf-8") as f:
            line: dict[str, Any] = {"step": state.global_step, "eval": result.metrics}
            if result.rejected:  # rows that could not be asked (vlmtrain.evaluation.evaluate): counted, not scored
                line["eval_rejected"] = len(result.rejected)
            f.write(json.dumps(line) + "\n")
