"""A 2-stage continual run end to end: a 2 × 2 accuracy matrix in continual.json, per-stage logs,
`vlmtrain report` writing its PNGs, and config errors naming the YAML key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_rows import COLOURS, make_row, png, save_dataset, vqa_row

from vlmdata.config.errors import ConfigError
from vlmdata.schema import image_part, message, text_part
from vlmtrain.cli import main
from vlmtrain.config.train import load_train_config


def shape_row(*, colour: str, shape: str) -> dict:
    msgs = [message("user", [image_part(), text_part("What shape is this?")]),
            message("assistant", [text_part(shape)])]
    row = make_row(images=[png(colour=colour, shape=shape)], messages=msgs, task="shape")
    row["answers"] = [shape]
    return row


@pytest.fixture(scope="module")
def two_task_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    colours = [{**vqa_row(colour=c), "task": "colour", "answers": [c]} for c in COLOURS]
    shapes = [shape_row(colour=c, shape=s) for c in COLOURS for s in ("circle", "square")]
    return save_dataset(path=tmp_path_factory.mktemp("cl") / "data",
                        splits={"train": colours * 2 + shapes, "validation": colours[:2] + shapes[:2]})


def _config(path: Path, *, model: Path, data: Path, out: Path, continual: str) -> Path:
    path.write_text(
        f"name: cl\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 3, batch_size: 2, lr: 1.0e-2, scheduler: constant, device: cpu}\n"
        f"continual: {continual}\noutput: {{dir: {out}}}\n"
    )
    return path


def test_two_stage_run_writes_a_matrix_and_the_report_plots_it(tiny_llava, two_task_data, tmp_path):
    cfg = _config(tmp_path / "c.yaml", model=tiny_llava, data=two_task_data, out=tmp_path / "run",
                  continual="{sequence: [{name: colour, tasks: [colour]}, {name: shape, tasks: [shape]}], "
                            "strategy: [replay, ewc, lwf], replay: {size: 4}, ewc: {lambda: 10.0, num_samples: 4}, "
                            "eval: {max_new_tokens: 3, batch_size: 4}}")
    done = CliRunner().invoke(main, ["run", str(cfg)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    run = tmp_path / "run"
    record = json.loads((run / "continual.json").read_text())
    assert record["stages"] == ["colour", "shape"] and record["strategy"] == ["replay", "ewc", "lwf"]
    assert len(record["matrix"]) == 2 and all(len(row) == 2 for row in record["matrix"])
    assert all(0.0 <= v <= 1.0 for row in record["matrix"] for v in row)
    assert {"average_accuracy", "bwt", "forgetting"} <= set(record)
    assert (run / "adapter_model.safetensors").is_file()
    second = [json.loads(x) for x in (run / "tasks" / "1-shape" / "log.jsonl").read_text().splitlines()]
    assert len(second) == 3 and all("loss/extra" in r for r in second)  # EWC + LwF terms from stage 2 on
    assert any("loss/colour" in r for r in second)  # replayed rows of stage 1, logged as their own task

    shown = CliRunner().invoke(main, ["report", str(run)])
    assert shown.exit_code == 0, shown.output + repr(shown.exception)
    assert "BWT" in shown.output and "after shape" in shown.output
    for name in ("matrix.png", "curves.png", "losses.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"


def test_init_from_continues_a_previous_adapter(tiny_llava, two_task_data, tmp_path):
    first = _config(tmp_path / "a.yaml", model=tiny_llava, data=two_task_data, out=tmp_path / "a",
                    continual="{sequence: [{name: colour, tasks: [colour]}], eval: {limit: 2, max_new_tokens: 2}}")
    assert CliRunner().invoke(main, ["run", str(first)]).exit_code == 0
    second = _config(tmp_path / "b.yaml", model=tiny_llava, data=two_task_data, out=tmp_path / "b",
                     continual=f"{{init_from: {tmp_path / 'a'}, strategy: lwf, lwf: {{teacher: snapshot}}, "
                               "sequence: [{name: colour, tasks: [colour], train: false}, {name: shape, tasks: [shape]}],"
                               " eval: {limit: 2, max_new_tokens: 2}}")
    done = CliRunner().invoke(main, ["run", str(second)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    a = json.loads((tmp_path / "a" / "continual.json").read_text())
    b = json.loads((tmp_path / "b" / "continual.json").read_text())
    assert b["matrix"][0][0] == pytest.approx(a["matrix"][0][0])  # the same adapter, scored the same
    assert not (tmp_path / "b" / "tasks" / "0-colour").exists()  # an evaluated-only stage


def test_config_errors_name_the_key(tiny_llava, two_task_data, tmp_path):
    bad = _config(tmp_path / "c.yaml", model=tiny_llava, data=two_task_data, out=tmp_path / "run",
                  continual="{sequence: [{name: a, tasks: [colour], data: x}], strategy: [replay, ewcc], "
                            "ewc: {lambda: -1}}")
    with pytest.raises(ConfigError) as err:
        load_train_config(bad)
    text = str(err.value)
    assert "continual.sequence[0]" in text and "continual.strategy" in text and "continual.ewc.lambda" in text


def test_resume_of_a_continual_run_is_refused_by_name(tiny_llava, two_task_data, tmp_path):
    cfg = _config(tmp_path / "c.yaml", model=tiny_llava, data=two_task_data, out=tmp_path / "run",
                  continual="{sequence: [{name: colour, tasks: [colour]}, {name: shape, tasks: [shape]}]}")
    done = CliRunner().invoke(main, ["run", str(cfg), "--resume"])
    assert done.exit_code != 0 and "continual" in done.output and "--resume" in done.output
    assert not (tmp_path / "run" / "continual.json").exists()
