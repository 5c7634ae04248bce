"""The whole fine-tune, litgpt style: tiny model -> `vlmtrain run` -> loss falls -> adapter reloads -> generate."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from click.testing import CliRunner
from train_rows import png

from vlmtrain.cli import main


@pytest.mark.slow
def test_finetune_lowers_loss_and_the_adapter_answers(tiny_llava, colour_dataset, write_config, tmp_path):
    config = write_config(
        f"""
name: colours
seed: 0
model: {{path: {tiny_llava}}}
data: {{path: {colour_dataset}, max_length: 64}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
train: {{steps: 30, batch_size: 4, lr: 1.0e-2, warmup_steps: 2, scheduler: constant_with_warmup, device: cpu}}
output: {{dir: run}}
"""
    )
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    run_dir = tmp_path / "run"
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.yaml", "log.jsonl", "tokenizer.json"):
        assert (run_dir / name).is_file(), name

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31))
    assert all(r["lr"] >= 0 for r in log)
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.25 * first, f"loss did not fall enough: {first:.3f} -> {last:.3f}"

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["model"]["path"] == str(tiny_llava) and resolved["train"]["steps"] == 30

    from safetensors import safe_open

    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("language_model" in k for k in keys)  # the vision tower is not adapted

    from PIL import Image

    from vlmtrain.evaluation.predict import generate, load_run

    model, processor = load_run(run_dir=run_dir)
    assert type(model).__name__.startswith("Peft")
    image = Image.open(io.BytesIO(png(colour="red")))
    answer = generate(
        model=model, processor=processor, image=image, prompt="What colour is the square?", max_new_tokens=8
    )
    assert answer.token_ids, "generate produced no tokens"
    assert answer.text == "red"  # memorised, and stopped at the end-of-turn token
    assert answer.token_ids[-1] == processor.tokenizer.eos_token_id

    image_path = tmp_path / "blue.png"
    image_path.write_bytes(png(colour="blue"))
    cli = CliRunner().invoke(
        main, ["predict", str(run_dir), "--image", str(image_path), "--prompt", "What colour is the square?"]
    )
    assert cli.exit_code == 0, cli.output
    assert cli.stdout.strip().splitlines()[-1] == "blue"
