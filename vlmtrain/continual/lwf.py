"""Learning without Forgetting: keep the model's answers close to a teacher's while a new task trains.

No second model is loaded. The teacher is the same network, either
- "base": with its adapter disabled (peft's `model.disable_adapter()`), i.e. the pretrained model, so
  fine-tuning is pulled towards what the base model would say (available from the first task on); or
- "snapshot": the adapter as it was at the end of the previous task; its trainable tensors are kept
  (a LoRA adapter is a few MB) and swapped in for the teacher's forward pass, then swapped back.

The teacher runs under `no_grad` on the new task's batch; `extra_loss` is `alpha · lwf_kl` on the
supervised positions, at temperature T.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch

from vlmtrain.config.multitask import ContinualSection
from vlmtrain.continual.strategy import Strategy
from vlmtrain.training.losses import lwf_kl, supervised_mask


class LwFStrategy(Strategy):
    """`alpha`: weight of the KL term; `temperature`: T; `teacher`: "base" or "snapshot" (see module doc)."""

    def __init__(self, *, alpha: float = 1.0, temperature: float = 2.0,
                 teacher: Literal["base", "snapshot"] = "base") -> None:
        if alpha < 0:
            raise ValueError(f"lwf.alpha must be >= 0, got {alpha}")
        if not temperature > 0:
            raise ValueError(f"lwf.temperature must be > 0, got {temperature}")
        if teacher not in ("base", "snapshot"):
            raise ValueError(f"lwf.teacher must be 'base' or 'snapshot', got {teacher!r}")
        self.alpha, self.temperature, self.teacher = alpha, temperature, teacher
        self.snapshot: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, *, continual: ContinualSection, seed: int) -> LwFStrategy:
        w = continual.lwf
        return cls(alpha=w.alpha, temperature=w.temperature, teacher=w.teacher)

    def after_task(self, *, task_index: int, model: Any, dataloader: Iterable[Mapping[str, Any]]) -> None:
        if self.teacher == "snapshot":
            self.snapshot = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def teacher_logits(self, *, model: Any, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """The teacher's logits (B, L, V) on `batch`, without a graph; None when there is no teacher yet."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.teacher == "snapshot" and not self.snapshot:
            return None
        was_training = model.training
        model.eval()  # the teacher without dropout
        try:
            if self.teacher == "base":
                with torch.no_grad(), model.disable_adapter():
                    return model(**inputs).logits
            return self._snapshot_forward(model=model, inputs=inputs)
        finally:
            model.train(was_training)

    def _snapshot_forward(self, *, model: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
        # Swapped through `.data`: the student's graph saved these tensors for its backward pass; the
        # values are restored exactly, and `.data` keeps autograd's version counters untouched.
        params = dict(model.named_parameters())
        current = {n: params[n].data.clone() for n in self.snapshot}
        try:
            for n, value in self.snapshot.items():
                params[n].data.copy_(value)
            with torch.no_grad():
                return model(**inputs).logits
        finally:
            for n, value in current.items():
                params[n].data.copy_(value)

    def extra_loss(self, *, model: Any, batch: Mapping[str, Any], outputs: Any) -> torch.Tensor | None:
        if self.alpha == 0:
            return None
        teacher = self.teacher_logits(model=model, batch=batch)
        if teacher is None:
            return None
        mask = supervised_mask(labels=batch["labels"])
        return self.alpha * lwf_kl(student_logits=outputs.logits, teacher_logits=teacher, mask=mask,
                                   temperature=self.temperature)
