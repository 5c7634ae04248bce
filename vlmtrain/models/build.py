"""Building the model a run trains: load (quantised for QLoRA), replay earlier stages, apply the plan.

Why one function: the recipe, the stage runner and the tests all need the very same model, built in
the very same order (quantise -> earlier stages -> prepare for k-bit -> LoRA/full -> groups), and no
forward pass happens anywhere on the way: an eval-mode forward of a 4-bit model before training
silently kills LoRA gradients (see `vlmtrain.models.quant`), so for QLoRA a guard makes one raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmtrain.config.train import ModelSection, TrainConfig
from vlmtrain.config.tuning import Component, QuantSection
from vlmtrain.models.families import Family, family_of
from vlmtrain.models.load import load_base, model_type
from vlmtrain.models.tuning import apply_plan
from vlmtrain.models.weights import replay
from vlmtrain.training.optim import component_table, param_groups


@dataclass(kw_only=True)
class Built:
    """The model to train, what it is, and what the optimizer and Trainer need to know about it.

    `guard` is the eval-forward guard of a quantised model (None otherwise); pass
    `vlmtrain.models.quant.GuardRelease(handle=guard)` to the Trainer so training lifts it.
    """

    model: Any
    family: Family
    plan: dict[str, Component]
    groups: list[dict[str, Any]]
    guard: Any = None

    def table(self) -> str:
        return component_table(model=self.model, family=self.family, plan=self.plan)


def build_model(*, config: TrainConfig, chain: Sequence[Path] = ()) -> Built:
    """The model of `config` (its top-level components), started from the stage folders in `chain`."""
    # torch and transformers load only once a model is built (this module is on `vlmtrain predict`'s import path)
    from vlmtrain.models.quant import guard_eval_forward, upcast_floats
    from vlmtrain.training.trainer import mixed_precision

    family = family_of(model_type(model=config.model))
    plan = config.plan()
    quant = config.quant or QuantSection()
    fsdp = config.distributed is not None and config.distributed.strategy == "fsdp"
    quantization = quantization_config(model=config.model, method=config.method, quant=quant, fsdp=fsdp)
    base, _ = load_base(model=config.model, quantization=quantization, cpu=config.train.device == "cpu")
    base = replay(model=base, chain=chain)
    gc = config.train.gradient_checkpointing
    if quantization is not None and quant.upcast:
        upcast_floats(model=base, only_trainable=False)
    model = apply_plan(model=base, family=family, plan=plan, seed=config.seed, gradient_checkpointing=gc)
    autocast = mixed_precision(precision=config.train.precision, cpu=config.train.device == "cpu")
    if autocast:  # under autocast, what trains (LoRA, a full projector or cross-attention) keeps fp32 master
        upcast_floats(model=model, only_trainable=True)  # weights, QLoRA or not; without it, model.dtype throughout
    groups = param_groups(
        model=model, family=family, plan=plan, weight_decay=config.train.weight_decay, default_lr=config.train.lr
    )
    guard = guard_eval_forward(model) if quantization is not None else None
    return Built(model=model, family=family, plan=plan, groups=groups, guard=guard)


def quantization_config(*, model: ModelSection, method: str, quant: QuantSection | None, fsdp: bool = False) -> Any:
    """The `BitsAndBytesConfig` a `method: qlora` model loads with (None for other methods); training and
    `vlmtrain.evaluation.predict.load_run` both load through it, so a run is served as it was trained.
    Under FSDP the 4-bit weights are stored in the compute dtype, so shards can be flattened."""
    if method != "qlora":
        return None
    from vlmtrain.models.quant import bnb_config, skip_modules  # torch: only for QLoRA, when called

    quant = quant or QuantSection()
    skip = skip_modules(model_path=str(model.path), family=family_of(model_type(model=model)),
                        trust_remote_code=model.trust_remote_code)
    return bnb_config(quant=quant, skip=skip, storage=quant.compute_dtype if fsdp else None)
