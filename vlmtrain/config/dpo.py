"""The `dpo:` section: preference training (DPO) on vlmdata preference rows (see vlmtrain/training/dpo.py).

    method: dpo                 # shorthand for `method: lora` + `dpo: {}`; `method: qlora` + `dpo:` for QLoRA
    dpo: {beta: 0.1, loss_type: sigmoid, label_smoothing: 0.0, sft_weight: 0.0}

In `stages:`, a stage with `method: dpo` (or its own `dpo:`) trains DPO from the earlier stages' weights.
The reference policy is the model with this run's adapter disabled, so no second copy is loaded; that
is why every component that trains in a DPO run must train as LoRA (a fully trained component has no
"disabled" state to compare against).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LossType = Literal["sigmoid", "ipo", "hinge"]


class DpoSection(BaseModel):
    """`beta` scales the implicit reward; `label_smoothing` (sigmoid only) is cDPO's label noise rate."""

    model_config = ConfigDict(extra="forbid")
    beta: float = Field(default=0.1, gt=0.0)
    loss_type: LossType = "sigmoid"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    # + sft_weight x the mean NLL of the chosen answers' tokens (RPO; TRL: loss_type [.., "sft"] + loss_weights):
    # keeps the chosen answers likely, where plain DPO may lower both sides and forget how to answer
    sft_weight: float = Field(default=0.0, ge=0.0)
    eval_split: str | None = None  # a held-out split of data.path: preference accuracy before, during, after
    eval_every: int | None = Field(default=None, ge=1)  # steps between those evaluations (None: before + after)
    eval_batch_size: int = Field(default=8, ge=1)


def dpo_problems(*, plan: dict, where: str) -> list[tuple[str, str]]:
    """A DPO run whose plan trains a component fully is refused: its reference would be the trained weights."""
    return [(f"{where}.{name}.train", f"DPO takes its reference from the model with the adapter disabled, so "
             f"{name} must train as lora (or stay frozen), not {component.train}")
            for name, component in plan.items() if component.train == "full"]
