"""Per-task losses, uncertainty and static weighting, the EWC penalty and the LwF KL, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlmtrain.training.losses import (
    UncertaintyWeighting,
    ewc_penalty,
    lwf_kl,
    per_task_losses,
    static_weighting,
    supervised_mask,
)


def _batch() -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """3 rows, L=4, V=3: row 0 (vqa) has 1 supervised token, row 1 (caption) 3, row 2 (vqa) 2."""
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 3)
    labels = torch.tensor([[-100, 2, -100, -100], [0, 1, 2, -100], [-100, -100, 1, 0]])
    ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return logits, labels, ce


def test_token_and_sample_means_per_task() -> None:
    logits, labels, ce = _batch()
    tasks = ["vqa", "caption", "vqa"]
    token = per_task_losses(logits=logits, labels=labels, tasks=tasks, reduction="token", shift=False)
    sample = per_task_losses(logits=logits, labels=labels, tasks=tasks, reduction="sample", shift=False)
    vqa_tokens = [ce[0, 1], ce[2, 2], ce[2, 3]]
    assert torch.allclose(token["vqa"], sum(vqa_tokens) / 3)
    assert torch.allclose(sample["vqa"], (ce[0, 1] + (ce[2, 2] + ce[2, 3]) / 2) / 2)
    assert torch.allclose(token["caption"], ce[1, :3].mean()) and torch.allclose(sample["caption"], token["caption"])


def test_shift_matches_the_causal_lm_loss_and_empty_tasks_are_left_out() -> None:
    logits, labels, _ = _batch()
    labels[1] = -100
    out = per_task_losses(logits=logits, labels=labels, tasks=["a", "b", "a"])
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 3), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert set(out) == {"a"} and torch.allclose(out["a"], expected)
    assert supervised_mask(labels=labels)[0].tolist() == [True, False, False, False]


def test_static_weighting() -> None:
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert static_weighting(losses=losses, weights={"a": 0.5}).item() == pytest.approx(4.0)


def test_uncertainty_weighting_gradients_and_clamping() -> None:
    uw = UncertaintyWeighting(tasks=["a", "b"], min_log_var=-1.0, max_log_var=1.0)
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(0.5)}
    total = uw(losses)
    assert total.item() == pytest.approx(2.5)  # s = 0: plain sum
    total.backward()
    # d/ds (e^-s L + s) = 1 - e^-s L at s = 0
    assert uw.log_vars.grad.tolist() == pytest.approx([1 - 2.0, 1 - 0.5])
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([5.0, -5.0]))
    uw.log_vars.grad = None
    uw({"a": torch.tensor(2.0)}).backward()
    assert uw.log_vars.grad.tolist() == [0.0, 0.0]  # clamped: no push beyond the bound; absent task: nothing
    assert uw.log_values()["log_var/a"] == 1.0 and uw.log_values()["weight/b"] == pytest.approx(math.e)
    assert [p is uw.log_vars for p in uw.parameters()] == [True]


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_away() -> None:
    anchor = {"w": torch.tensor([1.0, 2.0])}
    fisher = {"w": torch.tensor([4.0, 0.0])}
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    assert ewc_penalty(params={"w": w}, fisher=fisher, anchors=anchor, lam=2.0).item() == 0.0
    moved = torch.tensor([2.0, 5.0], requires_grad=True)
    penalty = ewc_penalty(params={"w": moved}, fisher=fisher, anchors=anchor, lam=2.0)
    assert penalty.item() == pytest.approx(0.5 * 2.0 * 4.0 * 1.0)  # the zero-Fisher weight is free
    penalty.backward()
    assert moved.grad.tolist() == pytest.approx([8.0, 0.0])


def test_lwf_kl_zero_for_equal_logits_positive_otherwise() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 7)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert lwf_kl(student_logits=teacher.clone(), teacher_logits=teacher, mask=mask).item() == pytest.approx(0, abs=1e-6)
    student = teacher.clone()
    student[1, 3] += 5.0  # an unmasked position does not count
    assert lwf_kl(student_logits=student, teacher_logits=teacher, mask=mask).item() == pytest.approx(0, abs=1e-6)
    student = torch.randn(2, 5, 7, requires_grad=True)
    kl = lwf_kl(student_logits=student, teacher_logits=teacher, mask=mask, temperature=2.0)
    expected = sum(
        F.kl_div(F.log_softmax(student[b, t] / 2, -1), F.log_softmax(teacher[b, t] / 2, -1), log_target=True,
                 reduction="sum") for b, t in [(0, 1), (0, 2), (1, 0)]
    ) / 3 * 4
    assert kl.item() > 0 and kl.item() == pytest.approx(expected.item(), rel=1e-5)
    kl.backward()
    assert student.grad[1, 3].abs().sum() == 0
    assert lwf_kl(student_logits=student, teacher_logits=teacher, mask=torch.zeros(2, 5, dtype=torch.bool)).item() == 0
