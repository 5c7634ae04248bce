"""The efficacy benchmark's quick variant, as a test of direction (benchmarks/efficacy, README there).

One fixed seed, small sizes, the benchmark's own code path: vlmdata builds the shapes world, the tiny
LLaVA is pretrained in full on captions, then LoRA is taught questions it has never seen, and a
two-stage continual run (colour -> size) is scored with and without replay. The assertions are
directions with wide margins, not the benchmark's numbers (those are in RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "benchmarks" / "efficacy"))
    from setup import build_datasets, pretrain_base

    work = tmp_path_factory.mktemp("efficacy")
    data = build_datasets(work=work, names=("shapes", "shapes-pretrain"), overrides={
        "shapes": ["sources.0.count=600", "sources.0.tasks=[color, size]", "split.validation=0.05"],
        "shapes-pretrain": ["sources.0.count=3000"],
    })
    base = pretrain_base(work=work, data=data["shapes-pretrain"], steps=400, echo=lambda _: None)
    return work, data, base


def test_lora_lifts_unseen_questions_from_zero_to_well_above_chance(world):
    import experiments

    work, data, base = world
    rows = experiments.eval_rows(data=data["shapes"], tasks=("color", "size"), limit=30)
    before = experiments.base_scores(base=base, rows=rows, echo=lambda _: None)
    (before,) = before.values()
    assert before["color"] == [0.0] and before["size"] == [0.0]  # never asked a question: it writes captions
    out = experiments.lora_run(name="efficacy-lora", rows=rows, max_new_tokens=experiments.ANSWER_TOKENS,
                               echo=lambda _: None, overrides=[
                                   f"model.path={base}", f"data.path={data['shapes']}",
                                   f"output.dir={work / 'lora'}", "train.steps=120"])
    assert out["scores"]["color"] >= 0.6  # chance 1/6
    assert out["scores"]["size"] >= 0.8  # chance 1/2
    assert set(out["last"]) >= {"loss/color", "loss/size"}  # per-task losses are logged every step


def test_replay_forgets_less_than_naive(world):
    import experiments

    work, data, base = world
    common = [f"model.path={base}", f"data.path={data['shapes']}", "continual.eval.limit=30",
              "continual.sequence=[{name: color, tasks: [color]}, {name: size, tasks: [size]}]"]
    results = experiments.continual(common=common, seeds=[0], steps=60, work=work, echo=lambda _: None,
                                    strategies={"naive": ["continual.strategy=naive"],
                                                "replay": ["continual.strategy=replay"]})
    naive, replay = results["naive"], results["replay"]
    assert naive["R[0][0]"][0] >= 0.6 and replay["R[0][0]"][0] >= 0.6, results  # colour was learned in stage 1
    assert naive["BWT"][0] <= -0.3, results  # sequential fine-tuning forgets colour
    assert replay["BWT"][0] >= naive["BWT"][0] + 0.2, results  # replay keeps a clear part of it
