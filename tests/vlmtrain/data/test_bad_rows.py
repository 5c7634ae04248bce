"""Rows a run cannot train on are rejected one by one, with their id and reason, and counted; the run
trains on the rest. Each class: zero-byte and truncated images, image parts that do not match the images,
no messages, a conversation that starts with the assistant, an empty answer, no assistant turn."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from train_rows import make_row, png, save_dataset, vqa_row

from vlmdata.schema import image_part, message, text_part
from vlmtrain.cli import main
from vlmtrain.data.collate import ChatCollator
from vlmtrain.data.diagnostics import diagnose
from vlmtrain.data.row_checks import (
    BAD_IMAGE,
    EMPTY_ANSWER,
    EMPTY_MESSAGES,
    IMAGE_COUNT_MISMATCH,
    NO_ASSISTANT_TURN,
    STARTS_WITH_ASSISTANT,
)


def _q(text: str = "What colour?") -> dict:
    return message("user", [image_part(), text_part(text)])


def _a(text: str) -> dict:
    return message("assistant", [text_part(text)])


def bad_rows() -> dict[str, tuple[dict, str]]:
    """name → (row, expected reason); each row is wrong in one way only."""
    good = png(colour="red")
    return {
        "zero_bytes": (make_row(images=[b""], messages=[_q(), _a("red")]), BAD_IMAGE),
        "truncated_png": (make_row(images=[good[: len(good) // 2]], messages=[_q(), _a("red")]), BAD_IMAGE),
        "not_an_image": (make_row(images=[b"hello, not a picture"], messages=[_q(), _a("red")]), BAD_IMAGE),
        "two_images_one_part": (make_row(images=[good, good], messages=[_q(), _a("red")]), IMAGE_COUNT_MISMATCH),
        "one_image_no_part": (make_row(images=[good], messages=[message("user", [text_part("Hi?")]), _a("red")]),
                              IMAGE_COUNT_MISMATCH),
        "no_messages": (make_row(images=[], messages=[]), EMPTY_MESSAGES),
        "starts_with_assistant": (make_row(images=[good], messages=[_a("hello"), _q(), _a("red")]),
                                  STARTS_WITH_ASSISTANT),
        "system_then_assistant": (make_row(images=[good], messages=[message("system", [text_part("Be brief.")]),
                                                                    _a("hello"), _q(), _a("red")]),
                                  STARTS_WITH_ASSISTANT),
        "empty_answer": (make_row(images=[good], messages=[_q(), _a("")]), EMPTY_ANSWER),
        "blank_answer": (make_row(images=[good], messages=[_q(), _a("  \n ")]), EMPTY_ANSWER),
        "no_assistant": (make_row(images=[good], messages=[_q()]), NO_ASSISTANT_TURN),
    }


def _dataset(tmp_path, rows):
    return save_dataset(path=tmp_path / "data", splits={"train": rows})


@pytest.mark.parametrize("name", sorted(bad_rows()))
def test_each_bad_row_is_rejected_with_its_reason(name, llava_processor):
    import datasets

    from vlmdata.schema import features

    bad, reason = bad_rows()[name]
    rows = [vqa_row(colour="red"), bad, vqa_row(colour="blue")]
    dataset = datasets.Dataset.from_list(rows, features=features())
    diag = diagnose(dataset=dataset, collator=ChatCollator(processor=llava_processor, max_length=128), batch_size=3)
    assert diag.reasons == [None, reason, None], diag.rejected
    assert diag.kept == [0, 2]
    (record,) = diag.rejected
    assert record["id"] == bad["id"] and record["reason"] == reason and record["detail"]


def test_a_run_trains_on_the_good_rows_and_lists_every_bad_one(tmp_path, tiny_llava):
    cases = bad_rows()
    good = [vqa_row(colour=c) for c in ("red", "green", "blue", "yellow")]
    rows = [good[0], *[row for row, _ in cases.values()], *good[1:]]
    data = _dataset(tmp_path, rows)
    run = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(f"name: t\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, max_length: 128}}\n"
                      "lora: {r: 4, alpha: 8}\ntrain: {steps: 2, batch_size: 4, device: cpu}\n"
                      f"output: {{dir: {run}}}\n")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (run / "adapter_model.safetensors").is_file()
    records = [json.loads(line) for line in (run / "rejected_rows.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["reason"]) for r in records) == sorted((row["id"], why) for row, why in cases.values())
    assert f"rejected {len(cases)} of {len(rows)} rows" in result.output
    assert "data: 4 rows to train on" in result.output

    # the same rows evaluated: the bad ones are listed, not scored, and the good ones are
    scored = CliRunner().invoke(main, ["eval", str(run), "--data", f"{data}:train", "--max-new-tokens", "2",
                                       "--batch-size", "5", "--out", str(tmp_path / "eval")])
    assert scored.exit_code == 0, scored.output + repr(scored.exception)
    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in preds) == sorted(row["id"] for row in good)
    skipped = [json.loads(line) for line in (tmp_path / "eval" / "eval_rejected.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["reason"]) for r in skipped) == sorted((row["id"], why) for row, why in cases.values())
    assert f"{len(cases)} row(s) could not be asked" in scored.output


def test_a_run_whose_rows_are_all_bad_is_refused_by_name(tmp_path, tiny_llava):
    data = _dataset(tmp_path, [row for row, _ in bad_rows().values()])
    config = tmp_path / "train.yaml"
    config.write_text(f"name: t\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}}}\n"
                      f"train: {{steps: 1, device: cpu}}\noutput: {{dir: {tmp_path / 'run'}}}\n")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "data.path: every row is rejected" in result.output and "bad_image" in result.output
