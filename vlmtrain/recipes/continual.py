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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmdata.config.errors import ConfigError, Problem
from vlmdata.schema import COLUMNS
from vlmtrain.config.multitask import ContinualSection
from vlmtrain.config.train import OutputSection, TrainConfig, config_to_yaml
from vlmtrain.continual.ewc import EWCStrategy
from vlmtrain.continual.lwf import LwFStrategy
from vlmtrain.continual.metrics import summary
from vlmtrain.continual.replay import ReplayBuffer, ReplayStrategy
from vlmtrain.continual.strategy import Combined, Strategy


@dataclass(kw_only=True)
class Stage:
    """One stage: its name, its rows in the training table, its evaluation rows, whether it trains."""

    name: str
    rows: list[int]
    eval: Any  # a datasets.Dataset
    train: bool


def build_strategy(*, continual: ContinualSection, seed: int) -> Strategy:
    """The configured strategy; several (e.g. [replay, lwf]) combine in the order given."""
    made: list[Strategy] = []
    for name in continual.strategies:
        if name == "replay":
            r = continual.replay
            made.append(ReplayStrategy(buffer=ReplayBuffer(mode=r.mode, size=r.size, ratio=r.ratio, seed=seed)))
        elif name == "ewc":
            e = continual.ewc
            made.append(EWCStrategy(lam=e.lambda_, gamma=e.gamma, num_samples=e.num_samples))
        elif name == "lwf":
            w = continual.lwf
            made.append(LwFStrategy(alpha=w.alpha, temperature=w.temperature, teacher=w.teacher))
    return made[0] if len(made) == 1 else Combined(made)


def _select(dataset: Any, *, tasks: list[str] | None, limit: int | None) -> Any:
    keep = [i for i, t in enumerate(dataset["task"]) if tasks is None or t in tasks]
    return dataset.select(keep[:limit] if limit is not None else keep)


def open_stages(*, config: TrainConfig) -> tuple[Any, list[Stage]]:
    """(the training table: every stage's rows, one Dataset; the stages, rows indexing that table)."""
    import datasets

    from vlmtrain.data.dataset import open_sources, open_split

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
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(run_dir / "adapter_model.safetensors")))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ConfigError([Problem("continual.init_from", f"adapter of {run_dir} does not fit this model's LoRA "
                                   f"(unexpected {unexpected[:3]}); use the same lora: settings")], what="continual")


def score_stage(*, model: Any, processor: Any, dataset: Any, continual: ContinualSection) -> dict[str, Any]:
    """Greedy answers on a stage's eval rows; `metrics` per task and overall (see `vlmtrain.evaluation.evaluate`)."""
    from vlmtrain.evaluation.evaluate import evaluate

    ev = continual.eval
    result = evaluate(model=model, processor=processor, dataset=dataset, max_new_tokens=ev.max_new_tokens,
                      batch_size=ev.batch_size)
    return result.metrics


