"""The vertical slice end to end: `vlmdata build recipes/medical.yaml` → `vlmtrain tiny` → `vlmtrain run
recipes/train/medical-tiny.yaml` → the loss falls, the adapter reloads and `generate` answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_medical_recipe_builds_and_trains(tmp_path: Path) -> None:
    from vlmdata.cli import main as vlmdata_main
    from vlmtrain.cli import main as vlmtrain_main

    data = tmp_path / "out" / "medical"
    built = CliRunner().invoke(vlmdata_main, ["build", str(ROOT / "recipes" / "medical.yaml"), "-o", str(data), "-q"])
    assert built.exit_code == 0, built.output
    tiny = tmp_path / "tiny-llava"
    made = CliRunner().invoke(vlmtrain_main, ["tiny", str(tiny), "--family", "llava"])
    assert made.exit_code == 0, made.output

    run_dir = tmp_path / "run"
    sets = [f"model.path={tiny}", f"data.path={data}", f"output.dir={run_dir}", "train.steps=20", "train.log_every=1",
            "train.report_to=[tensorboard]"]
    args = ["run", str(ROOT / "recipes" / "train" / "medical-tiny.yaml")]
    for s in sets:
        args += ["--set", s]
    trained = CliRunner().invoke(vlmtrain_main, args)
    assert trained.exit_code == 0, trained.output + repr(trained.exception)

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 20
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.75 * first, f"loss did not fall: {first:.2f} -> {last:.2f}"

    from PIL import Image

    with Image.open(run_dir / "losses.png") as im:  # loss and learning-rate curves, drawn
        assert im.width > 300 and len(set(im.convert("L").getdata())) > 10
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 20 and abs(losses[0] - log[0]["loss"]) < 1e-3

    from datasets import load_from_disk

    from vlmtrain.evaluation.predict import generate, load_run

    model, processor = load_run(run_dir=run_dir)
    row = load_from_disk(str(data))["train"][0]
    answer = generate(model=model, processor=processor, image=row["images"][0],
                      prompt="What imaging modality was used to acquire this image?", max_new_tokens=8)
    assert answer.token_ids, "generate produced no tokens"
