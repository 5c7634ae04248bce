"""After training: eval during training (log.jsonl), `vlmtrain eval` (VQA accuracy per task), `vlmtrain
predict --system`, and `vlmtrain merge` whose plain-transformers model gives the adapter model's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_rows import COLOURS, save_dataset, vqa_row

from vlmdata.answers import exact_match, vqa_accuracy
from vlmtrain.cli import main


@pytest.fixture(scope="module")
def trained(tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, dataset): 12 steps on the colour rows, evaluated every 6 steps on 2 validation rows."""
    base = tmp_path_factory.mktemp("evalrun")
    val = [vqa_row(colour=c) for c in COLOURS]
    for row, colour in zip(val, COLOURS, strict=True):  # ten human answers, as in VQAv2
        row["answers"] = [colour] * 7 + ["dark " + colour] * 3
    val[1]["task"] = "colour"
    data = save_dataset(path=base / "data", splits={"train": [vqa_row(colour=c) for c in COLOURS] * 4, "validation": val})
    config = base / "train.yaml"
    config.write_text(
        f"name: ev\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 8, alpha: 16, dropout: 0.0}\n"
        "train: {steps: 12, batch_size: 4, lr: 1.0e-2, warmup_steps: 1, scheduler: constant_with_warmup, device: cpu}\n"
        f"eval: {{every: 6, data: {data}, limit: 2, max_new_tokens: 4}}\noutput: {{dir: {base / 'run'}}}\n"
    )
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return base / "run", data


def test_eval_during_training_is_logged(trained):
    run_dir, _ = trained
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval" in r]
    assert [r["step"] for r in evals] == [6, 12]
    assert evals[-1]["eval"]["overall"]["rows"] == 2 and set(evals[-1]["eval"]) == {"vqa", "colour", "overall"}
    assert len([r for r in log if "loss" in r]) == 12


def test_eval_command_scores_per_task(trained, tmp_path):
    run_dir, data = trained
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--data", f"{data}:validation", "--max-new-tokens", "4",
                                       "--batch-size", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and {"id", "task", "prediction", "answers", "scores"} <= set(preds[0])
    for p in preds:
        assert p["scores"]["vqa_accuracy"] == vqa_accuracy(p["prediction"], p["answers"])
        assert p["scores"]["exact_match"] == exact_match(p["prediction"], p["answers"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["overall"]["rows"] == 4 and metrics["colour"]["rows"] == 1 and metrics["vqa"]["rows"] == 3
    overall = sum(p["scores"]["vqa_accuracy"] for p in preds) / 4
    assert metrics["overall"]["vqa_accuracy"] == pytest.approx(overall)
    assert metrics["overall"]["vqa_accuracy"] > 0  # 12 steps on these rows: some colours are memorised

    limited = CliRunner().invoke(main, ["eval", str(run_dir), "--data", f"{data}:train", "--limit", "2",
                                        "--max-new-tokens", "2", "--out", str(tmp_path / "lim")])
    assert limited.exit_code == 0, limited.output
    assert len((tmp_path / "lim" / "predictions.jsonl").read_text().splitlines()) == 2


def test_predict_takes_a_system_message(trained, tmp_path):
    from train_rows import png

    run_dir, _ = trained
    image = tmp_path / "red.png"
    image.write_bytes(png(colour="red"))
    result = CliRunner().invoke(main, ["predict", str(run_dir), "--image", str(image), "--prompt", "What colour?",
                                       "--system", "Answer in one word.", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_merged_model_loads_in_plain_transformers_with_the_same_logits(trained, tmp_path):
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.evaluation.predict import load_run

    run_dir, data = trained
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["merge", str(run_dir), str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert not list(out.glob("adapter_*"))

    merged = AutoModelForImageTextToText.from_pretrained(str(out)).eval()
    processor = AutoProcessor.from_pretrained(str(out))
    adapter, _ = load_run(run_dir=run_dir)
    rows = [load_from_disk(str(data))["validation"][i] for i in range(2)]
    batch = ChatCollator(processor=processor, max_length=64)(rows)
    batch.pop("labels")
    with torch.no_grad():
        want = adapter(**batch).logits
        got = merged(**batch).logits
        with adapter.disable_adapter():
            base = adapter(**batch).logits
    assert not torch.allclose(base, want, atol=1e-3)  # the adapter changed something worth merging
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
