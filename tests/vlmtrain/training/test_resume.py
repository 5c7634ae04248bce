"""Checkpoints and `--resume`: a run killed (SIGKILL, in a subprocess) after its step-3 checkpoint and
resumed to step 6 logs the same losses, step by step, as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_rows import COLOURS, KILL_AFTER, save_dataset, vqa_row

from vlmtrain.cli import main


def _config(path: Path, *, model: Path, data: Path, out: Path) -> Path:
    path.write_text(
        f"name: res\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 6, batch_size: 2, lr: 5.0e-3, warmup_steps: 2, scheduler: linear, save_every: 3,\n"
        "        group_by_length: true, device: cpu}\n"
        f"output: {{dir: {out}}}\n"
    )
    return path


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.slow
def test_killed_then_resumed_run_matches_an_uninterrupted_one(tiny_llava, tmp_path):
    rows = [vqa_row(colour=c) for c in COLOURS] + [vqa_row(colour=c, answer=f"it is {c} and square") for c in COLOURS]
    data = save_dataset(path=tmp_path / "data", splits={"train": rows * 2})

    whole = _config(tmp_path / "a.yaml", model=tiny_llava, data=data, out=tmp_path / "a")
    done = CliRunner().invoke(main, ["run", str(whole)])
    assert done.exit_code == 0, done.output + repr(done.exception)

    cut = _config(tmp_path / "b.yaml", model=tiny_llava, data=data, out=tmp_path / "b")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, str(cut), "3"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "b" / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (tmp_path / "b" / "adapter_model.safetensors").exists()  # it never finished
    assert [s for s, _ in _losses(tmp_path / "b")] == [1, 2, 3]

    resumed = CliRunner().invoke(main, ["run", str(cut), "--resume"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert "resuming from" in resumed.output

    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [s for s, _ in b] == [s for s, _ in a] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in b] == pytest.approx([loss for _, loss in a], rel=1e-4, abs=1e-5)
    assert len({round(loss, 4) for _, loss in a}) > 1  # a real curve, not a constant


def test_resume_without_a_checkpoint_names_save_every(tiny_llava, colour_dataset, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: x\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n"
                   f"output: {{dir: {tmp_path / 'none'}}}\n")
    result = CliRunner().invoke(main, ["run", str(cfg), "--resume"])
    assert result.exit_code == 2
    assert "train.save_every" in result.output
