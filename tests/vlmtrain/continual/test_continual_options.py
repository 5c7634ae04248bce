"""A continual run honours what a single run honours: `eval:` scores in each stage's log.jsonl,
`train.report_to: [tensorboard]` per stage, and the row checks (rejected_rows.jsonl, rows left out of
every stage); `train.group_by_length`, which the task sampler cannot honour, is refused by name."""

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

LONG = " ".join(["the scan of the chest shows a small nodule in the left lung"] * 8)  # ~100 tokens


def _data(tmp_path: Path) -> tuple[Path, list[str]]:
    colours = [{**vqa_row(colour=c), "task": "colour", "answers": [c]} for c in COLOURS]
    shapes = [{**vqa_row(colour=c, question="What shape?", answer="square"), "task": "shape", "answers": ["square"]}
              for c in COLOURS]
    good = png(colour="red")
    truncated = {**make_row(images=[good[: len(good) // 2]], messages=[message("user", [image_part(), text_part("Q?")]),
                                                                        message("assistant", [text_part("red")])]),
                 "task": "colour"}
    too_long = {**make_row(images=[good], messages=[message("user", [text_part(LONG), image_part()]),
                                                    message("assistant", [text_part("red")])]), "task": "shape"}
    data = save_dataset(path=tmp_path / "data", splits={"train": [*colours, truncated, *shapes, too_long],
                                                        "validation": colours[:2] + shapes[:2]})
    return data, [truncated["id"], too_long["id"]]


def _config(tmp_path: Path, *, model: Path, data: Path, train: str, extra: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: cl\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        f"train: {{steps: 2, batch_size: 2, lr: 1.0e-2, scheduler: constant, device: cpu{train}}}\n"
        "continual: {sequence: [{name: colour, tasks: [colour]}, {name: shape, tasks: [shape]}], "
        "eval: {max_new_tokens: 2, batch_size: 4}}\n"
        f"{extra}output: {{dir: {tmp_path / 'run'}}}\n")
    return path


@pytest.mark.slow
def test_continual_run_honours_eval_tensorboard_and_row_checks(tiny_llava, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, bad_ids = _data(tmp_path)
    cfg = _config(tmp_path, model=tiny_llava, data=data, train=", report_to: [tensorboard]",
                  extra=f"eval: {{every: 1, data: {data}, limit: 2, max_new_tokens: 2}}\n")
    done = CliRunner().invoke(main, ["run", str(cfg)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    run = tmp_path / "run"
    rejected = [json.loads(line) for line in (run / "rejected_rows.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["reason"]) for r in rejected) == sorted(zip(bad_ids, ["bad_image", "image_cut"],
                                                                          strict=True))
    assert "continual: stage 0 'colour': 4 rows" in done.output and "continual: stage 1 'shape': 4 rows" in done.output
    for stage in ("0-colour", "1-shape"):
        log = [json.loads(line) for line in (run / "tasks" / stage / "log.jsonl").read_text().splitlines()]
        evals = [r for r in log if "eval" in r]
        assert [r["step"] for r in evals] == [1, 2] and evals[0]["eval"]["overall"]["rows"] == 2
        events = EventAccumulator(str(run / "tasks" / stage / "tensorboard"))
        events.Reload()
        assert "train/loss" in events.Tags()["scalars"]


@pytest.mark.parametrize("section", ["continual", "multitask"])
def test_group_by_length_is_refused_where_the_task_sampler_orders_data(tiny_llava, tmp_path, section):
    data, _ = _data(tmp_path)
    cfg = _config(tmp_path, model=tiny_llava, data=data, train=", group_by_length: true",
                  extra="multitask: {}\n" if section == "multitask" else "")
    if section == "multitask":  # a multitask run without continual
        text = cfg.read_text().split("continual:")[0] + "multitask: {}\n" + f"output: {{dir: {tmp_path / 'r'}}}\n"
        cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_train_config(cfg)
    problems = {p.path: p.message for p in err.value.problems}
    assert "train.group_by_length" in problems and "task sampler" in problems["train.group_by_length"], problems
