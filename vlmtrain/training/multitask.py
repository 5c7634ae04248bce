"""`MultitaskTrainer`: per-task losses, task sampling by temperature, loss weighting, continual hooks.

Why a subclass of the project's Trainer (and not a new loop): accelerate, checkpoints, resume and the
per-component optimizer groups stay exactly as in a plain run. Three documented hooks change:
- `_get_train_sampler`: the `TaskSampler` (`vlmtrain.data.sampler`) over the `task` column, re-drawn every
  epoch, seeded by `seed`;
- `compute_loss`: one forward pass without labels → logits (B, L, V); `per_task_losses` gives one
  cross-entropy per task in the batch; they combine as `multitask.loss.weighting` says (a mean over
  the tasks present), and a continual `Strategy` adds its `extra_loss` (EWC penalty, LwF KL);
- `create_optimizer`: the uncertainty weights s_t get their own parameter group with weight_decay 0.
Each log line carries `loss/<task>` (the mean since the last log), `log_var/<task>` and
`weight/<task>` with uncertainty weighting, and `loss/extra` with a strategy's term.

Resume: `MultitaskState` writes `multitask_state.pt` (the sampler's consumed position and the s_t
values) into every checkpoint; `_load_from_checkpoint` reads it back, and the Trainer's own batch
skipping is off (`ignore_data_skip`) because the sampler resumes at its position itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.multitask import MultitaskSection
from vlmtrain.config.train import TrainConfig
from vlmtrain.continual.strategy import Strategy
from vlmtrain.data.packing import PackedCollator, packed_task_losses
from vlmtrain.data.sampler import TaskSampler
from vlmtrain.training.losses import UncertaintyWeighting, per_task_losses, static_weighting
from vlmtrain.training.trainer import JsonlLogger, VlmTrainer, training_arguments

STATE_FILE = "multitask_state.pt"


class MultitaskTrainer(VlmTrainer):
    """The project's Trainer with per-task losses; `tasks` are every task name the run can meet."""

    def __init__(self, *, multitask: MultitaskSection, tasks: Sequence[str], strategy: Strategy | None,
                 model: Any, args: TrainingArguments, train_dataset: Any, data_collator: Any,
                 processing_class: Any, callbacks: list[TrainerCallback],
                 param_groups: list[dict[str, Any]] | None = None) -> None:
        super().__init__(lengths=None, model=model, args=args, train_dataset=train_dataset,
                         data_collator=data_collator, processing_class=processing_class, callbacks=callbacks,
                         param_groups=param_groups)
        self.multitask = multitask
        self.strategy = strategy
        self.loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by grad_accum

        # packed: the packs were drawn from the TaskSampler's stream (vlmtrain.data.packing.build_packs); the
        # stock sampler orders them and the Trainer's own batch skipping resumes them
        self.packed = isinstance(data_collator, PackedCollator)
        self.args.ignore_data_skip = not self.packed  # else the sampler resumes at its own position (module doc)
        loss = multitask.loss
        self.weighting = None
        if loss.weighting == "uncertainty":
            self.weighting = UncertaintyWeighting(tasks=sorted(set(tasks)), min_log_var=loss.clamp[0],
                                                  max_log_var=loss.clamp[1]).to(self.args.device)
        self.task_sampler: TaskSampler | None = None
        self.consumed = {"epoch": 0, "position": 0}  # rows the optimizer has seen, in sampler terms
        self._pending: dict[str, Any] | None = None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.add_callback(MultitaskState(trainer=self))

    # ---- data order -------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.packed:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampling = self.multitask.sampling
        sources = list(dataset["source"]) if sampling.group_by == "source_task" else None
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        self.task_sampler = TaskSampler(
            tasks=list(dataset["task"]), sources=sources, num_samples=sampling.num_samples,
            temperature=sampling.temperature, weights=sampling.weights, caps=sampling.caps,
            batch_size=self.args.per_device_train_batch_size if sampling.homogeneous_batches else None, seed=seed,
        )
        if self._pending is not None:
            self.task_sampler.load_state_dict(self._pending)
            self.consumed = dict(self._pending)
            self._pending = None
        return self.task_sampler

    def _advance(self, rows: int) -> None:
        if self.task_sampler is None:
            return
        self.consumed["position"] += rows * self.args.world_size
        if self.consumed["position"] >= len(self.task_sampler):
            self.consumed = {"epoch": self.consumed["epoch"] + 1, "position": 0}

    # ---- loss -------------------------------------------------------------------------------
    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's loss from per-task losses (each a scalar): a mean over the tasks present."""
        loss = self.multitask.loss
        if loss.weighting == "uncertainty":
            assert self.weighting is not None
            return self.weighting(losses) / len(losses)
        if loss.weighting == "static":
            return static_weighting(losses=losses, weights=loss.weights) / len(losses)
        return torch.stack(list(losses.values())).mean()

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        tasks = inputs.pop("tasks")
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        if self.packed:  # reduced per original row, not per packed sequence

            losses = packed_task_losses(logits=outputs.logits, labels=labels, position_ids=inputs["position_ids"],
                                        tasks=tasks, reduction=self.multitask.loss.reduction)
        else:
            losses = per_task_losses(logits=outputs.logits, labels=labels, tasks=tasks,
                                     reduction=self.multitask.loss.reduction)
        total = self.combine(losses) if losses else outputs.logits.sum() * 0.0
        if self.strategy is not None:
            extra = self.strategy.extra_loss(model=self.accelerator.unwrap_model(model), batch=inputs, outputs=outputs)
            if extra is not None:
                total = total + extra
                self._record("extra", float(extra.detach()))
        if model.training:
            for task, value in losses.items():
                self._record(task, float(value.detach()))
            self._advance(len(tasks))
        return (total, outputs) if return_outputs else total

    def _record(self, key: str, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value
        self._counts[key] = self._counts.get(key, 0) + 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update({f"loss/{k}": s / self._counts[k] for k, s in sorted(self._sums.items())})
            self._sums, self._counts = {}, {}
            if self.weighting is not None:
                logs.update(self.weighting.log_values())
        super().log(logs, start_time)

    # ---- optimizer and resume ---------------------------------------------------------------
    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """The parent's groups, plus s_t alone in a group with weight_decay 0 (decay would pull σ_t to 1)."""
        optimizer = super().create_optimizer(model)
        if self.weighting is not None:
            ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
            params = [p for p in self.weighting.parameters() if id(p) not in ids]
            if params:
                lr = self.multitask.loss.lr or self.args.learning_rate
                optimizer.add_param_group({"params": params, "weight_decay": 0.0, "lr": lr})
        return optimizer

    def multitask_state(self) -> dict[str, Any]:
        """What a checkpoint needs besides the Trainer's own files."""
        weighting = None if self.weighting is None else self.weighting.log_vars.detach().cpu().clone()
        return {"sampler": dict(self.consumed), "log_vars": weighting}

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / STATE_FILE
        if not path.is_file():
            return
        state = torch.load(path, weights_only=True)
        self._pending = state["sampler"]
        if self.weighting is not None and state["log_vars"] is not None:
            with torch.no_grad():  # in place: the optimizer already holds this tensor
                self.weighting.log_vars.copy_(state["log_vars"])


class MultitaskState(TrainerCallback):
    """Writes the trainer's `multitask_state()` into each `checkpoint-N` folder, next to the Trainer's files,
    and clears the s_t gradients after each optimizer step (the Trainer zeroes only the model's)."""

    def __init__(self, *, trainer: MultitaskTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer.weighting is not None:
            self.trainer.weighting.zero_grad(set_to_none=True)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                torch.save(self.trainer.multitask_state(), folder / STATE_FILE)


def check_task_names(*, multitask: MultitaskSection, groups: Sequence[str], tasks: Sequence[str]) -> None:
    """A ConfigError naming the YAML key when weights or caps name a task (or group) the data lacks."""
    sampling, loss = multitask.sampling, multitask.loss
    checks = (("sampling.weights", sampling.weights, groups), ("sampling.caps", sampling.caps, groups),
              ("loss.weights", loss.weights, tasks))
    problems = [
        Problem(f"multitask.{where}", f"names {unknown} that the data lacks (has: {sorted(set(known))})")
        for where, names, known in checks
        if (unknown := sorted(set(names) - set(known)))
    ]
    if problems:
        raise ConfigError(problems, what="training config")


def build_multitask_trainer(
    *, config: TrainConfig, model: Any, processor: Any, dataset: Any, collator: Any, log_path: Path,
    lengths: Sequence[int] | None = None, extra_callbacks: Sequence[TrainerCallback] = (),
    param_groups: list[dict[str, Any]] | None = None, strategy: Strategy | None = None,
    tasks: Sequence[str] | None = None,
) -> MultitaskTrainer:
    """`build_trainer`'s twin for runs with `multitask:` (or `continual:`); `lengths` are unused (the
    TaskSampler orders the data). `tasks` (default: the dataset's) are the uncertainty weights' tasks."""
    multitask = config.multitask or MultitaskSection()
    sampling = multitask.sampling
    dataset_tasks = list(dataset["task"])
    groups = dataset_tasks if sampling.group_by == "task" else [
        f"{s}/{t}" for s, t in zip(dataset["source"], dataset_tasks, strict=True)]
    check_task_names(multitask=multitask, groups=groups, tasks=dataset_tasks)
    return MultitaskTrainer(
        multitask=multitask, tasks=list(tasks) if tasks is not None else dataset_tasks, strategy=strategy,
        model=model, args=training_arguments(config=config), train_dataset=dataset,
        data_collator=dataclasses.replace(collator, carry_tasks=True), processing_class=processor,
        callbacks=[JsonlLogger(path=log_path), *extra_callbacks], param_groups=param_groups,
    )
