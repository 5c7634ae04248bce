"""`train.packing` in a continual run: every stage trains on packs of its own rows (replayed ones included),
with EWC and LwF on the packed batches, and writes its packing report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from train_rows import COLOURS, make_row, png, save_dataset, vqa_row

from vlmdata.schema import image_part, message, text_part
from vlmtrain.cli import main


def _shape_row(*, colour: str, shape: str) -> dict:
    msgs = [message("user", [image_part(), text_part("What shape is this?")]), message("assistant", [text_part(shape)])]
    return {**make_row(images=[png(colour=colour, shape=shape)], messages=msgs, task="shape"), "answers": [shape]}


@pytest.mark.slow
def test_a_packed_continual_run_trains_every_stage_on_packs(tiny_llava, tmp_path):
    colours = [{**vqa_row(colour=c), "task": "colour", "answers": [c]} for c in COLOURS]
    shapes = [_shape_row(colour=c, shape=s) for c in COLOURS for s in ("circle", "square")]
    data = save_dataset(path=tmp_path / "data", splits={"train": colours * 2 + shapes,
                                                        "validation": colours[:2] + shapes[:2]})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: cl\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, max_length: 96}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 2, batch_size: 1, lr: 1.0e-2, scheduler: constant, device: cpu, packing: true}\n"
        "continual: {sequence: [{name: colour, tasks: [colour]}, {name: shape, tasks: [shape]}], "
        "strategy: [replay, ewc, lwf], replay: {size: 4}, ewc: {lambda: 10.0, num_samples: 4}, "
        "eval: {max_new_tokens: 3, batch_size: 4}}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n")
    assert CliRunner().invoke(main, ["validate", str(cfg)]).exit_code == 0  # no longer refused
    done = CliRunner().invoke(main, ["run", str(cfg)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    assert done.output.count("continual: packing: ") == 2
    run = tmp_path / "run"
    first = json.loads((run / "tasks" / "0-colour" / "packing.json").read_text())
    second = json.loads((run / "tasks" / "1-shape" / "packing.json").read_text())
    assert first["rows"] == 2 * len(COLOURS) and set(first["mix"]) == {"colour"}
    assert second["rows"] == len(shapes) + 4 and set(second["mix"]) == {"shape", "colour"}  # 4 replayed rows
    assert second["packs"] < second["rows"]  # several rows per pack
    log = [json.loads(x) for x in (run / "tasks" / "1-shape" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 2 and all(np.isfinite(r["loss"]) and "loss/extra" in r for r in steps)  # EWC + LwF
    record = json.loads((run / "continual.json").read_text())
    assert len(record["matrix"]) == 2
