"""Continual strategies (replay, EWC, LwF, Combined) and the accuracy-matrix metrics, on tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from vlmtrain.continual.ewc import EWCStrategy, estimate_fisher
from vlmtrain.continual.lwf import LwFStrategy
from vlmtrain.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    plot_curves,
    plot_matrix,
)
from vlmtrain.continual.naive import NaiveStrategy
from vlmtrain.continual.replay import ReplayBuffer, ReplayStrategy
from vlmtrain.continual.strategy import Combined


def _tiny_lora(seed: int = 0) -> tuple[Any, Any]:
    """(peft model with a random non-zero LoRA, a copy of the base model before wrapping)."""
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    base = LlamaForCausalLM(config)
    reference = copy.deepcopy(base).eval()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(base, lora), reference


def _batches(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 40, (2, 6), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def test_reservoir_buffer_size_and_determinism() -> None:
    def fill(seed: int) -> list[int]:
        buffer = ReplayBuffer(mode="reservoir", size=50, seed=seed)
        buffer.add(task="0", rows=range(1000))
        buffer.add(task="1", rows=range(1000, 1100))
        return buffer.rows()

    rows = fill(0)
    assert len(rows) == 50 == len(set(rows)) and rows == fill(0) and rows != fill(1)
    assert sum(r >= 1000 for r in rows) < 20  # shares follow task sizes (1000 vs 100 rows)


def test_stratified_buffer_by_size_and_by_ratio() -> None:
    buffer = ReplayBuffer(mode="stratified", size=10, seed=0)
    buffer.add(task="0", rows=range(100))
    first = buffer.rows()
    assert len(first) == 10
    buffer.add(task="1", rows=range(100, 110))
    assert buffer.quotas() == {"0": 5, "1": 5} and buffer.rows()[:5] == first[:5]  # shrinking keeps a subset
    by_ratio = ReplayBuffer(mode="stratified", ratio=0.1, seed=0)
    by_ratio.add(task="0", rows=range(100))
    by_ratio.add(task="1", rows=range(100, 130))
    assert by_ratio.quotas() == {"0": 10, "1": 3}
    with pytest.raises(ValueError, match="exactly one"):
        ReplayBuffer(size=3, ratio=0.1)
    with pytest.raises(ValueError, match="stratified"):
        ReplayBuffer(mode="reservoir", ratio=0.1)


def test_replay_strategy_mixes_earlier_tasks_rows() -> None:
    task_rows = [list(range(0, 20)), list(range(20, 40)), list(range(40, 60))]
    replay = ReplayStrategy(buffer=ReplayBuffer(mode="stratified", size=6, seed=0))
    replay.before_task(task_index=0, model=None, task_rows=task_rows)
    assert replay.extra_rows(task_index=0) == []
    replay.before_task(task_index=2, model=None, task_rows=task_rows)
    rows = replay.extra_rows(task_index=2)
    assert len(rows) == 6 and sum(r < 20 for r in rows) == 3 and all(r < 40 for r in rows)


def test_ewc_fisher_on_a_lora_model_and_the_penalty() -> None:
    model, _ = _tiny_lora()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    fisher = estimate_fisher(model=model, dataloader=_batches(4), num_samples=4)
    assert set(fisher) == trainable and all((f >= 0).all() for f in fisher.values())
    assert sum(float(f.sum()) for f in fisher.values()) > 0
    assert all(p.grad is None for p in model.parameters()) and model.training

    ewc = EWCStrategy(lam=10.0, gamma=0.5, num_samples=4)
    assert ewc.extra_loss(model=model, batch={}, outputs=None) is None
    ewc.after_task(task_index=0, model=model, dataloader=_batches(4))
    assert ewc.extra_loss(model=model, batch={}, outputs=None).item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    assert ewc.extra_loss(model=model, batch={}, outputs=None).item() > 0
    first = {n: f.clone() for n, f in ewc.fisher.items()}
    ewc.after_task(task_index=1, model=model, dataloader=_batches(4, seed=1))
    new = estimate_fisher(model=model, dataloader=_batches(4, seed=1), num_samples=4)
    name = next(iter(first))
    assert torch.allclose(ewc.fisher[name], 0.5 * first[name] + new[name])  # online: F <- gamma F + F_new


def test_lwf_base_teacher_is_the_model_without_its_adapter() -> None:
    model, reference = _tiny_lora()
    batch = _batches(1)[0]
    lwf = LwFStrategy(alpha=1.0, temperature=2.0, teacher="base")
    teacher = lwf.teacher_logits(model=model, batch=batch)
    assert torch.allclose(teacher, reference(input_ids=batch["input_ids"]).logits, atol=1e-6)
    outputs = model(**batch)
    assert not torch.allclose(outputs.logits, teacher)
    loss = lwf.extra_loss(model=model, batch=batch, outputs=outputs)
    assert loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_lwf_snapshot_teacher_swaps_the_adapter_and_restores_it() -> None:
    model, _ = _tiny_lora()
    batch = _batches(1)[0]
    lwf = LwFStrategy(teacher="snapshot")
    assert lwf.extra_loss(model=model, batch=batch, outputs=model(**batch)) is None  # no earlier task
    lwf.after_task(task_index=0, model=model, dataloader=[])
    outputs = model(**batch)
    assert lwf.extra_loss(model=model, batch=batch, outputs=outputs).item() == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(1.5)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    outputs = model(**batch)
    total = outputs.loss + lwf.extra_loss(model=model, batch=batch, outputs=outputs)
    total.backward()  # the student's graph survives the swap
    assert all(torch.equal(p, after[n]) for n, p in model.named_parameters())
    assert total.item() > outputs.loss.item()


def test_combined_sums_losses_and_concatenates_rows() -> None:
    class Fixed(NaiveStrategy):
        def __init__(self, value: float) -> None:
            self.value = value

        def extra_loss(self, *, model: Any, batch: Any, outputs: Any) -> torch.Tensor:
            return torch.tensor(self.value)

    replay = ReplayStrategy(buffer=ReplayBuffer(mode="reservoir", size=2, seed=0))
    combined = Combined([Fixed(1.0), NaiveStrategy(), Fixed(2.5), replay])
    assert combined.extra_loss(model=None, batch={}, outputs=None).item() == 3.5
    combined.before_task(task_index=1, model=None, task_rows=[[7, 8], [9]])
    assert sorted(combined.extra_rows(task_index=1)) == [7, 8]
    assert Combined([NaiveStrategy()]).extra_loss(model=None, batch={}, outputs=None) is None


R = [[0.9, 0.1, 0.0],
     [0.6, 0.8, 0.2],
     [0.5, 0.7, 0.9]]


def test_average_accuracy_bwt_and_forgetting() -> None:
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert forgetting(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    improving = [[0.5, 0.0], [0.7, 0.6]]
    assert backward_transfer(improving) == pytest.approx(0.2) and forgetting(improving) == pytest.approx(-0.2)
    assert backward_transfer([[0.4]]) == forgetting([[0.4]]) == 0.0
    with pytest.raises(ValueError, match="T × T"):
        average_accuracy([[0.1, 0.2]])


def test_plots_write_png(tmp_path: Path) -> None:
    for plot, name in ((plot_matrix, "matrix.png"), (plot_curves, "curves.png")):
        path = plot(matrix=R, tasks=["color", "shape", "count"], path=tmp_path / "plots" / name)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_every_configurable_strategy_is_built_by_name_from_the_registry() -> None:
    from typing import get_args

    from vlmtrain.config.multitask import ContinualSection, StrategyName
    from vlmtrain.continual.registry import STRATEGIES, build_strategy

    assert set(get_args(StrategyName)) == set(STRATEGIES)  # the config accepts exactly what the registry builds
    sequence = [{"name": "a", "tasks": ["x"]}]
    naive = build_strategy(continual=ContinualSection.model_validate({"sequence": sequence}), seed=0)
    assert type(naive) is NaiveStrategy  # the default baseline is a real strategy, not an empty Combined
    both = build_strategy(continual=ContinualSection.model_validate(
        {"sequence": sequence, "strategy": ["replay", "ewc"], "replay": {"mode": "stratified", "ratio": 0.5},
         "ewc": {"lambda": 3.0}}), seed=7)
    assert isinstance(both, Combined) and [type(s) for s in both.strategies] == [ReplayStrategy, EWCStrategy]
    replay, ewc = both.strategies
    assert (replay.buffer.mode, replay.buffer.ratio, replay.buffer.seed) == ("stratified", 0.5, 7) and ewc.lam == 3.0
