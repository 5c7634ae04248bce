"""The engine: a plain `transformers.Trainer`, configured from `TrainConfig`, plus a JSONL loss log.

Why the stock Trainer: accelerate underneath means `accelerate launch` / `torchrun`, DDP, FSDP,
DeepSpeed, mixed precision and checkpointing work unchanged later; our own logic stays in the
collator and the config. This module imports transformers at the top; only the recipe imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from vlmtrain.config import TrainConfig


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
            "loss": float(logs["loss"]),
            "lr": float(logs.get("learning_rate", 0.0)),
            "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
            "epoch": logs.get("epoch"),
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _checkpointing(*, enabled: bool) -> dict[str, Any]:
    """Activation checkpointing arguments, named for the installed transformers (renamed in v5.x)."""
    if not enabled:
        return {}
    names = TrainingArguments.__dataclass_fields__
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: True, f"{key}_kwargs": {"use_reentrant": False}}


def training_arguments(*, config: TrainConfig) -> TrainingArguments:
    """TrainingArguments from the `train` section: no hub, no trackers, all columns kept for the collator."""
    train = config.train
    return TrainingArguments(
        output_dir=str(config.run_dir),  # checkpoints (if any) land in runs/NAME/checkpoint-N
        max_steps=train.steps if train.steps is not None else -1,
        num_train_epochs=train.epochs if train.epochs is not None else 1.0,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_steps,
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
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        remove_unused_columns=False,  # the collator needs `messages` and `images`
        label_names=["labels"],
        disable_tqdm=False,
        push_to_hub=False,
    )


def build_trainer(
    *, config: TrainConfig, model: Any, processor: Any, dataset: Any, collator: Any, log_path: Path
) -> Trainer:
    """The Trainer for one run; losses go to `log_path` (JSONL) as well as the progress bar."""
    return Trainer(
        model=model,
        args=training_arguments(config=config),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[JsonlLogger(path=log_path)],
    )
