"""Elastic weight consolidation on the trainable (LoRA) parameters, with online accumulation.

After each task the diagonal Fisher information of the trainable parameters is estimated from the
squared gradients of the model's own loss on up to `num_samples` training rows (the empirical
Fisher), and the current values become the anchors θ*. While later tasks train, `extra_loss` adds
λ/2 · Σ F (θ − θ*)². Online EWC (Schwarz et al. 2018) keeps one Fisher: F ← γ·F + F_new, so the
cost does not grow with the number of tasks; γ = 1 sums the tasks' Fishers, γ < 1 forgets old ones.

Only parameters with `requires_grad` are covered: with LoRA that is the adapter, a few MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from vlmtrain.config.multitask import ContinualSection
from vlmtrain.continual.strategy import Strategy
from vlmtrain.training.losses import ewc_penalty


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_rows(batch: Mapping[str, Any]) -> int:
    return int(batch["input_ids"].shape[0]) if "input_ids" in batch else 1


def estimate_fisher(*, model: torch.nn.Module, dataloader: Iterable[Mapping[str, Any]],
                    num_samples: int) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the trainable parameters: the mean over batches of grad².

    Each batch must make `model(**batch).loss`. With batch size 1 this is the textbook empirical
    Fisher (mean of per-sample squared gradients); larger batches square the batch-mean gradient,
    which is cheaper and smaller in scale. Stops after `num_samples` rows. Runs in eval mode (no
    dropout), restores the mode and leaves no gradients behind.
    """
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not named:
        raise ValueError("the model has no trainable parameters to estimate a Fisher for")
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in named.items()}
    device = next(iter(named.values())).device
    was_training = model.training
    model.eval()
    seen, batches = 0, 0
    try:
        with torch.enable_grad():
            for batch in dataloader:
                if seen >= num_samples:
                    break
                model.zero_grad(set_to_none=True)
                model(**_to_device(batch, device)).loss.backward()
                for n, p in named.items():
                    if p.grad is not None:
                        fisher[n] += p.grad.detach().float().pow(2)
                seen += _batch_rows(batch)
                batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if batches == 0:
        raise ValueError("the dataloader gave no batches to estimate the Fisher from")
    return {n: f / batches for n, f in fisher.items()}


class EWCStrategy(Strategy):
    """Online EWC: `lam` = λ, `gamma` = γ (decay of the old Fisher), `num_samples` rows per estimate."""

    def __init__(self, *, lam: float, gamma: float = 1.0, num_samples: int = 200) -> None:
        if lam < 0:
            raise ValueError(f"ewc.lam must be >= 0, got {lam}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"ewc.gamma must be in [0, 1], got {gamma}")
        if num_samples < 1:
            raise ValueError(f"ewc.num_samples must be >= 1, got {num_samples}")
        self.lam, self.gamma, self.num_samples = lam, gamma, num_samples
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchors: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, *, continual: ContinualSection, seed: int) -> EWCStrategy:
        e = continual.ewc
        return cls(lam=e.lambda_, gamma=e.gamma, num_samples=e.num_samples)

    def after_task(self, *, task_index: int, model: Any, dataloader: Iterable[Mapping[str, Any]]) -> None:
        new = estimate_fisher(model=model, dataloader=dataloader, num_samples=self.num_samples)
        self.fisher = {n: self.gamma * self.fisher[n] + f if n in self.fisher else f for n, f in new.items()}
        self.anchors = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.fisher}

    def extra_loss(self, *, model: Any, batch: Mapping[str, Any], outputs: Any) -> torch.Tensor | None:
        if not self.fisher or self.lam == 0:
            return None
        params = {n: p for n, p in model.named_parameters() if n in self.fisher}
        return ewc_penalty(params=params, fisher=self.fisher, anchors=self.anchors, lam=self.lam)
