"""The engine: a plain `transformers.Trainer`, configured from `TrainConfig`, plus a JSONL loss log.

Why the stock Trainer: accelerate underneath means `accelerate launch` / `torchrun`, DDP, FSDP,
DeepSpeed, mixed precision and checkpointing work unchanged later; our own logic stays in the
collator and the config. This module imports transformers at the top; only the recipe imports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from vlmtrain.config.distributed import trainer_arguments
from vlmtrain.config.train import TrainConfig
from vlmtrain.data.sampler_length import LengthGroupedSampler
from vlmtrain.models.weights import load_trained, save_trained, save_trained_state
from vlmtrain.training.finite_guard import NonFiniteError, finite, first_nonfinite_weight, json_number


class JsonlLogger(TrainerCallback):
    """Appends one JSON line per logged training step to `path`: step, loss, lr, grad_norm, epoch.

    Why: a file that scripts, tests and plots read without a tracking server (`report_to` is empty).
    Only the main process writes.
    """

    def __init__(self, *, path: Path) -> None:
        self.path = Path(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        record = {
            "step": state.global_step,
            "loss": json_number(logs["loss"]),
            "lr": json_number(logs.get("learning_rate", 0.0)),
            "grad_norm": json_number(logs.get("grad_norm")),
            "epoch": logs.get("epoch"),
        }
        # per-task and per-group values (`loss/<task>`, `weight/<task>`, ...) from trainer subclasses
        record.update({k: json_number(v) for k, v in logs.items() if "/" in k and isinstance(v, int | float)})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")  # non-finite values are null (finite_guard)


def _checkpointing(*, enabled: bool) -> dict[str, Any]:
    """Activation checkpointing arguments, named for the installed transformers (renamed in v5.x)."""
    if not enabled:
        return {}
    names = TrainingArguments.__dataclass_fields__
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: True, f"{key}_kwargs": {"use_reentrant": False}}


def mixed_precision(*, precision: str, cpu: bool) -> bool:
    """Whether the run computes under bf16/fp16 autocast (what `precision` resolves to on this machine)."""
    flags = _precision(precision=precision, cpu=cpu)
    return flags["bf16"] or flags["fp16"]


def _precision(*, precision: str, cpu: bool) -> dict[str, bool]:
    """bf16/fp16 mixed precision flags: `auto` picks bf16 on a GPU that has it, fp16 on other GPUs, fp32 on CPU."""
    gpu = torch.cuda.is_available() and not cpu
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(*, config: TrainConfig, layer_classes: Sequence[str] = ()) -> TrainingArguments:
    """TrainingArguments from the `train` section: no hub, no trackers, all columns kept for the collator.

    `layer_classes` (the model's decoder-layer class names) are what FSDP wraps (`distributed: fsdp`).
    """
    train = config.train
    precision = _precision(precision=train.precision, cpu=train.device == "cpu")
    sharding = trainer_arguments(section=config.distributed, layer_classes=list(layer_classes))
    return TrainingArguments(
        output_dir=str(config.run_dir),  # checkpoints (if any) land in runs/NAME/checkpoint-N
        max_steps=train.steps if train.steps is not None else -1,
        num_train_epochs=train.epochs if train.epochs is not None else 1.0,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_steps if train.warmup_steps else train.warmup_ratio,  # < 1: a ratio
        lr_scheduler_type=train.scheduler,
        max_grad_norm=train.max_grad_norm,
        logging_strategy="steps",
        logging_steps=train.log_every,
        save_strategy="steps" if train.save_every else "no",
        save_steps=train.save_every or 500,
        eval_strategy="no",
        **_checkpointing(enabled=train.gradient_checkpointing),
        dataloader_num_workers=train.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=train.device == "cpu",
        **precision,
        **sharding,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        remove_unused_columns=False,  # the collator needs `messages` and `images`
        label_names=["labels"],
        disable_tqdm=False,
        push_to_hub=False,
        use_liger_kernel=train.kernels == "liger",  # the Trainer patches the (PEFT base) model by its type
    )


class VlmTrainer(Trainer):
    """The stock Trainer, with our length-grouped sampler when `lengths` (tokens per row) are given.

    Why a subclass for one method: `_get_train_sampler` is the Trainer's documented hook for the data
    order; everything else (accelerate, checkpoints, resume, DDP sharding) stays stock.
    """

    def __init__(
        self,
        *,
        lengths: Sequence[int] | None,
        model: Any,
        args: TrainingArguments,
        train_dataset: Any,
        data_collator: Any,
        processing_class: Any,
        callbacks: list[TrainerCallback],
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=data_collator,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self.lengths = None if lengths is None else list(lengths)
        self.param_groups = param_groups  # per-component groups (vlmtrain.training.optim); None: the Trainer's own

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """The configured optimizer over our per-component groups, each with its own lr and weight decay."""
        if self.optimizer is None and self.param_groups is not None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            groups = [{k: v for k, v in g.items() if k != "names"} for g in self.param_groups]
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)  # a group's lr wins over the default
        return super().create_optimizer(model)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """The stock save, plus `trained.safetensors` for a LoRA model with fully trained components.

        Why: a peft checkpoint holds the adapter alone, so a fully trained projector would resume from its
        starting weights and the resumed run would silently diverge. `_save` runs before the Trainer writes
        `trainer_state.json`, so a checkpoint that counts as complete (`vlmtrain.training.checkpoint`) has the file.
        """
        self.require_finite_weights()
        super()._save(output_dir, state_dict)
        if hasattr(self.model, "peft_config"):
            folder = Path(output_dir or self.args.output_dir)
            if state_dict is not None:  # gathered by the Trainer (FSDP / ZeRO-3): the full tensors
                save_trained_state(model=self.model, state=state_dict, folder=folder)
            else:
                save_trained(model=self.model, folder=folder)

    def require_finite_weights(self) -> None:
        """NonFiniteError when a trainable weight holds inf or NaN (called before anything is saved)."""
        name = first_nonfinite_weight(self.model)
        if name is not None:
            raise NonFiniteError(what=f"weight {name}", step=self.state.global_step, value="inf/NaN",
                                 run_dir=Path(self.args.output_dir))

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """The stock step; a non-finite loss stops the run before its gradients reach the optimizer (finite_guard)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size == 1 and not finite(loss):
            raise NonFiniteError(what="loss", step=self.state.global_step + 1, value=float(loss.detach().float()),
                                 run_dir=Path(self.args.output_dir))
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        """The stock norm; a non-finite one stops the run before the optimizer steps (not under fp16's scaler)."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if grad_norm is not None and not self.args.fp16 and not finite(grad_norm):
            raise NonFiniteError(what="gradient norm", step=self.state.global_step + 1, value=float(grad_norm),
                                 run_dir=Path(self.args.output_dir))
        return grad_norm

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if hasattr(self.model, "peft_config"):
            load_trained(model=self.model.get_base_model(), folder=Path(resume_from_checkpoint))

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if self.lengths is None:
            return super()._get_train_sampler(train_dataset)

        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedSampler(lengths=self.lengths, batch_size=self.args.per_device_train_batch_size, seed=seed)


def build_trainer(
    *,
    config: TrainConfig,
    model: Any,
    processor: Any,
    dataset: Any,
    collator: Any,
    log_path: Path,
    lengths: Sequence[int] | None = None,
    extra_callbacks: Sequence[TrainerCallback] = (),
    param_groups: list[dict[str, Any]] | None = None,
) -> Trainer:
    """The Trainer for one run; losses go to `log_path` (JSONL) as well as the progress bar.

    `lengths` (tokens per row of `dataset`) turn on length-grouped batching when
    `train.group_by_length` is set; `extra_callbacks` run after the JSONL logger (e.g. evaluation).
    `param_groups` (see `vlmtrain.training.optim.param_groups`) replace the Trainer's two default groups.
    """
    layers = sorted(set(getattr(model, "_no_split_modules", None) or []))
    return VlmTrainer(
        lengths=lengths if config.train.group_by_length else None,
        model=model,
        args=training_arguments(config=config, layer_classes=layers),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[JsonlLogger(path=log_path), *extra_callbacks],
        param_groups=param_groups,
    )
