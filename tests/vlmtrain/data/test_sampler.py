"""TaskSampler: temperature proportions, weights and caps, per-epoch re-draws, resume, homogeneous batches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vlmdata.sampling import temperature_probs
from vlmtrain.data.sampler import TaskSampler

TASKS = ["vqa"] * 900 + ["caption"] * 90 + ["count"] * 10


def _task_counts(sampler: TaskSampler, stream: list[int]) -> Counter:
    return Counter(TASKS[i] for i in stream)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, float("inf")])
def test_proportions_follow_the_temperature(temperature: float) -> None:
    sampler = TaskSampler(tasks=TASKS, num_samples=4000, temperature=temperature, seed=0)
    counts = _task_counts(sampler, list(sampler))
    probs = temperature_probs(counts=Counter(TASKS), temperature=temperature)
    for task, p in probs.items():
        assert abs(counts[task] - 4000 * p) <= 1  # allocation is exact up to one row
    assert len(sampler) == sum(counts.values()) == 4000


def test_small_task_is_oversampled_evenly_and_big_task_without_repeats() -> None:
    sampler = TaskSampler(tasks=TASKS, num_samples=1000, temperature=float("inf"), seed=1)
    stream = sampler.indices(epoch=0)
    per_row = Counter(int(i) for i in stream)
    count_rows = [per_row[i] for i in range(990, 1000)]
    assert max(count_rows) - min(count_rows) <= 1 and sum(count_rows) in (333, 334)
    assert all(per_row[i] <= 1 for i in range(900))


def test_weights_and_caps() -> None:
    weighted = TaskSampler(tasks=TASKS, num_samples=1000, weights={"vqa": 1, "caption": 1, "count": 2}, seed=0)
    assert _task_counts(weighted, list(weighted)) == {"vqa": 250, "caption": 250, "count": 500}
    capped = TaskSampler(tasks=TASKS, num_samples=1000, caps={"vqa": 90}, seed=0)
    counts = _task_counts(capped, list(capped))
    assert counts["vqa"] == counts["caption"] == 474 and counts["count"] == 52
    with pytest.raises(ValueError, match="unknown task"):
        TaskSampler(tasks=TASKS, weights={"ocr": 1.0})


def test_sources_make_separate_groups() -> None:
    sampler = TaskSampler(tasks=["vqa"] * 30, sources=["a"] * 20 + ["b"] * 10, num_samples=100,
                          temperature=float("inf"))
    assert sampler.counts(epoch=0) == {"a/vqa": 50, "b/vqa": 50}


def test_epochs_differ_and_the_seed_fixes_the_stream() -> None:
    a, b = TaskSampler(tasks=TASKS, num_samples=500, seed=3), TaskSampler(tasks=TASKS, num_samples=500, seed=3)
    first, second = list(a), list(a)
    assert first != second and sorted(first) != sorted(second)
    assert a.epoch == 2
    assert list(b) == first and list(b) == second
    assert list(TaskSampler(tasks=TASKS, num_samples=500, seed=4)) != first


def test_resume_mid_epoch_continues_the_same_stream() -> None:
    full = TaskSampler(tasks=TASKS, num_samples=300, seed=7)
    reference = list(full) + list(full)
    run = TaskSampler(tasks=TASKS, num_samples=300, seed=7)
    list(run)
    it = iter(run)
    head = [next(it) for _ in range(120)]
    state = run.state_dict()
    assert state == {"epoch": 1, "position": 120}
    resumed = TaskSampler(tasks=TASKS, num_samples=300, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # what accelerate does at the start of the epoch: must not reset the position
    assert head + list(resumed) == reference[300:]
    assert resumed.state_dict() == {"epoch": 2, "position": 0}


def test_homogeneous_batches_are_whole_and_shuffled() -> None:
    sampler = TaskSampler(tasks=TASKS, num_samples=1003, temperature=2.0, batch_size=8, seed=0)
    stream = np.array(list(sampler))
    assert len(stream) == len(sampler) == 1000
    batches = stream.reshape(-1, 8)
    kinds = [{TASKS[i] for i in batch} for batch in batches]
    assert all(len(k) == 1 for k in kinds)
    order = [next(iter(k)) for k in kinds]
    assert order != sorted(order, key=order.index)  # tasks are interleaved, not one block each
    assert sum(v for v in sampler.counts(epoch=0).values()) == 1000
    assert all(v % 8 == 0 for v in sampler.counts(epoch=0).values())
