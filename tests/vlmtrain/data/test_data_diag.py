"""Data before training: several sources with weights, a plain saved Dataset, the length table, rejected
rows (image cut, no answer left) and the seeded length-grouped sampler."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from train_rows import make_row, png, save_dataset, vqa_row

from vlmdata.config.errors import ConfigError
from vlmdata.schema import image_part, message, text_part
from vlmtrain.cli import main
from vlmtrain.config.train import load_train_config
from vlmtrain.data.collate import ChatCollator
from vlmtrain.data.dataset import open_sources, weighted_rows
from vlmtrain.data.diagnostics import IMAGE_CUT, NO_ANSWER, diagnose
from vlmtrain.data.sampler_length import LengthGroupedSampler

LONG = " ".join(["the scan of the chest shows a small nodule in the left lung"] * 8)  # ~100 tokens


def _rows() -> list[dict]:
    """A kept row, a row whose image sits past 64 tokens, one whose answer does, and a long-answer row."""
    image_late = [message("user", [text_part(LONG), image_part(), text_part("Colour?")]),
                  message("assistant", [text_part("red")])]
    answer_late = [message("user", [image_part(), text_part(LONG)]), message("assistant", [text_part("red")])]
    return [
        vqa_row(colour="red"),
        make_row(images=[png(colour="red")], messages=image_late, task="caption"),
        make_row(images=[png(colour="blue")], messages=answer_late, task="caption"),
        vqa_row(colour="green", answer=LONG),  # cut inside the answer: kept, part of the answer trains
    ]


def test_diagnostics_reject_image_cuts_and_rows_without_answer_tokens(tmp_path, llava_processor):
    import datasets

    from vlmdata.schema import features

    dataset = datasets.Dataset.from_list(_rows(), features=features())
    diag = diagnose(dataset=dataset, collator=ChatCollator(processor=llava_processor, max_length=64), batch_size=3)
    assert diag.reasons == [None, IMAGE_CUT, NO_ANSWER, None]
    assert diag.kept == [0, 3]
    assert all(n > 64 for n in diag.lengths[1:]) and diag.lengths[0] < 64
    assert diag.counts() == {IMAGE_CUT: 1, NO_ANSWER: 1}
    table = diag.table().splitlines()
    assert table[0].split()[:6] == ["task", "rows", "p50", "p90", "p99", "max"]
    cells = {line.split()[0]: line.split() for line in table[1:]}
    assert cells["caption"][1] == "2" and cells["vqa"][1] == "2" and cells["all"][1] == "4"
    assert cells["all"][-3:] == ["3", "1", "1"]  # over max_length, image cut, no answer
    diag.write_rejected(path=tmp_path / "rejected.jsonl")
    records = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in records] == [(dataset[1]["id"], IMAGE_CUT), (dataset[2]["id"], NO_ANSWER)]


def test_weighted_rows_repeat_then_subsample_with_the_seed():
    assert weighted_rows(n=3, weight=1.0, seed=0) == [0, 1, 2]
    assert weighted_rows(n=3, weight=2.0, seed=0) == [0, 1, 2, 0, 1, 2]
    half = weighted_rows(n=10, weight=0.5, seed=1)
    assert len(half) == 5 and half == weighted_rows(n=10, weight=0.5, seed=1) and len(set(half)) == 5
    assert weighted_rows(n=10, weight=1.5, seed=1)[10:] == half


def test_sources_with_weights_and_a_plain_saved_dataset(tmp_path, colour_dataset, write_config, tiny_llava):
    import datasets

    from vlmdata.schema import features

    plain = tmp_path / "plain"
    datasets.Dataset.from_list([vqa_row(colour=c) for c in ("red", "blue")] * 2, features=features()).save_to_disk(
        str(plain)
    )
    config = write_config(
        f"name: mix\nmodel: {{path: {tiny_llava}}}\n"
        f"data: {{sources: [{{path: {colour_dataset}, split: train, weight: 0.5}}, {{path: {plain}, weight: 2}}]}}\n"
    )
    cfg = load_train_config(config)
    assert [s.weight for s in cfg.data.all_sources] == [0.5, 2.0]
    dataset = open_sources(data=cfg.data, seed=0)
    assert len(dataset) == 8 + 8  # half of 16 colour rows, the 4 plain rows twice

    bad = write_config(f"name: b\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {plain}, "
                       f"sources: [{{path: {tmp_path}/nope, split: trian}}]}}\n", name="bad.yaml")
    with pytest.raises(ConfigError) as err:
        load_train_config(bad)
    problems = {p.path: p.message for p in err.value.problems}
    assert "dataset folder not found" in problems["data.sources[0].path"]


def test_run_rejects_rows_before_training_and_lists_them(tmp_path, write_config, tiny_llava):
    data = save_dataset(path=tmp_path / "data", splits={"train": _rows() * 2})
    config = write_config(
        f"name: rej\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, max_length: 64}}\n"
        f"lora: {{dropout: 0.0}}\ntrain: {{steps: 2, batch_size: 4, device: cpu, group_by_length: true}}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n"
    )
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "rejected 4 of 8 rows at data.max_length=64 (2 image_cut, 2 no_answer_tokens)" in result.output
    assert "p50" in result.output and "data: 4 rows to train on" in result.output
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected_rows.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in rejected) == [IMAGE_CUT, IMAGE_CUT, NO_ANSWER, NO_ANSWER]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)  # finite, no NaN


def test_length_grouped_sampler_is_seeded_and_groups_similar_lengths():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(200)]
    sampler = LengthGroupedSampler(lengths=lengths, batch_size=8, seed=3, group=4)
    first = list(sampler)
    assert sorted(first) == list(range(200))
    assert first == list(LengthGroupedSampler(lengths=lengths, batch_size=8, seed=3, group=4))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(LengthGroupedSampler(lengths=lengths, batch_size=8, seed=4, group=4)) != first

    def padded(order: list[int]) -> int:
        return sum(8 * max(lengths[i] for i in order[s : s + 8]) for s in range(0, len(order), 8))

    shuffled = random.Random(0).sample(range(200), 200)
    assert padded(first) < 0.75 * padded(shuffled)