def run_continual(*, config: TrainConfig, echo: Callable[[str], None] = print) -> Path:
    """Train the sequence, write continual.json and the final adapter; returns the run folder."""
    import torch
    from transformers import set_seed

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.models.build import build_model
    from vlmtrain.models.families import family_of
    from vlmtrain.models.load import load_processor, model_type
    from vlmtrain.models.weights import save_trained, write_chain
    from vlmtrain.training.callbacks import eval_callbacks, tracker_callbacks
    from vlmtrain.training.distributed import is_main_process, wait_for_everyone
    from vlmtrain.training.multitask import build_multitask_trainer

    continual = config.continual
    assert continual is not None
    set_seed(config.seed)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # under torchrun every rank trains and scores; only rank 0 writes files
    if main:
        (run_dir / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
    table, stages = open_stages(config=config)
    processor = load_processor(model=config.model)
    collator = ChatCollator(processor=processor, max_length=config.data.max_length,
                            family=family_of(model_type(model=config.model)))
    from vlmtrain.models.preflight import check_targets

    check_targets(config)  # LoRA target typos, before any weight is read
    stages = _drop_rejected(table=table, stages=stages, collator=collator, run_dir=run_dir, main=main, echo=echo)
    built = build_model(config=config)
    model = built.model
    if config.train.packing:  # the same per-family packed positions, masks and per-row attention as a plain run
        from vlmtrain.data.packing import attach_packed_mrope
        from vlmtrain.models.packed_attention import use_packed_attention
        from vlmtrain.models.packing_masks import attach_packed_block_masks

        attach_packed_mrope(model)
        attach_packed_block_masks(model)
        use_packed_attention(model)
    if continual.init_from is not None:
        load_adapter(model=model, run_dir=continual.init_from)
        echo(f"continual: starting from the adapter of {continual.init_from}")
    if "lwf" in continual.strategies and continual.lwf.teacher == "base" and not hasattr(model, "disable_adapter"):
        raise ConfigError([Problem("continual.lwf.teacher", "teacher 'base' needs a LoRA adapter to disable "
                                   "(method lora or qlora); use teacher: snapshot")], what="continual")
    strategy = build_strategy(continual=continual, seed=config.seed)
    task_rows = [s.rows for s in stages]
    all_tasks = sorted(set(table["task"]))
    matrix: list[list[float]] = []
    evals: list[list[dict[str, Any]]] = []
    for k, stage in enumerate(stages):
        strategy.before_task(task_index=k, model=model, task_rows=task_rows)
        if stage.train:
            rows = stage.rows + strategy.extra_rows(task_index=k)
            folder = run_dir / "tasks" / f"{k}-{stage.name}"
            folder.mkdir(parents=True, exist_ok=True)
            if main:
                (folder / "log.jsonl").write_text("", encoding="utf-8")
            stage_config = config.model_copy(update={"output": OutputSection(dir=folder), "seed": config.seed + k})
            echo(f"continual: stage {k} '{stage.name}': {len(stage.rows)} rows + {len(rows) - len(stage.rows)} replayed")
            stage_data, stage_collator = _stage_data(config=stage_config, rows=table.select(rows), collator=collator,
                                                     folder=folder, main=main, echo=echo)
            trainer = build_multitask_trainer(
                config=stage_config, model=model, processor=processor, dataset=stage_data,
                collator=stage_collator, log_path=folder / "log.jsonl", param_groups=built.groups, strategy=strategy,
                tasks=all_tasks,
                extra_callbacks=[*eval_callbacks(config=config, processor=processor, log_path=folder / "log.jsonl"),
                                 *tracker_callbacks(config=config, folder=folder)],
            )
            trainer.train()
            trainer.require_finite_weights()  # never score or save inf/NaN weights (vlmtrain.training.finite_guard)
        order = np.random.default_rng([config.seed, k]).permutation(len(stage.rows))
        loader = torch.utils.data.DataLoader(table.select([stage.rows[i] for i in order]), batch_size=1,
                                             collate_fn=collator)
        strategy.after_task(task_index=k, model=model, dataloader=loader)
        metrics = [score_stage(model=model, processor=processor, dataset=s.eval, continual=continual) for s in stages]
        matrix.append([m["overall"][continual.eval.metric] for m in metrics])
        evals.append(metrics)
        echo(f"continual: after '{stage.name}': " + "  ".join(f"{s.name} {v:.3f}" for s, v in zip(stages, matrix[-1],
                                                                                               strict=True)))
        if main:
            _write(run_dir=run_dir, continual=continual, stages=stages, matrix=matrix, evals=evals)
    if main:
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(run_dir))
        save_trained(model=model, folder=run_dir)
        write_chain(folder=run_dir, chain=[])
        processor.save_pretrained(str(run_dir))
        echo(f"wrote continual.json, the adapter and the processor to {run_dir}")
    wait_for_everyone()  # no rank returns before rank 0 has saved
    return run_dir


def _stage_data(*, config: TrainConfig, rows: Any, collator: Any, folder: Path, main: bool,
                echo: Callable[[str], None]) -> tuple[Any, Any]:
    """A stage's training rows and collator: as they are, or packed with `train.packing` (the stage's rows,
    replayed ones included, in packs of `data.max_length`; its packing.json in the stage folder)."""
    if not config.train.packing:
        return rows, collator
    import json

    from vlmtrain.data.diagnostics import diagnose
    from vlmtrain.data.packing import PackedCollator, build_packs

    lengths = [min(n, config.data.max_length) for n in diagnose(dataset=rows, collator=collator).lengths]
    packs, report = build_packs(config=config, rows=rows, lengths=lengths)
    echo(f"continual: {report.text()}")
    if main:
        (folder / "packing.json").write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")
    return packs, PackedCollator(inner=collator)


def _drop_rejected(*, table: Any, stages: list[Stage], collator: Any, run_dir: Path, main: bool,
                   echo: Callable[[str], None]) -> list[Stage]:
    """The stages without the training rows that cannot train (as `FinetuneRecipe` judges them)."""
    from vlmtrain.data.diagnostics import diagnose

    diagnostics = diagnose(dataset=table, collator=collator)
    echo(diagnostics.table())
    if main:
        diagnostics.write_rejected(path=run_dir / "rejected_rows.jsonl")
    rejected = diagnostics.counts()
    if not rejected:
        return stages
    what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
    echo(f"rejected {sum(rejected.values())} of {len(table)} rows at data.max_length={collator.max_length} "
         f"({what}); listed in {run_dir / 'rejected_rows.jsonl'}")
    kept = set(diagnostics.kept)
    out = [Stage(name=s.name, rows=[r for r in s.rows if r in kept], eval=s.eval, train=s.train) for s in stages]
    empty = [Problem(f"continual.sequence[{i}]", f"stage '{s.name}' has no training row left after the rejects "
                     f"({what}); see {run_dir / 'rejected_rows.jsonl'}") for i, s in enumerate(out) if s.train and not s.rows]
    if empty:
        raise ConfigError(empty, what="continual data")
    return out


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
