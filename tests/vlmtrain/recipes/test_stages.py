"""A two-stage run (projector alignment, then LoRA SFT) in one command; stage 2 starts from stage 1."""

from __future__ import annotations

import json

import pytest
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

    from vlmtrain.cli import main
    from vlmtrain.config.train import load_train_config
    from vlmtrain.models.build import build_model
    from vlmtrain.recipes.staged import stage_config

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

    from vlmtrain.evaluation.predict import load_run

    model, _ = load_run(run_dir=run_dir)
    stage2 = load_file(str(second / "trained.safetensors"))
    assert (model.get_parameter("base_model.model." + KEY).detach() == stage2[KEY]).all()
    assert not (stage2[KEY] == stage1[KEY]).all()  # stage 2 kept training the projector


KILL_IN_SFT = """
import os, signal, sys
from transformers import TrainerCallback
import vlmtrain.recipes.finetune as recipe
from vlmtrain.config.train import load_train_config
from vlmtrain.recipes.run import run

class Kill(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 2:  # stage 2's checkpoint-2 is on disk; die mid-run, no cleanup
            os.kill(os.getpid(), signal.SIGKILL)

setup = recipe.FinetuneRecipe.setup
def killing_setup(self):
    setup(self)
    if self.run_dir.name.endswith("-sft"):
        self.trainer.add_callback(Kill())
recipe.FinetuneRecipe.setup = killing_setup
run(config=load_train_config(sys.argv[1]))
"""
RESUMABLE = STAGES.replace("train: {steps: 3, warmup_ratio", "train: {steps: 4, save_every: 2, warmup_ratio")


def _losses(folder):
    return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "log.jsonl").read_text().splitlines())]


@pytest.mark.slow
def test_a_staged_run_killed_in_stage_two_resumes_there_and_matches(colour_dataset, write_config, tmp_path):
    import os
    import subprocess
    import sys

    from vlmtrain.cli import main

    whole = write_config(config_text(model=tiny_dir("llava"), data=colour_dataset, out=tmp_path / "a",
                                     body=RESUMABLE), name="a.yaml")
    done = CliRunner().invoke(main, ["run", str(whole)])
    assert done.exit_code == 0, done.output + repr(done.exception)

    cut = write_config(config_text(model=tiny_dir("llava"), data=colour_dataset, out=tmp_path / "b", body=RESUMABLE),
                       name="b.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SFT, str(cut)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    first, second = tmp_path / "b" / "stages" / "01-projector", tmp_path / "b" / "stages" / "02-sft"
    assert (first / "stage_done.json").is_file() and not (second / "stage_done.json").exists()
    assert (second / "checkpoint-2" / "trainer_state.json").is_file()
    stage1_written = (first / "trained.safetensors").stat().st_mtime_ns

    resumed = CliRunner().invoke(main, ["run", str(cut), "--resume"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert "stage 1/2: projector: finished before, kept" in resumed.output and "resuming from" in resumed.output
    assert (first / "trained.safetensors").stat().st_mtime_ns == stage1_written  # stage 1 was not rerun
    for stage in ("01-projector", "02-sft"):
        a, b = _losses(tmp_path / "a" / "stages" / stage), _losses(tmp_path / "b" / "stages" / stage)
        assert [s for s, _ in b] == [s for s, _ in a]
        assert [loss for _, loss in b] == pytest.approx([loss for _, loss in a], rel=1e-4, abs=1e-5)
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "b" / "stage_done.json").exists()  # the marker stays in the stage folder


def test_resume_of_a_staged_run_with_nothing_to_resume_names_save_every(colour_dataset, write_config, tmp_path):
    from vlmtrain.cli import main

    path = write_config(config_text(model=tiny_dir("llava"), data=colour_dataset, out=tmp_path / "run", body=STAGES))
    result = CliRunner().invoke(main, ["run", str(path), "--resume"])
    assert result.exit_code != 0 and "train.save_every" in result.output
