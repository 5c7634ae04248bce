"""The continual recipe: train the stages of `continual.sequence` one after another, score after each.

Read it top to bottom: open every stage's rows as one table (replay stores indices into it), build
the model once (optionally starting from `init_from`'s adapter), then per stage k:

    strategy.before_task → train on stage k's rows + the strategy's extra rows (a MultitaskTrainer,
    which adds strategy.extra_loss to every step) → strategy.after_task (Fisher, snapshot) →
    evaluate on every stage's eval rows → row k of the accuracy matrix R

Every stage is scored after every stage (seen or not), so R is full: the lower triangle and the
diagonal give average accuracy, BWT and forgetting (`vlmtrain.continual.metrics`); the upper triangle
shows what a stage knew before it was trained. Scores are greedy answers (`continual.eval`) against
the rows' reference answers, with `vqa_accuracy` or `exact_match`.

Writes to runs/NAME/: config.yaml, continual.json (stages, matrix, summary, per-stage eval metrics),
tasks/K-STAGE/log.jsonl (each stage's training log), and the final adapter + processor.
Rows are checked as in `FinetuneRecipe` before the model loads (`vlmtrain.data.diagnostics`): the length
table is printed, rows that cannot train are listed in rejected_rows.jsonl and left out of every
stage (and so of replay). `eval:` (scores every N steps, into the stage's log.jsonl) and
`train.report_to` (tasks/K-STAGE/tensorboard) work as in a single run (`vlmtrain.training.callbacks`);
`train.group_by_length` is refused at validation (the task sampler orders the data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from vlmdata.config.errors import ConfigError, Problem
from vlmdata.schema import COLUMNS
from vlmtrain.config.multitask import ContinualSection
from vlmtrain.config.train import OutputSection, TrainConfig
from vlmtrain.continual.metrics import summary
from vlmtrain.continual.registry import build_strategy
from vlmtrain.data.dataset import open_sources, open_split
from vlmtrain.data.diagnostics import diagnose
from vlmtrain.evaluation.evaluate import evaluate
from vlmtrain.models.preflight import check_targets
from vlmtrain.recipes.finetune import FinetuneRecipe
from vlmtrain.training.multitask import build_multitask_trainer


@dataclass(kw_only=True)
class Stage:
    """One stage: its name, its rows in the training table, its evaluation rows, whether it trains."""

    name: str
    rows: list[int]
    eval: Any  # a datasets.Dataset
    train: bool


def _select(dataset: Any, *, tasks: list[str] | None, limit: int | None) -> Any:
    keep = [i for i, t in enumerate(dataset["task"]) if tasks is None or t in tasks]
    return dataset.select(keep[:limit] if limit is not None else keep)


def open_stages(*, config: TrainConfig) -> tuple[Any, list[Stage]]:
    """(the training table: every stage's rows, one Dataset; the stages, rows indexing that table)."""
    continual = config.continual
    assert continual is not None
    ev = continual.eval
    parts, stages, problems = [], [], []
    needs_base = any(s.tasks is not None for s in continual.sequence)
    base = open_sources(data=config.data, seed=config.seed) if needs_base else None
    if base is not None:
        parts.append(base)
        base_eval = datasets.concatenate_datasets(
            [open_split(path=s.path, split=ev.split).select_columns(list(COLUMNS)) for s in config.data.all_sources])
        base_tasks = list(base["task"])
    offset = len(base) if base is not None else 0
    for i, spec in enumerate(continual.sequence):
        if spec.tasks is not None:
            rows = [r for r, t in enumerate(base_tasks) if t in spec.tasks]
            evaluation = _select(base_eval, tasks=spec.tasks, limit=ev.limit)
        else:
            assert spec.data is not None
            part = open_split(path=spec.data, split=spec.split).select_columns(list(COLUMNS))
            if parts and part.features != parts[0].features:
                part = part.cast(parts[0].features)
            rows = list(range(offset, offset + len(part)))
            parts.append(part)
            offset += len(part)
            evaluation = _select(open_split(path=spec.data, split=spec.eval_split), tasks=None, limit=ev.limit)
        if not rows or len(evaluation) == 0:
            problems.append(Problem(f"continual.sequence[{i}]", f"stage '{spec.name}' has {len(rows)} training "
                                    f"and {len(evaluation)} evaluation rows; it needs both"))
        stages.append(Stage(name=spec.name, rows=rows, eval=evaluation, train=spec.train))
    if problems:
        raise ConfigError(problems, what="continual data")
    table = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return table, stages


def load_adapter(*, model: Any, run_dir: Path) -> None:
    """Start from a previous run's LoRA weights (same base model and LoRA settings)."""
    result = set_peft_model_state_dict(model, load_file(str(run_dir / "adapter_model.safetensors")))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ConfigError([Problem("continual.init_from", f"adapter of {run_dir} does not fit this model's LoRA "
                                   f"(unexpected {unexpected[:3]}); use the same lora: settings")], what="continual")


def score_stage(*, model: Any, processor: Any, dataset: Any, continual: ContinualSection) -> dict[str, Any]:
    """Greedy answers on a stage's eval rows; `metrics` per task and overall (see `vlmtrain.evaluation.evaluate`)."""
    ev = continual.eval
    result = evaluate(model=model, processor=processor, dataset=dataset, max_new_tokens=ev.max_new_tokens,
                      batch_size=ev.batch_size)
    return result.metrics


class ContinualRecipe(FinetuneRecipe):
    """The single-run recipe's checks, folder, processor, row checks, model, callbacks and save, around a
    loop over the stages of `continual.sequence` (one MultitaskTrainer per stage, one model throughout)."""

    # ---- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Check, open the folder, processor, every stage's rows (rejects left out), model, strategy."""
        continual = self.config.continual
        assert continual is not None, "ContinualRecipe needs a config with continual:"
        self.continual = continual
        self.check()
        self.open_folder(log=False)  # each stage logs to tasks/K-STAGE/log.jsonl
        self.processor, self.collator = self.load_chat()
        self.table, self.stages = open_stages(config=self.config)
        check_targets(self.config)  # LoRA target typos, before any weight is read
        self.stages = self.drop_rejected()
        self.built = self.load_model()
        self.model = self.built.model
        self.start_from()
        self.strategy = build_strategy(continual=continual, seed=self.config.seed)
        self.trainer: Any = None  # the latest stage's Trainer
        self.matrix: list[list[float]] = []
        self.evals: list[list[dict[str, Any]]] = []

    def drop_rejected(self) -> list[Stage]:
        """The stages without the training rows that cannot train (as `FinetuneRecipe.diagnose` judges them)."""
        diagnostics = self.diagnose(self.table)
        if not diagnostics.counts():
            return self.stages
        kept = set(diagnostics.kept)
        out = [Stage(name=s.name, rows=[r for r in s.rows if r in kept], eval=s.eval, train=s.train)
               for s in self.stages]
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(diagnostics.counts().items()))
        empty = [Problem(f"continual.sequence[{i}]", f"stage '{s.name}' has no training row left after the rejects "
                         f"({what}); see {self.run_dir / 'rejected_rows.jsonl'}")
                 for i, s in enumerate(out) if s.train and not s.rows]
        if empty:
            raise ConfigError(empty, what="continual data")
        return out

    def start_from(self) -> None:
        """`continual.init_from`'s adapter; LwF's `teacher: base` refused without an adapter to disable."""
        continual = self.continual
        if continual.init_from is not None:
            load_adapter(model=self.model, run_dir=continual.init_from)
            self.echo(f"continual: starting from the adapter of {continual.init_from}")
        if "lwf" in continual.strategies and continual.lwf.teacher == "base" and not hasattr(self.model,
                                                                                          "disable_adapter"):
            raise ConfigError([Problem("continual.lwf.teacher", "teacher 'base' needs a LoRA adapter to disable "
                                       "(method lora or qlora); use teacher: snapshot")], what="continual")

    # ---- train ----------------------------------------------------------------------------------
    def train(self) -> Path:
        """Per stage: the strategy's hooks around its training, then every stage scored (row k of R); then `save`."""
        task_rows = [s.rows for s in self.stages]
        for k, stage in enumerate(self.stages):
            self.strategy.before_task(task_index=k, model=self.model, task_rows=task_rows)
            if stage.train:
                self.train_stage(k=k, stage=stage)
            self.strategy.after_task(task_index=k, model=self.model, dataloader=self.stage_loader(k=k, stage=stage))
            self.score(stage=stage)
        self.save()
        return self.run_dir

    def train_stage(self, *, k: int, stage: Stage) -> None:
        """Stage k's rows plus the strategy's extra rows, in tasks/K-STAGE/ (its log, its tensorboard)."""
        cfg = self.config
        rows = stage.rows + self.strategy.extra_rows(task_index=k)
        folder = self.run_dir / "tasks" / f"{k}-{stage.name}"
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "log.jsonl"
        if self.main:
            log_path.write_text("", encoding="utf-8")
        stage_config = cfg.model_copy(update={"output": OutputSection(dir=folder), "seed": cfg.seed + k})
        self.echo(f"continual: stage {k} '{stage.name}': {len(stage.rows)} rows + {len(rows) - len(stage.rows)} "
                  "replayed")
        data = self.table.select(rows)
        lengths: list[int] = []
        if cfg.train.packing:
            lengths = [min(n, cfg.data.max_length) for n in diagnose(dataset=data, collator=self.collator).lengths]
        data, collator = self.packed(dataset=data, lengths=lengths, folder=folder, prefix="continual: ")  # replayed rows packed too
        self.trainer = build_multitask_trainer(
            config=stage_config, model=self.model, processor=self.processor, dataset=data,
            collator=collator, log_path=log_path, param_groups=self.built.groups, strategy=self.strategy,
            tasks=sorted(set(self.table["task"])), extra_callbacks=self.callbacks(folder=folder, log_path=log_path),
        )
        self.trainer.train()
        self.trainer.require_finite_weights()  # never score or save inf/NaN weights (vlmtrain.training.finite_guard)

    def stage_loader(self, *, k: int, stage: Stage) -> Any:
        """Stage k's training rows one at a time, in a seeded order: what `after_task` (Fisher) reads."""
        order = np.random.default_rng([self.config.seed, k]).permutation(len(stage.rows))
        return torch.utils.data.DataLoader(self.table.select([stage.rows[i] for i in order]), batch_size=1,
                                           collate_fn=self.collator)

    def score(self, *, stage: Stage) -> None:
        """Every stage's eval rows after training `stage`: one more row of the matrix, continual.json rewritten."""
        continual = self.continual
        metrics = [score_stage(model=self.model, processor=self.processor, dataset=s.eval, continual=continual)
                   for s in self.stages]
        self.matrix.append([m["overall"][continual.eval.metric] for m in metrics])
        self.evals.append(metrics)
        self.echo(f"continual: after '{stage.name}': " + "  ".join(
            f"{s.name} {v:.3f}" for s, v in zip(self.stages, self.matrix[-1], strict=True)))
        if self.main:
            _write(run_dir=self.run_dir, continual=continual, stages=self.stages, matrix=self.matrix,
                   evals=self.evals)

    # `save` and `cleanup` are FinetuneRecipe's: adapter, trained components, processor, losses.png.


def _write(*, run_dir: Path, continual: ContinualSection, stages: list[Stage], matrix: list[list[float]],
           evals: list[list[dict[str, Any]]]) -> None:
    """continual.json; the summary (average accuracy, BWT, forgetting) once every stage has been trained."""
    record: dict[str, Any] = {
        "stages": [s.name for s in stages], "metric": continual.eval.metric,
        "strategy": continual.strategies or ["naive"], "matrix": matrix,
    }
    if len(matrix) == len(stages):
        record.update(summary(matrix))
    record["evals"] = evals
    (run_dir / "continual.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
