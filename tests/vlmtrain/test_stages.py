"""A two-stage run (projector alignment, then LoRA SFT) in one command; stage 2 starts from stage 1."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tiny_cache import config_text, tiny_dir

STAGES = """
train: {batch_size: 4, lr: 1.0e-2, scheduler: constant, device: cpu}
stages:
  - name: projector
    components: {projector: {train: full, lr: 1.0e-2}}
    train: {steps: 3}
  - name: sft
    components: {projector: {train: full, lr: 1.0e-3}, llm: {train: lora, r: 4, alpha: 8, lr: 1.0e-2}}
    train: {steps: 3, warmup_ratio: 0.3, scheduler: cosine}
"""
KEY = "model.multi_modal_projector.linear_1.weight"


def test_two_stages_run_in_order_and_chain_their_weights(colour_dataset, write_config, tmp_path):
    from safetensors.torch import load_file

    from vlmtrain.build import build_model
    from vlmtrain.cli import main
    from vlmtrain.config import load_train_config
    from vlmtrain.stages import stage_config

    run_dir = tmp_path / "run"
    path = write_config(config_text(model=tiny_dir("llava"), data=colour_dataset, out=run_dir, body=STAGES))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    first, second = run_dir / "stages" / "01-projector", run_dir / "stages" / "02-sft"
    for folder, steps in ((first, 3), (second, 3)):
        log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        assert len(log) == steps
    assert not (first / "adapter_model.safetensors").exists()  # stage 1 trained the projector only
    stage1 = load_file(str(first / "trained.safetensors"))
    assert set(stage1) and all(k.startswith("model.multi_modal_projector.") for k in stage1)
    assert json.loads((second / "chain.json").read_text()) == ["../01-projector"]
    for name in ("adapter_model.safetensors", "trained.safetensors", "chain.json", "config.yaml", "tokenizer.json"):
        assert (run_dir / name).is_file(), name
    assert "== stage 2/2: sft ==" in result.output and "projector" in result.output

    # stage 2 is built on stage 1's saved projector, not on the base model's
    config = load_train_config(path)
    built = build_model(config=stage_config(config=config, index=2, stage=config.stages[1]), chain=[first])
    loaded = built.model.get_parameter("base_model.model." + KEY)
    assert (loaded.detach() == stage1[KEY]).all()
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_dir("llava"))).get_parameter(KEY).detach()
    assert not (base == stage1[KEY]).all()

    from vlmtrain.predict import load_run

    model, _ = load_run(run_dir=run_dir)
    stage2 = load_file(str(second / "trained.safetensors"))
    assert (model.get_parameter("base_model.model." + KEY).detach() == stage2[KEY]).all()
    assert not (stage2[KEY] == stage1[KEY]).all()  # stage 2 kept training the projector
