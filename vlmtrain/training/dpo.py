"""DPO: the loss, the per-sequence log-probs and the collator of preference pairs.

Why our own and not TRL's `DPOTrainer`: the tokens a pair is scored on come from the very same
masking code as SFT (`vlmtrain.data.collate.ChatCollator`: the assistant answer and its end-of-turn
token, by character spans of the chat template), for every family SFT supports; the Trainer stays
the stock one (`vlmtrain.training.trainer`). The numbers equal TRL's (tests/vlmtrain/training/test_dpo.py runs TRL's
own `_compute_loss` on the same batch).

A batch holds the B chosen conversations first, then the B rejected ones (2B sequences, one forward);
`split_pair` cuts any per-sequence tensor back into (chosen, rejected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.data.dataset import row_batches
from vlmtrain.training.dpo_images import encode_pair_images, forward_inputs

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from vlmtrain.config.dpo import LossType


def pair_conversations(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompt + chosen, prompt + rejected) of a preference row, as SFT-shaped message lists."""
    missing = [c for c in ("chosen", "rejected") if not row.get(c)]
    if missing:
        raise ValueError(f"row {row.get('id')}: not a preference row (no {' or '.join(missing)}); "
                         "build it with a vlmdata `preference:` section")
    return [*row["messages"], *row["chosen"]], [*row["messages"], *row["rejected"]]


def keep_last_answer(labels: torch.Tensor) -> torch.Tensor:
    """Labels on the last run of supervised tokens only (the answer being compared), -100 elsewhere.

    The SFT mask supervises every assistant turn; in a multi-turn prompt the earlier answers are part
    of the prompt, so they must not count in a pair's log-prob."""
    import torch

    supervised = labels != IGNORE_INDEX
    out = torch.full_like(labels, IGNORE_INDEX)
    for b in range(labels.shape[0]):
        idx = supervised[b].nonzero().flatten()
        if len(idx) == 0:
            continue
        gaps = (idx[1:] - idx[:-1] > 1).nonzero().flatten()
        start = int(idx[int(gaps[-1]) + 1]) if len(gaps) else int(idx[0])
        out[b, start:] = labels[b, start:]
    return out


@dataclass(kw_only=True)
class PairCollator:
    """Preference rows → one batch of 2B sequences: the chosen conversations, then the rejected ones.

    Labels are the SFT collator's (same masking), restricted to the final answer."""

    chat: ChatCollator

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        pairs = [pair_conversations(row) for row in rows]
        sequences = [{**row, "messages": conv} for row, conv in zip(rows, [c for c, _ in pairs], strict=True)]
        sequences += [{**row, "messages": conv} for row, conv in zip(rows, [r for _, r in pairs], strict=True)]
        batch = self.chat(sequences)
        batch["labels"] = keep_last_answer(batch["labels"])
        return batch


def sequence_logps(*, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-prob of the supervised tokens, and how many there are.

    Logits at position t predict token t+1 (the causal shift), as in the SFT loss."""
    import torch

    logits, labels = logits[:, :-1, :], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    safe = labels.masked_fill(~mask, 0)
    token_logps = torch.gather(logits.float().log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def split_pair(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected = values.chunk(2, dim=0)
    return chosen, rejected


def dpo_loss(*, policy: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor, beta: float,
             loss_type: LossType, label_smoothing: float = 0.0,
             sft_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean DPO loss over pairs, and TRL's reward metrics (`rewards/chosen`, ... `rewards/accuracies`).

    `policy`, `reference`: (2B,) summed log-probs (chosen first); `tokens`: (2B,) supervised token counts.
    - sigmoid: -(1-ε)·logσ(βΔ) - ε·logσ(-βΔ) (DPO; with ε > 0 the conservative cDPO), Δ = the log-ratio margin;
    - hinge:   relu(1 - βΔ) (SLiC);
    - ipo:     (Δ/len - 1/(2β))², the log-ratios averaged per token as TRL does;
    plus `sft_weight` × the chosen answers' NLL averaged over all their tokens in the batch (RPO; TRL's
    `loss_type=[..., "sft"]` with `loss_weights=[1, sft_weight]`).
    """
    import torch
    import torch.nn.functional as F

    chosen_ratio, rejected_ratio = split_pair(policy - reference)
    delta = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        chosen_len, rejected_len = split_pair(tokens.clamp(min=1).to(policy.dtype))
        losses = (chosen_ratio / chosen_len - rejected_ratio / rejected_len - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"dpo.loss_type: unknown '{loss_type}' (sigmoid, ipo or hinge)")
    loss = losses.mean()
    if sft_weight:
        chosen_logps, _ = split_pair(policy)
        chosen_tokens, _ = split_pair(tokens)
        loss = loss + sft_weight * (-chosen_logps.sum() / chosen_tokens.sum().clamp(min=1))
    chosen_rewards, rejected_rewards = beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
    }
    return loss, metrics


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model's forward takes from a pair batch (labels stay out: the loss is ours)."""
    return {k: v for k, v in batch.items() if k not in ("labels", "tasks")}


def pair_logps(*, model: Any, batch: dict[str, Any], reference: bool, images: Any | None = None,
               once: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probs of a pair batch under the policy, or under the reference (`reference`):
    the same model with its adapter disabled, without gradients (no second copy of the model).

    Each pair's images are encoded once for both of its sequences (`vlmtrain.training.dpo_images`), or `images`,
    an encoding made beforehand, is used (one per step for policy and reference when the vision side is
    frozen). `once=False`, or a family the shortcut is not proved for, runs the plain forward of 2B
    sequences (each image encoded per sequence)."""
    import contextlib

    import torch


    ctx: Any = contextlib.nullcontext()
    grad: Any = contextlib.nullcontext()
    if reference:
        peft_model = getattr(model, "module", model)  # under DDP the Trainer hands us the wrapper
        if not hasattr(peft_model, "disable_adapter"):
            raise ValueError("DPO needs a LoRA/QLoRA model: the reference is the model with its adapter disabled")
        ctx, grad = peft_model.disable_adapter(), torch.no_grad()
    with grad, ctx:
        encoded = images if images is not None or not once else encode_pair_images(model=model, batch=batch)
        logits = model(**forward_inputs(batch=batch, encoded=encoded), use_cache=False).logits
    return sequence_logps(logits=logits, labels=batch["labels"])


ANSWER_CUT = "answer_cut"


def pair_rejects(*, dataset: Any, chat: ChatCollator, batch_size: int = 16) -> list[dict[str, Any]]:
    """Pairs that do not fit `chat.max_length` whole: (id, reason, tokens) each; the rest train.

    SFT may train on a cut answer; DPO may not: a cut chosen or rejected answer compares the log-probs of
    two different things (a prefix against a whole answer), a silently wrong number. So a pair whose
    longer side exceeds max_length is rejected (`answer_cut`), listed, and never cut."""
    from dataclasses import replace


    measure = PairCollator(chat=replace(chat, max_length=2**31 - 1))
    out: list[dict[str, Any]] = []
    for rows in row_batches(dataset, batch_size=batch_size):
        lengths = measure(rows)["attention_mask"].sum(dim=1).tolist()
        for i, row in enumerate(rows):
            longest = int(max(lengths[i], lengths[i + len(rows)]))
            if longest > chat.max_length:
                out.append({"id": row.get("id"), "task": row.get("task"), "reason": ANSWER_CUT, "tokens": longest})
    return out
