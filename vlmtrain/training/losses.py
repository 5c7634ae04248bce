"""Multi-task and continual-learning losses, as pure torch functions (no Trainer, no model classes).

Shapes: B = batch, L = sequence length, V = vocabulary. `labels` follow the collator: token ids on
supervised (answer) tokens, `IGNORE_INDEX` (-100) elsewhere, aligned with `input_ids`. A causal LM's
logits at position t predict token t+1, so by default logits and labels are shifted here, exactly as
transformers' own `ForCausalLMLoss` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def supervised_mask(*, labels: torch.Tensor, shift: bool = True) -> torch.Tensor:
    """(B, L) bool, aligned with the logits: True where the logit is trained (its target is supervised).

    With `shift`, mask[:, t] = labels[:, t + 1] != -100 and the last position is False.
    """
    mask = labels != IGNORE_INDEX
    if not shift:
        return mask
    return torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)


def per_task_losses(*, logits: torch.Tensor, labels: torch.Tensor, tasks: Sequence[str],
                    reduction: Literal["token", "sample"] = "token", shift: bool = True) -> dict[str, torch.Tensor]:
    """Cross-entropy of each task in the batch: logits (B, L, V), labels (B, L), tasks[b] = row b's task.

    "token": the mean over every supervised token of the task's rows (what one shared mean would give
    the task). "sample": each row's token mean, then the mean over the task's rows, so a 60-token
    caption weighs as much as a one-token VQA answer. Rows without supervised tokens are skipped, and
    a task none of whose rows has any is left out of the result (never a 0/0 NaN).
    """
    if len(tasks) != logits.shape[0]:
        raise ValueError(f"{len(tasks)} task names for a batch of {logits.shape[0]} rows")
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    mask = (labels != IGNORE_INDEX).to(token_loss.dtype)  # (B, L)
    return reduce_rows(row_sum=(token_loss * mask).sum(dim=1), row_count=mask.sum(dim=1), tasks=tasks,
                       reduction=reduction)


def reduce_rows(*, row_sum: torch.Tensor, row_count: torch.Tensor, tasks: Sequence[str],
                reduction: Literal["token", "sample"] = "token") -> dict[str, torch.Tensor]:
    """Per-task losses from each row's summed token loss and supervised-token count (both (B,)).

    The reductions of `per_task_losses`, shared with packed batches (`vlmtrain.data.packing`), whose rows are
    segments of one sequence.
    """
    out: dict[str, torch.Tensor] = {}
    for task in sorted(set(tasks)):
        rows = torch.tensor([t == task for t in tasks], device=row_sum.device) & (row_count > 0)
        if not bool(rows.any()):
            continue
        if reduction == "token":
            out[task] = row_sum[rows].sum() / row_count[rows].sum()
        elif reduction == "sample":
            out[task] = (row_sum[rows] / row_count[rows]).mean()
        else:
            raise ValueError(f"reduction must be 'token' or 'sample', got {reduction!r}")
    return out


def static_weighting(*, losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Σ_t w_t · L_t over the tasks present; tasks without a weight get 1.0."""
    if not losses:
        raise ValueError("no task losses to weight (the batch had no supervised tokens)")
    return torch.stack([weights.get(t, 1.0) * loss for t, loss in losses.items()]).sum()


class UncertaintyWeighting(nn.Module):
    """Learned task weights (Kendall, Gal & Cipolla 2018): total = Σ_t exp(−s_t)·L_t + s_t.

    One parameter s_t = log σ_t² per task, in `log_vars` (T,). A noisy (hard) task grows its σ and so
    its loss weight exp(−s_t) shrinks; the +s_t term keeps σ from growing without bound. s_t is
    clamped to [min_log_var, max_log_var] in the forward pass so no task is switched off or blown up.
    These parameters must be optimised without weight decay (decay would pull every weight to 1):
    give `parameters()` to the optimiser as their own group with weight_decay=0.
    """

    def __init__(self, *, tasks: Sequence[str], init: float = 0.0, min_log_var: float = -4.0,
                 max_log_var: float = 4.0) -> None:
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {list(tasks)}")
        if not min_log_var <= init <= max_log_var:
            raise ValueError(f"init {init} is outside [{min_log_var}, {max_log_var}]")
        self.tasks = list(tasks)
        self.index = {t: i for i, t in enumerate(self.tasks)}
        self.min_log_var, self.max_log_var = min_log_var, max_log_var
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def clamped(self) -> torch.Tensor:
        """s (T,) after clamping: what the loss uses."""
        return self.log_vars.clamp(self.min_log_var, self.max_log_var)

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted total over the tasks present in `losses` (absent tasks add nothing)."""
        unknown = sorted(set(losses) - set(self.index))
        if unknown:
            raise KeyError(f"no uncertainty weight for task(s) {unknown} (known: {self.tasks})")
        if not losses:
            raise ValueError("no task losses to weight (the batch had no supervised tokens)")
        s = self.clamped()
        terms = [torch.exp(-s[self.index[t]]) * loss + s[self.index[t]] for t, loss in losses.items()]
        return torch.stack(terms).sum()

    def log_values(self) -> dict[str, float]:
        """For the loss log: `log_var/<task>` (clamped s_t) and `weight/<task>` (exp(−s_t))."""
        s = self.clamped().detach().cpu().tolist()
        out = {f"log_var/{t}": v for t, v in zip(self.tasks, s, strict=True)}
        out.update({f"weight/{t}": float(torch.exp(torch.tensor(-v))) for t, v in zip(self.tasks, s, strict=True)})
        return out


def ewc_penalty(*, params: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor],
                anchors: Mapping[str, torch.Tensor], lam: float) -> torch.Tensor:
    """Elastic weight consolidation: λ/2 · Σ_i F_i (θ_i − θ*_i)², over the parameters named in `fisher`.

    `fisher` and `anchors` hold one tensor per parameter name, of that parameter's shape. Zero at the
    anchors; the gradient pulls each weight back in proportion to how much earlier tasks relied on it.
    """
    missing = sorted(set(fisher) - set(params))
    if missing:
        raise KeyError(f"EWC has a Fisher entry for parameter(s) the model lacks: {missing[:5]}")
    terms = [(fisher[n] * (params[n] - anchors[n]).pow(2)).sum() for n in fisher]
    if not terms:
        raise ValueError("EWC needs at least one parameter with a Fisher estimate")
    return 0.5 * lam * torch.stack(terms).sum()


def lwf_kl(*, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
           temperature: float = 2.0) -> torch.Tensor:
    """Learning without Forgetting: KL(teacher ‖ student) at temperature T, times T², on masked positions.

    logits (B, L, V), mask (B, L) bool (e.g. `supervised_mask(labels=...)`). The mean is over masked
    positions; T² keeps the gradient's scale independent of T (Hinton et al. 2015). Returns 0 (with a
    graph to the student) when nothing is masked.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} differ")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)  # (N, V)
    teacher = F.log_softmax(teacher_logits[mask].float().detach() / temperature, dim=-1)
    if student.shape[0] == 0:
        return student_logits.sum() * 0.0
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2
